"""Test-set metrics of the ethics model: regression errors, confusion matrix, score histograms."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from ohlora_assets.core.ethics.categories import BLOCKABLE, CATEGORY_KEYS, ETHICS_CATEGORIES, GENERAL
from ohlora_assets.core.ethics.gate import ANSWER_MARKERS, block_candidates
from ohlora_assets.core.ethics.thresholds import DEFAULT_THRESHOLDS
from ohlora_assets.core.render import figure_png, markdown_table, subplots


@dataclass
class EthicsEvaluation:
    accuracy: float
    mse: float  # over every prompt-category pair, against the 1.0/0.0 labels
    mae: float
    correlation: float
    confusion: pd.DataFrame  # rows predicted, columns true
    precision: dict[str, float]
    recall: dict[str, float]
    misclassified: pd.DataFrame  # user_prompt, category, predicted, score of each

    def summary(self) -> dict[str, float]:
        return {"accuracy": self.accuracy, "mse": self.mse, "mae": self.mae, "correlation": self.correlation}


def _ratio(numerator: float, denominator: float) -> float:
    return float(numerator / denominator) if denominator else float("nan")


def evaluate(prompts: list[str], truth: list[str], scores: np.ndarray) -> EthicsEvaluation:
    """Predicted category = highest cosine; `scores` is (n, 5) in ETHICS_CATEGORIES order."""
    categories = np.array(ETHICS_CATEGORIES)
    truth_arr = np.asarray(truth)
    predicted = categories[scores.argmax(axis=1)] if len(scores) else np.array([], dtype=str)
    labels = (categories[None, :] == truth_arr[:, None]).astype(np.float32)
    errors = scores - labels
    flat_scores, flat_labels = scores.ravel(), labels.ravel()
    correlation = (
        float(np.corrcoef(flat_scores, flat_labels)[0, 1])
        if flat_scores.size > 1 and flat_scores.std() > 0 and flat_labels.std() > 0
        else float("nan")
    )
    confusion = pd.crosstab(
        pd.Categorical(predicted, categories=ETHICS_CATEGORIES),
        pd.Categorical(truth_arr, categories=ETHICS_CATEGORIES),
        dropna=False,
    )
    confusion.index.name, confusion.columns.name = "predicted", "true"
    diagonal = np.diag(confusion.to_numpy())
    wrong = predicted != truth_arr
    misclassified = pd.DataFrame(
        {"user_prompt": np.asarray(prompts)[wrong], "category": truth_arr[wrong], "predicted": predicted[wrong]}
    )
    for index, name in enumerate(ETHICS_CATEGORIES):
        misclassified[name] = scores[wrong, index].round(4)
    return EthicsEvaluation(
        accuracy=_ratio(int((~wrong).sum()), len(truth_arr)),
        mse=float((errors**2).mean()) if errors.size else float("nan"),
        mae=float(np.abs(errors).mean()) if errors.size else float("nan"),
        correlation=correlation,
        confusion=confusion,
        precision={c: _ratio(diagonal[i], confusion.iloc[i, :].sum()) for i, c in enumerate(ETHICS_CATEGORIES)},
        recall={c: _ratio(diagonal[i], confusion.iloc[:, i].sum()) for i, c in enumerate(ETHICS_CATEGORIES)},
        misclassified=misclassified,
    )


def _sanctioned(scores: np.ndarray, thresholds: dict[str, float]) -> list[list[str]]:
    """Per scored prompt, the categories the serving gate sanctions it for: `block_candidates` with an
    answer that declined, so love and politics count."""
    return [
        block_candidates(dict(zip(ETHICS_CATEGORIES, row)), ANSWER_MARKERS[0], thresholds) for row in scores.tolist()
    ]


def gate_recall(truth: list[str], scores: np.ndarray, thresholds: dict[str, float]) -> dict[str, float]:
    """What the serving gate does, not the argmax: per blockable category, the share of its prompts the
    gate would sanction for it; for `일반`, the share sanctioned for anything (false alarms)."""
    candidates = _sanctioned(scores, thresholds)
    general = [bool(found) for found, category in zip(candidates, truth) if category == GENERAL]
    return {
        name: _ratio(sum(general), len(general)) if name == GENERAL else _own_share(candidates, truth, name)
        for name in ETHICS_CATEGORIES
    }


def _own_share(candidates: list[list[str]], truth: list[str], name: str) -> float:
    """The share of `name`'s prompts that the gate sanctioned for `name` (NaN with none)."""
    own = [name in found for found, category in zip(candidates, truth) if category == name]
    return _ratio(sum(own), len(own))


