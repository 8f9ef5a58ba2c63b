"""Block thresholds: the original production values, and the lowest ones with no false positive on `일반`.

What the gate does at each set of thresholds is measured in `evaluation` (`gate_recall`, `threshold_table`)."""

from __future__ import annotations

import math

import numpy as np

from ohlora_assets.core.ethics.categories import BLOCKABLE, ETHICS_CATEGORIES, GENERAL, HATE, LOVE, PAEDRIP, POLITICS

# The original product's thresholds on cosine similarity to the category name.
DEFAULT_THRESHOLDS = {LOVE: 0.98, POLITICS: 0.95, PAEDRIP: 0.9, HATE: 0.9}
# A `일반` score at or above this cancels every block candidate.
GENERAL_CANCEL = 0.5
_GRID = 1e-4  # thresholds are reported to 4 decimals


def calibrate(scores: np.ndarray, categories: list[str] | np.ndarray) -> dict[str, float]:
    """Per blockable category, the lowest threshold (on a 1e-4 grid) that no `일반` prompt reaches.

    `scores` is (n, 5) in ETHICS_CATEGORIES order and `categories` the true category of each row.
    With no `일반` prompt, any threshold is free of false positives; we then report 0.
    """
    general = np.asarray(categories) == GENERAL
    result = {}
    for name in BLOCKABLE:
        column = scores[general, ETHICS_CATEGORIES.index(name)]
        # Strictly above the highest `일반` score: `>=` is the blocking comparison.
        result[name] = (math.floor(float(column.max()) / _GRID) + 1) * _GRID if column.size else 0.0
        result[name] = round(result[name], 4)
    return result

