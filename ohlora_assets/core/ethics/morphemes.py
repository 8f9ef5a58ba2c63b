"""Korean morphemes for the embedded ethics encoder, from Kiwi (kiwipiepy, its model bundled in the wheel).

A from-scratch encoder trained on ~1,000 prompts cannot learn that `사랑해요`, `사랑했어` and
`사랑하는` share a word, nor that `쓰레기` and `폐기물` are near in meaning. Kiwi knows both, offline:
its analysis splits inflections into a stem and endings (`사랑/NNG 하/XSV 어요/EF`), and its CoNg
language model has embeddings of 660,000 morphemes, from which `MorphemeNeighbours` takes the
similar ones to vary the training prompts. The encoder reads `form/TAG` tokens.

`morpheme_transformer.MorphemeTransformer` is the sentence-transformers input module that does the
analysis, so a saved model encodes raw text like any other. Training passes `Morphemes` (already
analysed, possibly varied) instead of text, which the module passes through untouched.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from kiwipiepy import Kiwi

# Content morphemes: nouns, verbs, adjectives, adverbs, roots, interjections. Particles and endings
# are grammar; swapping them for "similar" ones would make a different sentence, not a paraphrase.
CONTENT_TAGS = frozenset({"NNG", "NNP", "VV", "VA", "MAG", "XR", "IC", "VV-R", "VA-R", "VV-I", "VA-I"})


class Morphemes(str):
    """An analysed prompt: `form/TAG` tokens joined by spaces. The input module passes it through."""


@functools.cache
def kiwi() -> "Kiwi":
    """The analyser, loaded once per process (about 1.5 s; the model ships inside kiwipiepy_model)."""
    from kiwipiepy import Kiwi

    return Kiwi()


@functools.lru_cache(maxsize=65536)
def analyze(text: str) -> tuple[str, ...]:
    """`form/TAG` tokens of `text`; spaces inside a form (rare, in proper nouns) become `_`."""
    return tuple(f"{token.form.replace(' ', '_')}/{token.tag}" for token in kiwi().tokenize(text))


def to_morphemes(text: str) -> Morphemes:
    return text if isinstance(text, Morphemes) else Morphemes(" ".join(analyze(text)))


class MorphemeNeighbours:
    """For each content morpheme of a corpus, the morphemes Kiwi's embeddings find most similar
    (same part of speech, cosine >= `min_similarity`). `vary` swaps some tokens for a neighbour."""

    def __init__(self, table: dict[str, tuple[str, ...]]):
        self.table = table

    @classmethod
    def of(cls, texts: Iterable[str], top_n: int = 8, min_similarity: float = 0.5) -> "MorphemeNeighbours":
        analyser = kiwi()
        table: dict[str, tuple[str, ...]] = {}
        for token in sorted({t for text in texts for t in analyze(text)}):
            form, _, tag = token.rpartition("/")
            if tag not in CONTENT_TAGS:
                continue
            try:
                similar = analyser.most_similar_morphemes((form.replace("_", " "), tag), top_n=top_n)
            except (ValueError, KeyError, RuntimeError):  # not in Kiwi's dictionary (typos, names)
                continue
            family = tag.split("-")[0]  # VV-R and VV are both verbs
            neighbours = tuple(
                f"{m.form.replace(' ', '_')}/{m.tag}"
                for m in similar
                if m.score >= min_similarity and m.tag.split("-")[0] == family
            )
            if neighbours:
                table[token] = neighbours
        return cls(table)

    def vocabulary(self) -> set[str]:
        return {n for neighbours in self.table.values() for n in neighbours}

    def vary(self, tokens: Sequence[str], rate: float, rng: np.random.Generator) -> list[str]:
        """`tokens` with each token that has neighbours replaced by a random one with chance `rate`."""
        return [
            self.table[t][rng.integers(len(self.table[t]))] if t in self.table and rng.random() < rate else t
            for t in tokens
        ]
