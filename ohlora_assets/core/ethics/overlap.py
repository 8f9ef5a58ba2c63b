"""Near-duplicate prompts between two sets: character-3-gram Jaccard similarity, spaces removed.

A scored prompt that a training prompt nearly repeats (`로라 사 랑 해 요` against `로라 사랑해`) measures
memory, not generalization: the benchmark leaves such training prompts out, and a test keeps our data
apart from the held-out prompts and the upstream file.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Sequence

# A prompt with a word or an ending changed reaches it.
NEAR_DUPLICATE = 0.5


def char_trigrams(text: str) -> frozenset[str]:
    joined = "".join(text.split())
    return frozenset(joined[i : i + 3] for i in range(len(joined) - 2)) or frozenset({joined})


def similar_pairs(
    ours: Sequence[str], theirs: Sequence[str], threshold: float = NEAR_DUPLICATE
) -> list[tuple[str, str, float]]:
    """(ours, theirs, similarity) of every pair at or above `threshold`; an index from trigram to their
    prompts counts the shared trigrams of only the pairs that share one."""
    their_grams = [char_trigrams(text) for text in theirs]
    holders: dict[str, list[int]] = defaultdict(list)
    for j, grams in enumerate(their_grams):
        for gram in grams:
            holders[gram].append(j)
    pairs = []
    for text in ours:
        grams = char_trigrams(text)
        for j, shared in Counter(j for gram in grams for j in holders.get(gram, ())).items():
            similarity = shared / (len(grams) + len(their_grams[j]) - shared)
            if similarity >= threshold:
                pairs.append((text, theirs[j], round(similarity, 2)))
    return pairs


def near_duplicates(candidates: Sequence[str], references: Sequence[str], threshold: float = NEAR_DUPLICATE) -> list[bool]:
    """Whether each candidate is at least `threshold` similar to some reference."""
    similar = {ours for ours, _, _ in similar_pairs(candidates, references, threshold)}
    return [candidate in similar for candidate in candidates]
