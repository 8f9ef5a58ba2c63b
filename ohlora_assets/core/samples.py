"""Sampled answers on disk and their quality: a Parquet table and a run summary per model version, so a report
scores a candidate's answers and the serving version's with today's rules side by side (a changed threshold or
rule never shows up as a model change)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from ohlora_assets.core.io import atomic_write_bytes
from ohlora_assets.core.quality import QualitySettings, quality_metrics, score_answers

SAMPLES_FILE = "samples.parquet"
RUN_FILE = "generation.json"


def answers_table(run, prompts: pd.DataFrame) -> pd.DataFrame:
    """A GenerationRun's answers, one row each, with the source row and prompt they answer (`prompts` has the
    columns source_row and prompt, in the order the run was given them)."""
    frame = run.to_frame()
    frame.insert(1, "source_row", prompts["source_row"].to_numpy()[frame["prompt_index"]])
    frame.insert(2, "prompt", prompts["prompt"].to_numpy()[frame["prompt_index"]])
    return frame


def save_samples(folder: Path, samples: pd.DataFrame, summary: dict) -> None:
    """Write the table, then its run summary (a folder with both is complete)."""
    atomic_write_bytes(folder / SAMPLES_FILE, samples.to_parquet())
    atomic_write_bytes(folder / RUN_FILE, json.dumps(summary, indent=2).encode())


def has_samples(folder: Path) -> bool:
    return (folder / SAMPLES_FILE).is_file() and (folder / RUN_FILE).is_file()


@dataclass(frozen=True)
class ScoredSamples:
    flagged: pd.DataFrame  # one row per answer, with the failure flags
    metrics: dict[str, float | None]
    run_id: str


def score_samples(task: str, folder: Path, train_split: pd.DataFrame, settings: QualitySettings) -> ScoredSamples:
    samples = pd.read_parquet(folder / SAMPLES_FILE)
    run = json.loads((folder / RUN_FILE).read_text())
    flagged = score_answers(task, samples, train_split, settings)
    return ScoredSamples(flagged, quality_metrics(task, flagged, run["wall_s"], run["generated_tokens"]), run["run_id"])
