"""`ohlora bench ethics-throughput`: batched scoring with cached category embeddings vs the original.

The original scored a prompt by encoding, for each of the five categories, the prompt and the
category name separately (two `encode` calls per pair, ten per prompt) and computing the cosine in
numpy. Ours encodes the five names once per model and the prompts in batches. Both run here on the
same model and the same 1,000 prompts, in one process; the scores must agree.
"""

from __future__ import annotations

import argparse
import itertools
import time

import numpy as np

from ohlora_assets.core.device import limit_torch_threads

PROMPTS = 1000
QUICK_PROMPTS = 25  # `--quick` (the test): 250 per-pair encodes, enough to show the gap


def _original_scores(model, prompts: list[str], categories: tuple[str, ...]) -> np.ndarray:
    scores = np.zeros((len(prompts), len(categories)), dtype=np.float32)
    for i, prompt in enumerate(prompts):
        for j, category in enumerate(categories):
            a = model.encode(prompt, show_progress_bar=False)
            b = model.encode(category, show_progress_bar=False)
            scores[i, j] = np.dot(a, b) / (np.linalg.norm(a) * np.linalg.norm(b))
    return scores


def _model():
    """The embedded base before fine-tuning: the ethics model's architecture (speed does not depend on the
    weights), the same whether or not `make run` trained one."""
    from ohlora_assets.core.ethics.training import base_model

    model, described = base_model("embedded")
    return model.eval(), f"{described}, not fine-tuned"


def run(args: argparse.Namespace) -> float:
    from ohlora_assets.core.ethics.normalize import normalize_prompt
    from ohlora_assets.core.ethics.scoring import EthicsScorer
    from ohlora_assets.core.schemas import load_ethics
    from ohlora_assets.resources import DataPaths

    limit_torch_threads()
    count = QUICK_PROMPTS if getattr(args, "quick", False) else PROMPTS
    ethics_csv = DataPaths.from_env().ethics_csv
    sample = load_ethics(ethics_csv)["user_prompt"].tolist()
    prompts = list(itertools.islice(itertools.cycle(sample), count))
    model, described = _model()
    print(f"model: {described}\nprompts: {len(prompts)}, cycling the {len(sample)} of {ethics_csv}", flush=True)

    started = time.perf_counter()
    scorer = EthicsScorer(model)  # includes computing the category embeddings once
    ours = scorer.score(prompts)
    ours_seconds = time.perf_counter() - started

    started = time.perf_counter()
    # The same normalized text, so that the two methods' scores are comparable.
    original = _original_scores(model, [normalize_prompt(p) for p in prompts], scorer.categories)
    original_seconds = time.perf_counter() - started

    difference = float(np.abs(ours - original).max())
    if difference > 1e-3:
        raise AssertionError(f"the two methods disagree: max |score difference| {difference:.2e}")
    ours_rate, original_rate = len(prompts) / ours_seconds, len(prompts) / original_seconds
    print(f"original per-pair encode: {original_rate:10.1f} prompts/s ({original_seconds:.2f}s)")
    print(f"batched + cached:         {ours_rate:10.1f} prompts/s ({ours_seconds:.2f}s)")
    print(f"max |score difference|: {difference:.2e}")
    ratio = ours_rate / original_rate
    print(f"ratio={ratio:.2f}")
    return ratio
