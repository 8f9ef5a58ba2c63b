"""Inference-quality metrics of generated answers: the failure modes seen in the original system.

- numbered prefix: the answer starts with an enumeration (`1.`, `2)`, `(3)`, `①`, `5. 혜나!`), a habit the model
  picks up from list-like training answers; a number word (`2003년생`, `22살`, `3.5배`) is not one.
- copied answer: the answer is near-identical to a training answer whose training prompt is
  unrelated to this prompt, i.e. the model recited some other row instead of answering.
- empty answers, retries and give-ups (`(읽씹)`: every retry failed), format validity, latency.

Everything here is plain string and table logic, so each rule is unit-testable without a model.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass

import numpy as np
import pandas as pd

from ohlora_assets.core.formats import ANSWER_VALIDATORS, STRUCTURED_TASKS, TASK_FORMATS, core_question
from ohlora_assets.core.render import figure_png, markdown_table, subplots

# `1.`, `2)`, `(3)`, full-width `４．`, circled `①`/`❶`, keycap `1️⃣`; `(?!\d)`: `3.5배` is a decimal, not item 3.
NUMBERED_PREFIX = re.compile(
    r"^\s*(?:\d+\s*[.)．）](?!\d)|[(（]\s*\d+\s*[)）]|[\u2460-\u2473\u2776-\u2793]|\d\ufe0f?\u20e3)"
)
_NOT_WORD = re.compile(r"[\W_]+")

# Tasks whose answers are free text, where "copied from an unrelated row" is meaningful. An
# eyes/mouth/pose answer has 36 possible values, so every answer "copies" some training row.
COPY_TASKS = ("output_message", "summary", "memory")
FORMAT_VALIDATORS = {task: ANSWER_VALIDATORS[task] for task in STRUCTURED_TASKS}


def has_numbered_prefix(answer: str) -> bool:
    return bool(NUMBERED_PREFIX.match(answer))


def normalize(text: str) -> str:
    """Lowercase, without spaces, punctuation or emoji: what is left is the wording."""
    return _NOT_WORD.sub("", text.lower())


def similarity(a: str, b: str) -> float:
    """difflib ratio of the normalized strings (0..1); two empty strings are not similar."""
    a, b = normalize(a), normalize(b)
    if not a or not b:
        return 0.0
    return difflib.SequenceMatcher(None, a, b, autojunk=False).ratio()


def prompt_question(task: str, prompt: str) -> str:
    """The user's own words in a prompt: its first field, without time tag, memory or summary wrapper."""
    template = TASK_FORMATS[task].prompt_template
    first_field_end = template.index("}") + 1
    next_literal = template[first_field_end:].split("{", 1)[0]  # e.g. " (오로라 답변) " or " (답변 시작) ### 답변:"
    return core_question(prompt.split(next_literal, 1)[0])


@dataclass(frozen=True)
class QualitySettings:
    copy_similarity: float = 0.85  # answer vs training answer: at least this is "near-identical"
    unrelated_below: float = 0.5  # prompt vs training prompt (core questions): below this is "unrelated"


class CopyDetector:
    """Finds, for an answer, a training row it was copied from (see the module docstring).

    An answer that is near-identical to several training answers counts as copied only when none of
    those rows' prompts is related to this prompt: a stock reply ("응 좋아!") that also answers a
    related training prompt is a fair answer, not a recitation.
    """

    def __init__(self, task: str, train_split: pd.DataFrame, settings: QualitySettings = QualitySettings()):
        fmt = TASK_FORMATS[task]
        self.task = task
        self.settings = settings
        rows = []
        for source_row, prompt, completion in zip(train_split["source_row"], train_split["prompt"], train_split["completion"]):
            answer = normalize(fmt.strip_answer(completion))
            if answer:  # an empty memory is never "copied"
                rows.append((int(source_row), answer, prompt_question(task, prompt)))
        self.rows = rows

    def copied_from(self, answer: str, prompt: str) -> int | None:
        answer = normalize(answer)
        if not answer:
            return None
        question = prompt_question(self.task, prompt)
        threshold = self.settings.copy_similarity
        copied = None
        for source_row, train_answer, train_question in self.rows:
            matcher = difflib.SequenceMatcher(None, answer, train_answer, autojunk=False)
            # quick_ratio bounds ratio from above: most rows are rejected without the full comparison.
            if matcher.quick_ratio() < threshold or matcher.ratio() < threshold:
                continue
            if similarity(question, train_question) >= self.settings.unrelated_below:
                return None
            copied = source_row if copied is None else copied
        return copied


