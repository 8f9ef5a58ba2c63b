"""A byte-level BPE tokenizer trained offline on our own corpus.

Byte-level BPE never meets an unknown character (emoji, rare Hangul syllables fall back to bytes),
and its pre-tokenizer keeps Hangul words together, so with a few thousand merges the common
syllables and words of the corpus become single tokens.
"""

from __future__ import annotations

from collections.abc import Iterable

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
from transformers import PreTrainedTokenizerFast


def build_bpe_tokenizer(
    texts: Iterable[str], vocab_size: int, special_tokens: dict[str, str]
) -> PreTrainedTokenizerFast:
    """Train a byte-level BPE on `texts`; `special_tokens` maps role -> token, e.g. {"eos_token": "</s>"}.

    Roles are the transformers ones (bos/eos/unk/pad/cls/sep/mask_token); the specials take the first
    ids in the given order. With a bos_token every encoded text starts with it (Llama style); with
    cls_token and sep_token, texts are wrapped as `[CLS] A [SEP]` (BERT style).
    """
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=list(special_tokens.values()),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        min_frequency=2,
        show_progress=False,
    )
    tokenizer.train_from_iterator(texts, trainer=trainer)
    tokenizer.post_processor = _post_processor(tokenizer, special_tokens)
    bert_style = "cls_token" in special_tokens and "sep_token" in special_tokens
    inputs = ["input_ids", "token_type_ids", "attention_mask"] if bert_style else ["input_ids", "attention_mask"]
    return PreTrainedTokenizerFast(tokenizer_object=tokenizer, model_input_names=inputs, **special_tokens)


def _post_processor(tokenizer: Tokenizer, special_tokens: dict[str, str]) -> processors.PostProcessor:
    def spec(role: str) -> tuple[str, int]:
        token = special_tokens[role]
        return token, tokenizer.token_to_id(token)

    if "cls_token" in special_tokens and "sep_token" in special_tokens:
        cls, sep = special_tokens["cls_token"], special_tokens["sep_token"]
        return processors.TemplateProcessing(
            single=f"{cls} $A {sep}",
            pair=f"{cls} $A {sep} $B:1 {sep}:1",
            special_tokens=[spec("cls_token"), spec("sep_token")],
        )
    if "bos_token" in special_tokens:
        bos = special_tokens["bos_token"]
        return processors.TemplateProcessing(
            single=f"{bos} $A", pair=f"{bos} $A {bos}:1 $B:1", special_tokens=[spec("bos_token")]
        )
    # Byte-level offsets only; no tokens added.
    return processors.ByteLevel(trim_offsets=False)
