"""Scores of prompts against the five categories: cosine similarity to each category name's embedding."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Sequence

import numpy as np

from ohlora_assets.core.ethics.categories import BLOCKABLE, ETHICS_CATEGORIES
from ohlora_assets.core.ethics.normalize import normalize_prompt, prompt_windows

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer


class EthicsModelError(ValueError):
    """A saved ethics model that cannot be used; the message names its folder and the fix."""


def load_model(model_dir: str | Path, device: str = "cpu", trust_remote_code: bool = False) -> "SentenceTransformer":
    """A saved ethics model (plain sentence-transformers; remote code only for a `full` base that needs it).

    Only a folder on disk: a missing one is an error here, never a Hub id to download. `device` is resolved
    by `core.device.resolve_device` (`auto`: CUDA when present)."""
    from sentence_transformers import SentenceTransformer

    from ohlora_assets.core.device import resolve_device

    folder = Path(model_dir)
    modules = folder / "modules.json"
    if not modules.is_file():
        raise EthicsModelError(f"{folder}: no saved sentence-transformers model here (no modules.json); "
                               "materialize ethics_sbert_model or point at its folder")
    if "ohlora_assets." in modules.read_text(encoding="utf-8", errors="replace"):
        # Models saved before the e5-small base named our morpheme input module, which is gone.
        raise EthicsModelError(
            f"{folder}: saved by an earlier ohlora-assets (morpheme encoder); materialize ethics_sbert_model again"
        )
    try:
        return SentenceTransformer(str(folder), device=resolve_device(device), trust_remote_code=trust_remote_code,
                                   local_files_only=True)
    except Exception as error:  # a damaged folder fails in json, safetensors, tokenizers or torch alike
        raise EthicsModelError(f"{folder}: the ethics model cannot be loaded ({type(error).__name__}: {error}); "
                               "materialize ethics_sbert_model again") from error


class EthicsScorer:
    """Wraps a sentence-transformers model; the category embeddings are computed once per scorer.

    The original encoded the category name again for every prompt-category pair (2 x 5 encode calls
    per prompt); here a prompt costs one row of one batched `encode`, plus a (n, 5) matrix product.
    """

    def __init__(self, model: "SentenceTransformer", batch_size: int = 64, source: str | Path = "the ethics model"):
        self.model = model
        self.batch_size = batch_size
        self.source = str(source)
        self.categories = ETHICS_CATEGORIES
        self._blockable = [ETHICS_CATEGORIES.index(c) for c in BLOCKABLE]
        self._category_embeddings = self._encode(list(ETHICS_CATEGORIES))

    @classmethod
    def load(cls, model_dir: str | Path, device: str = "cpu", trust_remote_code: bool = False) -> "EthicsScorer":
        return cls(load_model(model_dir, device, trust_remote_code), source=model_dir)

    def _encode(self, texts: list[str]) -> np.ndarray:
        embeddings = self.model.encode(
            texts, batch_size=self.batch_size, normalize_embeddings=True, convert_to_numpy=True, show_progress_bar=False
        ).astype(np.float32)
        if not np.isfinite(embeddings).all():  # NaN compares false with every threshold: it would never block
            raise EthicsModelError(f"{self.source}: the model gives non-finite embeddings, so its weights are "
                                   "damaged; materialize ethics_sbert_model again or roll back")
        return embeddings

    def score(self, prompts: Sequence[str]) -> np.ndarray:
        """(len(prompts), 5) cosine similarities, columns in ETHICS_CATEGORIES order. A prompt longer than
        the encoder reads is scored window by window (`prompt_windows`) and gets its most harmful window's
        row: the highest score of a category that can block."""
        if len(prompts) == 0:
            return np.zeros((0, len(self.categories)), dtype=np.float32)
        windows = [prompt_windows(normalize_prompt(p)) for p in prompts]
        scores = self._encode([w for ws in windows for w in ws]) @ self._category_embeddings.T
        if len(scores) == len(prompts):
            return scores
        rows, start = [], 0
        for count in map(len, windows):
            block = scores[start: start + count]
            rows.append(block[block[:, self._blockable].max(axis=1).argmax()])
            start += count
        return np.stack(rows)

    def score_one(self, prompt: str) -> dict[str, float]:
        return dict(zip(self.categories, (float(s) for s in self.score([prompt])[0])))
