"""Synonym augmentation of user inputs, seeded per (seed, epoch, row) for reproducible variety."""

from __future__ import annotations

import json
import random
import re
from pathlib import Path

SynonymGroups = list[list[str]]


def load_synonym_groups(path: str | Path) -> SynonymGroups:
    groups = json.loads(Path(path).read_text(encoding="utf-8"))
    if not isinstance(groups, list) or not all(
        isinstance(g, list) and len(g) >= 2 and all(isinstance(w, str) and w for w in g) for g in groups
    ):
        raise ValueError(f"{path}: expected a JSON array of arrays of at least two non-empty strings")
    return groups


class SynonymSwapper:
    """Replaces each occurrence of any group member with a random member of the same group."""

    def __init__(self, groups: SynonymGroups):
        self.group_of = {word: group for group in groups for word in group}
        # Longest first, so that "우와!" wins over "우와" at the same position.
        alternatives = sorted(self.group_of, key=len, reverse=True)
        self.pattern = re.compile("|".join(re.escape(word) for word in alternatives))

    def swap(self, text: str, rng: random.Random) -> str:
        return self.pattern.sub(lambda match: rng.choice(self.group_of[match.group(0)]), text)

    def variant(self, texts: list[str], seed: int, epoch: int) -> list[str]:
        """The epoch's augmented copy of `texts`; row i depends only on (seed, epoch, i)."""
        return [self.swap(text, random.Random(f"{seed}:{epoch}:{i}")) for i, text in enumerate(texts)]
