"""The embedded profile's Korean sentence encoder, built offline from the training prompts.

No pretrained Korean encoder can be downloaded in the embedded profile, and the English MiniLM that
pip ships splits Hangul into jamo and unknown tokens. So we build one: a character-level tokenizer
(every Hangul syllable, letter, digit and mark of the corpus is a token), a small randomly
initialised BERT, and sentence-transformers' mean pooling on top; the cosine-similarity fine-tuning
then trains it. The result is an ordinary sentence-transformers model.

Measured on the upstream split (`ohlora bench ethics-accuracy`; test accuracy, one seed each):
WordPiece words 0.79, characters 0.84, characters with dropout 0.3 0.84-0.86; a masked-language-
model warm-up on the ~1,000 prompts (0.79-0.80) and a larger 4x256 model did not help, so there is
neither. The ceiling is the data: a TF-IDF nearest neighbour or a linear model on character n-grams
also stops at 0.85-0.87; the rest needs knowledge of Korean a 1,000-prompt corpus cannot teach.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from typing import TYPE_CHECKING, Sequence

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


def build_tokenizer(texts: Sequence[str]) -> "PreTrainedTokenizerFast":
    """A BERT-style tokenizer whose tokens are the characters of `texts` (spaces only separate)."""
    from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    alphabet = sorted({c for text in texts for c in text if not c.isspace()})
    vocab = {token: index for index, token in enumerate(SPECIAL_TOKENS + alphabet)}
    tokenizer = Tokenizer(models.WordLevel(vocab=vocab, unk_token="[UNK]"))
    tokenizer.normalizer = normalizers.NFC()
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Split(Regex("."), behavior="isolated")]
    )
    tokenizer.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        pair="[CLS] $A [SEP] $B [SEP]",
        special_tokens=[("[CLS]", vocab["[CLS]"]), ("[SEP]", vocab["[SEP]"])],
    )
    tokenizer.decoder = decoders.Fuse()
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        unk_token="[UNK]",
        pad_token="[PAD]",
        cls_token="[CLS]",
        sep_token="[SEP]",
        mask_token="[MASK]",
        model_max_length=MAX_SEQ_LENGTH,
    )


def build_encoder(corpus: Sequence[str], spec: EncoderSpec = EncoderSpec(), seed: int = 42) -> "SentenceTransformer":
    """A sentence-transformers model (small BERT + mean pooling) built from `corpus` alone, offline."""
    import torch
    from sentence_transformers import SentenceTransformer, models
    from transformers import BertConfig, BertModel
    from transformers.utils import logging as hf_logging

    tokenizer = build_tokenizer([normalize_prompt(text) for text in corpus])
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
            transformer = models.Transformer(staging, max_seq_length=MAX_SEQ_LENGTH)
    finally:
        hf_logging.set_verbosity(verbosity)
    pooling = models.Pooling(transformer.get_embedding_dimension(), pooling_mode="mean")
    return SentenceTransformer(modules=[transformer, pooling], device="cpu")