def score_answers(
    task: str, samples: pd.DataFrame, train_split: pd.DataFrame, settings: QualitySettings = QualitySettings()
) -> pd.DataFrame:
    """`samples` (one row per answer: prompt, answer, retries, valid, ...) with the per-answer flags added."""
    flagged = samples.copy()
    flagged["numbered_prefix"] = flagged["answer"].map(has_numbered_prefix)
    flagged["empty"] = flagged["answer"].str.strip() == ""
    if task in COPY_TASKS:
        detector = CopyDetector(task, train_split, settings)
        copied = [detector.copied_from(a, p) for a, p in zip(flagged["answer"], flagged["prompt"])]
        flagged["copied_from_row"] = pd.array(copied, dtype="Int64")
    else:
        flagged["copied_from_row"] = pd.array([None] * len(flagged), dtype="Int64")
    validator = FORMAT_VALIDATORS.get(task)
    flagged["format_valid"] = flagged["answer"].map(validator) if validator else pd.NA
    return flagged


def quality_metrics(task: str, flagged: pd.DataFrame, wall_s: float, generated_tokens: int) -> dict[str, float | None]:
    """The report's numbers; None where a metric does not apply to the task, and every share and latency None
    when there are no answers (no answers is not a rate of 0: a gate would read it as perfect)."""
    n = len(flagged)
    latency = flagged["latency_s"].to_numpy(dtype=float)
    return {
        "prompts": float(flagged["prompt_index"].nunique()),
        "answers": float(n),
        "numbered_prefix_rate": float(flagged["numbered_prefix"].mean()) if n else None,
        "copied_answer_rate": float(flagged["copied_from_row"].notna().mean()) if task in COPY_TASKS and n else None,
        "empty_answers": float(flagged["empty"].sum()),
        "retries": float(flagged["retries"].sum()),
        "retried_answer_rate": float((flagged["retries"] > 0).mean()) if n else None,
        "give_ups": float(flagged["gave_up"].sum()),
        "give_up_rate": float(flagged["gave_up"].mean()) if n else None,
        "format_valid_rate": float(flagged["format_valid"].astype(float).mean()) if task in FORMAT_VALIDATORS and n else None,
        "latency_mean_s": float(latency.mean()) if n else None,
        "latency_p95_s": float(np.percentile(latency, 95)) if n else None,
        "tokens_per_s": generated_tokens / wall_s if wall_s > 0 else 0.0,
    }


# metric -> (label, True when higher is better); the order of the report's table.
METRICS: dict[str, tuple[str, bool]] = {
    "numbered_prefix_rate": ("numbered-prefix rate", False),
    "copied_answer_rate": ("copied-answer rate", False),
    "empty_answers": ("empty answers", False),
    "retries": ("retries", False),
    "retried_answer_rate": ("answers needing a retry", False),
    "give_ups": ("give-ups (읽씹)", False),
    "give_up_rate": ("give-up rate", False),
    "format_valid_rate": ("format-valid rate", True),
    "latency_mean_s": ("mean latency (s)", False),
    "latency_p95_s": ("p95 latency (s)", False),
    "tokens_per_s": ("tokens/s", True),
    "prompts": ("prompts", True),
    "answers": ("answers", True),
}


