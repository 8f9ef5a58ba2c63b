"""Scores of prompts against the five categories: cosine similarity to each category name's embedding."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Sequence

import numpy as np

from ohlora_assets.core.ethics.categories import ETHICS_CATEGORIES
from ohlora_assets.core.ethics.normalize import normalize_prompt

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer


def load_model(model_dir: str | Path, device: str = "cpu", trust_remote_code: bool = False) -> "SentenceTransformer":
    """A saved ethics model (plain sentence-transformers; remote code only for a `full` base that needs it).

    `device` is resolved by `core.device.resolve_device` (`auto`: CUDA when present)."""
    from sentence_transformers import SentenceTransformer

    from ohlora_assets.core.device import resolve_device

    modules = Path(model_dir) / "modules.json"
    if modules.is_file() and "ohlora_assets." in modules.read_text(encoding="utf-8"):
        # Models saved before the e5-small base named our morpheme input module, which is gone.
        raise ValueError(
            f"{model_dir}: saved by an earlier ohlora-assets (morpheme encoder); materialize ethics_sbert_model again"
        )
    return SentenceTransformer(str(model_dir), device=resolve_device(device), trust_remote_code=trust_remote_code)


class EthicsScorer:
    """Wraps a sentence-transformers model; the category embeddings are computed once per scorer.

    The original encoded the category name again for every prompt-category pair (2 x 5 encode calls
    per prompt); here a prompt costs one row of one batched `encode`, plus a (n, 5) matrix product.
    """

    def __init__(self, model: "SentenceTransformer", batch_size: int = 64):
        self.model = model
        self.batch_size = batch_size
        self.categories = ETHICS_CATEGORIES
        self._category_embeddings = self._encode(list(ETHICS_CATEGORIES))

    @classmethod
    def load(cls, model_dir: str | Path, device: str = "cpu", trust_remote_code: bool = False) -> "EthicsScorer":
        return cls(load_model(model_dir, device, trust_remote_code))

    def _encode(self, texts: list[str]) -> np.ndarray:
        return self.model.encode(
            texts, batch_size=self.batch_size, normalize_embeddings=True, convert_to_numpy=True, show_progress_bar=False
        ).astype(np.float32)

    def score(self, prompts: Sequence[str]) -> np.ndarray:
        """(len(prompts), 5) cosine similarities, columns in ETHICS_CATEGORIES order."""
        if len(prompts) == 0:
            return np.zeros((0, len(self.categories)), dtype=np.float32)
        embeddings = self._encode([normalize_prompt(p) for p in prompts])
        return embeddings @ self._category_embeddings.T

    def score_one(self, prompt: str) -> dict[str, float]:
        return dict(zip(self.categories, (float(s) for s in self.score([prompt])[0])))