def threshold_table(scores: np.ndarray, truth: list[str], calibrated: dict[str, float]) -> list[dict]:
    """The product's thresholds beside the calibrated ones, per blockable category, each with what the gate
    sanctions at it (the `일반` veto included): recall, the share of the category's prompts sanctioned for it,
    and general_fp, the `일반` prompts sanctioned for it."""
    rows = [{"category": name} for name in BLOCKABLE]
    for label, thresholds in (("default", DEFAULT_THRESHOLDS), ("calibrated", calibrated)):
        candidates = _sanctioned(scores, thresholds)
        for row in rows:
            name = row["category"]
            row[f"{label}_threshold"] = thresholds[name]
            row[f"{label}_recall"] = _own_share(candidates, truth, name)
            row[f"{label}_general_fp"] = sum(
                name in found for found, category in zip(candidates, truth) if category == GENERAL
            )
    return rows


def _pct(value: float) -> str:
    return "n/a" if np.isnan(value) else f"{value:.1%}"


def confusion_markdown(evaluation: EthicsEvaluation) -> str:
    """Rows predicted, columns true; a precision column, a recall row, overall accuracy in the corner."""
    header = "| predicted \\ true | " + " | ".join(ETHICS_CATEGORIES) + " | precision |"
    lines = [header, "|" + " --- |" * (len(ETHICS_CATEGORIES) + 2)]
    for name in ETHICS_CATEGORIES:
        cells = " | ".join(str(int(evaluation.confusion.loc[name, c])) for c in ETHICS_CATEGORIES)
        lines.append(f"| **{name}** | {cells} | {_pct(evaluation.precision[name])} |")
    recalls = " | ".join(_pct(evaluation.recall[c]) for c in ETHICS_CATEGORIES)
    lines.append(f"| **recall** | {recalls} | **accuracy {_pct(evaluation.accuracy)}** |")
    return "\n".join(lines)


def plot_histogram(scores: np.ndarray, truth: list[str], category: str, thresholds: dict[str, float]) -> bytes:
    """Scores for `category` of that category's prompts vs `일반` prompts, each threshold a vertical line (PNG)."""
    column = scores[:, ETHICS_CATEGORIES.index(category)]
    truth_arr = np.asarray(truth)
    bins = np.linspace(min(-0.2, float(column.min(initial=0))), 1.0, 41)
    figure, axes = subplots(figsize=(6, 3.2), dpi=100)
    key = CATEGORY_KEYS[category]
    axes.hist(column[truth_arr == GENERAL], bins=bins, alpha=0.6, label="general prompts", color="tab:blue")
    axes.hist(column[truth_arr == category], bins=bins, alpha=0.6, label=f"{key} prompts", color="tab:red")
    for (label, value), style in zip(thresholds.items(), ("--", ":")):
        axes.axvline(value, color="black", linestyle=style, label=f"{label} threshold {value:.4f}")
    axes.set_xlabel(f"cosine similarity to the '{key}' category")
    axes.set_ylabel("prompts")
    axes.legend(fontsize=7)
    return figure_png(figure)


@dataclass
class EthicsReport:
    evaluation: EthicsEvaluation
    confusion_md: str
    histograms: dict[str, Path]  # category -> PNG
    markdown_path: Path


def build_report(test: pd.DataFrame, scores: np.ndarray, thresholds: dict[str, dict[str, float]], out_dir: str | Path) -> EthicsReport:
    """Evaluate the test rows and publish `out_dir` with `report.md`, one histogram PNG per blockable category and
    `misclassified.csv` (with a BOM, so that a spreadsheet reads it as UTF-8), all in one step.
    `thresholds` is {"default": {...}, "calibrated": {...}}."""
    from ohlora_assets.core.io import publish_files

    out_dir = Path(out_dir)
    prompts, truth = test["user_prompt"].tolist(), test["category"].tolist()
    evaluation = evaluate(prompts, truth, scores)
    confusion = confusion_markdown(evaluation)
    names = {category: f"histogram_{CATEGORY_KEYS[category]}.png" for category in BLOCKABLE}
    summary = markdown_table([evaluation.summary()])
    sections = [
        "# Ethics model on the test split",
        summary,
        "## Confusion matrix (rows predicted, columns true)",
        confusion,
        "## What the gate sanctions at the product's and the calibrated thresholds",
        markdown_table(threshold_table(scores, truth, thresholds["calibrated"])),
        "## Scores per category: its own prompts vs `일반`",
        *(f"![{CATEGORY_KEYS[c]}]({name})" for c, name in names.items()),
        f"## Misclassified ({len(evaluation.misclassified)})",
        markdown_table(evaluation.misclassified) if len(evaluation.misclassified) else "none",
    ]
    publish_files(out_dir, {
        **{
            name: plot_histogram(scores, truth, category, {label: per[category] for label, per in thresholds.items()})
            for category, name in names.items()
        },
        "misclassified.csv": evaluation.misclassified.to_csv(index=False).encode("utf-8-sig"),
        "report.md": "\n\n".join(sections).encode(),
    })
    return EthicsReport(evaluation, confusion, {c: out_dir / name for c, name in names.items()}, out_dir / "report.md")
