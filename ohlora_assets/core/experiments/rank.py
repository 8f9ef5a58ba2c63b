"""The LoRA-rank experiment: output_message trained at each rank on the same data, seed and epochs, sampled on
the same validation prompts and scored with the quality report's rules, side by side."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from ohlora_assets.core.base_models import ModelSpec
from ohlora_assets.core.generation import train_and_generate
from ohlora_assets.core.progress import Progress
from ohlora_assets.core.quality import quality_metrics, score_answers
from ohlora_assets.core.samples import answers_table


@dataclass
class RankExperimentResult:
    metrics: dict[int, dict[str, float | None]]  # rank -> quality metrics
    flagged: dict[int, pd.DataFrame]  # rank -> scored answers
    training: dict[int, object]  # rank -> core.lora.LoraTrainResult


def run_lora_rank_experiment(
    source: ModelSpec,
    train_examples,
    valid_examples: list[tuple[str, str]],
    prompts: pd.DataFrame,
    train_split: pd.DataFrame,
    hps: dict,
    answers_per_prompt: int,
    sampling,
    output_dir,
    progress: Progress | None = None,
) -> RankExperimentResult:
    """output_message trained once per rank (`hps`: rank -> LoraHyperParams, otherwise equal), each
    sampled on the same `prompts` (rows with source_row, prompt) and scored with the same rules."""
    result = RankExperimentResult({}, {}, {})
    for rank, hp in hps.items():
        trained, run = train_and_generate(
            source, train_examples, valid_examples, hp, Path(output_dir) / f"rank_{rank}", prompts["prompt"].tolist(),
            "output_message", answers_per_prompt, sampling, progress,
        )
        flagged = score_answers("output_message", answers_table(run, prompts), train_split)
        result.metrics[rank] = quality_metrics("output_message", flagged, run.wall_s, run.generated_tokens)
        result.flagged[rank] = flagged
        result.training[rank] = trained
    return result