def _fmt(key: str, value: float | None) -> str:
    if value is None:
        return "n/a"
    if key.endswith("_rate"):
        return f"{value:.3f}"
    return f"{value:.0f}" if float(value).is_integer() else f"{value:.3f}"


def comparison_markdown(candidate: dict[str, float | None], serving: dict[str, float | None] | None) -> str:
    """Metric table: the candidate, the serving version, and the change (better/worse marked)."""
    lines = ["| metric | candidate | serving | change |", "| --- | ---: | ---: | ---: |"]
    for key, (label, higher_is_better) in METRICS.items():
        now = candidate.get(key)
        before = serving.get(key) if serving else None
        if now is None or before is None:
            change = "" if serving else "nothing serves yet"
        else:
            delta = now - before
            verdict = "" if abs(delta) < 1e-9 else (" better" if (delta > 0) == higher_is_better else " worse")
            change = f"{delta:+.3f}{verdict}"
        lines.append(f"| {label} | {_fmt(key, now)} | {_fmt(key, before)} | {change} |")
    return "\n".join(lines)


def side_by_side_markdown(columns: dict[str, dict[str, float | None]]) -> str:
    """One column per variant (e.g. LoRA rank 16 and 64), one row per metric."""
    names = list(columns)
    lines = ["| metric | " + " | ".join(names) + " |", "| --- |" + " ---: |" * len(names)]
    for key, (label, _) in METRICS.items():
        lines.append(f"| {label} | " + " | ".join(_fmt(key, columns[n].get(key)) for n in names) + " |")
    return "\n".join(lines)


RATE_METRICS = ["numbered_prefix_rate", "copied_answer_rate", "retried_answer_rate", "give_up_rate", "format_valid_rate"]


def quality_plot(series: dict[str, dict[str, float | None]], latencies: dict[str, list[float]], title: str) -> bytes:
    """PNG: the rates of each series (e.g. previous/now, or rank 16/64) as grouped bars, and latency histograms."""
    figure, (rates, hist) = subplots(1, 2, figsize=(10, 3.6), dpi=100)
    shown = [k for k in RATE_METRICS if any(m.get(k) is not None for m in series.values())]  # n/a is no bar
    width = 0.8 / max(len(series), 1)
    positions = np.arange(len(shown))
    for i, (name, metrics) in enumerate(series.items()):
        values = [metrics.get(k) or 0.0 for k in shown]
        rates.bar(positions + i * width, values, width, label=name)
    rates.set_xticks(positions + width * (len(series) - 1) / 2, [METRICS[k][0] for k in shown], rotation=25, ha="right", fontsize=8)
    rates.set_ylim(0, 1.05)
    rates.set_title("rates")
    rates.legend(fontsize=8)
    for name, values in latencies.items():
        hist.hist(values, bins=20, alpha=0.6, label=name)
    hist.set_xlabel("latency per answer (s)")
    hist.set_ylabel("answers")
    hist.set_title("latency")
    hist.legend(fontsize=8)
    figure.suptitle(title)
    return figure_png(figure)


def flagged_examples_markdown(flagged: pd.DataFrame, limit: int = 5) -> str:
    """A few answers per failure kind, so a reader sees what the numbers count."""
    kinds = {
        "numbered prefix": flagged["numbered_prefix"],
        "copied from an unrelated training row": flagged["copied_from_row"].notna(),
        "gave up after retries": flagged["gave_up"].astype(bool),
    }
    parts = []
    for kind, mask in kinds.items():
        rows = flagged[mask.fillna(False).astype(bool)].head(limit)
        if rows.empty:
            continue
        table = rows[["source_row", "prompt", "answer", "retries", "copied_from_row"]].copy()
        table["prompt"] = table["prompt"].str.slice(0, 80)
        parts.append(f"**{kind}** ({int(mask.fillna(False).sum())})\n\n" + markdown_table(table))
    return "\n\n".join(parts) or "no flagged answers"
