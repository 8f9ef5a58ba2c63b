"""The embedded profile's Korean sentence encoder, built offline from the training prompts.

No pretrained Korean encoder can be downloaded in the embedded profile, and the English MiniLM that
pip ships splits Hangul into jamo and unknown tokens. So we build one: a WordPiece tokenizer whose
alphabet is every character of the corpus (each Hangul syllable is a token, frequent words merge
into one), a small BERT briefly pretrained with masked-language modelling on the same corpus, and
sentence-transformers' mean pooling on top. The result is an ordinary sentence-transformers model.
"""

from __future__ import annotations

import math
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

from ohlora_assets.core.ethics.normalize import normalize_prompt

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer
    from transformers import PreTrainedTokenizerFast

SPECIAL_TOKENS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
MAX_SEQ_LENGTH = 64


@dataclass(frozen=True)
class EncoderSpec:
    """Size of the embedded encoder and of its masked-language-model pretraining."""

    vocab_size: int = 3000
    hidden_size: int = 256
    num_layers: int = 4
    num_heads: int = 4
    intermediate_size: int = 512
    mlm_epochs: int = 20
    mlm_batch_size: int = 32
    mlm_learning_rate: float = 5e-4
    dropout: float = 0.1
    # False: every character is a token (no merges), so spelling variants of a word share all tokens.
    word_pieces: bool = True


SMOKE_ENCODER = EncoderSpec(vocab_size=500, hidden_size=32, num_layers=1, num_heads=2, intermediate_size=64, mlm_epochs=1)


def build_tokenizer(texts: Sequence[str], vocab_size: int, word_pieces: bool = True) -> "PreTrainedTokenizerFast":
    """A BERT-style WordPiece tokenizer trained on `texts` (already normalized).

    Every character of the corpus is in the initial alphabet, so a Hangul syllable seen once is
    still its own token rather than [UNK].
    """
    from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tokenizer = Tokenizer(models.WordPiece(unk_token="[UNK]", max_input_chars_per_word=64))
    tokenizer.normalizer = normalizers.NFC()
    tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    if not word_pieces:
        tokenizer.pre_tokenizer = pre_tokenizers.Sequence(
            [pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Split(Regex("."), behavior="isolated")]
        )
    alphabet = sorted({c for text in texts for c in text if not c.isspace()})
    trainer = trainers.WordPieceTrainer(
        vocab_size=max(vocab_size, len(alphabet) * 2 + len(SPECIAL_TOKENS)),
        min_frequency=2,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=alphabet,
        limit_alphabet=len(alphabet) + 1,
    )
    tokenizer.train_from_iterator(list(texts), trainer=trainer)
    cls_id, sep_id = tokenizer.token_to_id("[CLS]"), tokenizer.token_to_id("[SEP]")
    tokenizer.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B [SEP]", special_tokens=[("[CLS]", cls_id), ("[SEP]", sep_id)]
    )
    tokenizer.decoder = decoders.WordPiece()
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        unk_token="[UNK]",
        pad_token="[PAD]",
        cls_token="[CLS]",
        sep_token="[SEP]",
        mask_token="[MASK]",
        model_max_length=MAX_SEQ_LENGTH,
    )


def _pretrain_mlm(model, tokenizer, texts: Sequence[str], spec: EncoderSpec, seed: int) -> None:
    """A few epochs of masked-language modelling so that token embeddings start out meaningful."""
    import torch
    from transformers import DataCollatorForLanguageModeling, get_linear_schedule_with_warmup

    collator = DataCollatorForLanguageModeling(tokenizer, mlm_probability=0.15)
    encoded = [tokenizer(t, truncation=True, max_length=MAX_SEQ_LENGTH) for t in texts]
    generator = torch.Generator().manual_seed(seed)
    loader = torch.utils.data.DataLoader(
        encoded, batch_size=spec.mlm_batch_size, shuffle=True, collate_fn=collator, generator=generator
    )
    steps = spec.mlm_epochs * len(loader)
    optimizer = torch.optim.AdamW(model.parameters(), lr=spec.mlm_learning_rate, weight_decay=0.01)
    schedule = get_linear_schedule_with_warmup(optimizer, math.ceil(0.1 * steps), steps)
    model.train()
    for _ in range(spec.mlm_epochs):
        for batch in loader:
            loss = model(**batch).loss
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            schedule.step()
            optimizer.zero_grad()
    model.eval()


def build_encoder(corpus: Sequence[str], spec: EncoderSpec = EncoderSpec(), seed: int = 42) -> "SentenceTransformer":
    """A sentence-transformers model (small BERT + mean pooling) built from `corpus` alone, offline."""
    import torch
    from sentence_transformers import SentenceTransformer, models
    from transformers import BertConfig, BertForMaskedLM

    texts = [t for t in (normalize_prompt(text) for text in corpus) if t]
    tokenizer = build_tokenizer(texts, spec.vocab_size, spec.word_pieces)
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
    mlm = BertForMaskedLM(config)
    if spec.mlm_epochs > 0:
        _pretrain_mlm(mlm, tokenizer, texts, spec, seed)
    with tempfile.TemporaryDirectory(prefix="ohlora-encoder-") as staging:
        # models.Transformer loads from a directory; the BERT body is what the MLM head trained.
        mlm.bert.save_pretrained(staging)
        tokenizer.save_pretrained(staging)
        transformer = models.Transformer(staging, max_seq_length=MAX_SEQ_LENGTH)
    pooling = models.Pooling(transformer.get_embedding_dimension(), pooling_mode="mean")
    return SentenceTransformer(modules=[transformer, pooling], device="cpu")
