"""Group `reports`: a quality report per adapter (one factory), with its checks.

`<task>_quality_report` scores the candidate's and the serving version's sampled answers (assets/samples.py)
with today's rules, side by side (core/samples.py, core/quality.py), and its blocking check refuses a candidate
worse than what serves. The threshold checks read
the report's metrics from the instance (its run's, else the latest), so new thresholds can be tried without
generating.

No `from __future__ import annotations` here: Dagster reads Config classes from the annotations.
"""

from typing import Literal

import dagster as dg
import pandas as pd
from pydantic import Field

from ohlora_assets.configs import GateConfig, KINDS, OWNERS
from ohlora_assets.core.formats import TASKS
from ohlora_assets.core.quality import COPY_TASKS, FORMAT_VALIDATORS, METRICS, QualitySettings
from ohlora_assets.metadata import metric_metadata, png_value, table
from ohlora_assets.resources import ArtifactStore, ModelProfile
from ohlora_assets.versions import VERSION_KEY, candidate, compared_serving, own_materialization, registry

GROUP = "reports"


def _report_metrics(
    context: dg.AssetCheckExecutionContext, key: dg.AssetKey
) -> tuple[dict[str, float] | None, dict[str, str]]:
    """(metrics, {the report's run id and the version it judged}) of the report's materialization
    (`own_materialization`), or (None, {}): checks run alone judge the latest report, so they say which."""
    event = own_materialization(context, key)
    if event is None or event.asset_materialization is None:
        return None, {}
    metadata = event.asset_materialization.metadata
    version = metadata[VERSION_KEY].value if VERSION_KEY in metadata else "unknown"
    judged = {"report_run_id": event.run_id, VERSION_KEY: version}
    return {k: float(metadata[k].value) for k in METRICS if k in metadata}, judged


class QualityReportConfig(GateConfig):
    """How answers are scored, and the gate's tolerances for the comparison with the serving version."""

    copy_similarity: float = Field(
        default=0.85, ge=0, le=1, description="answer vs training answer similarity that counts as a copy"
    )
    unrelated_below: float = Field(
        default=0.5, ge=0, le=1, description="prompt vs training prompt similarity below which they are unrelated"
    )


class QualityThresholds(dg.Config):
    # Shares (0.05, not 5), bounded on the side where a typo would pass every answer; past the other side the
    # check fails whatever the answers, which a test may want.
    max_numbered_prefix_rate: float = Field(default=0.05, le=1)
    max_copied_answer_rate: float = Field(default=0.10, le=1)
    max_give_up_rate: float = Field(default=0.05, le=1)
    min_format_valid_rate: float = Field(default=0.95, ge=0)
    severity: Literal["WARN", "ERROR"] = Field(default="WARN", description="WARN or ERROR for a failed check")


# check (named after its metric) -> (threshold field, True when the metric must stay at or below it)
CHECKS = {
    "numbered_prefix_rate": ("max_numbered_prefix_rate", True),
    "copied_answer_rate": ("max_copied_answer_rate", True),
    "give_up_rate": ("max_give_up_rate", True),
    "format_valid_rate": ("min_format_valid_rate", False),
}


def _checks_for(task: str) -> list[str]:
    applies = {"copied_answer_rate": task in COPY_TASKS, "format_valid_rate": task in FORMAT_VALIDATORS}
    return [name for name in CHECKS if applies.get(name, True)]


def _report_asset(task: str) -> dg.AssetsDefinition:
    adapter, samples_name, name = f"adapter_{task}", f"{task}_inference_samples", f"{task}_quality_report"

    @dg.asset(
        name=name,
        group_name=GROUP, kinds=KINDS[GROUP], owners=OWNERS,
        code_version="4",  # 4: records the tolerances it judged with, which the promotion decides by
        deps=[samples_name],
        ins={"split": dg.AssetIn(f"{task}_split")},
        description=(
            f"Quality of the candidate `{adapter}` from `{samples_name}`: numbered-prefix and copied-answer rates, "
            "empty answers, retries and give-ups, format validity, latency and tokens/s; each beside the serving "
            "version's answers, scored by today's rules. Its blocking check refuses a candidate that is worse."
        ),
        check_specs=[
            dg.AssetCheckSpec(
                "not_worse_than_serving", asset=name, blocking=True,
                description="Each failure-mode rate of the candidate is at most the serving version's plus the tolerance.",
            )
        ],
    )
    def _report(
        context: dg.AssetExecutionContext, config: QualityReportConfig, store: ArtifactStore, profile: ModelProfile,
        split: pd.DataFrame,
    ):
        from ohlora_assets.core.io import publish_files
        from ohlora_assets.core.promotion import AdapterMetrics, adapter_gate, measured_rates, with_baseline
        from ohlora_assets.core.quality import comparison_markdown, flagged_examples_markdown, quality_plot
        from ohlora_assets.core.samples import has_samples, score_samples

        settings = QualitySettings(copy_similarity=config.copy_similarity, unrelated_below=config.unrelated_below)
        train = split[split["split"] == "train"]
        versions = registry(store, adapter)
        version = candidate(context, store, adapter)
        compared, tolerances = compared_serving(versions, version), config.tolerances(profile.smoke)
        rates = measured_rates(task)
        samples_folder = store.report_dir(samples_name) / version.version
        if not has_samples(samples_folder):  # e.g. the model was retrained since
            raise dg.Failure(f"{samples_name} has no answers of {adapter} {version.version}, the version to judge: "
                             f"materialize {samples_name} first, then this report")
        now = score_samples(task, samples_folder, train, settings)
        serving_folder = store.report_dir(samples_name) / compared.version if compared else None
        before = score_samples(task, serving_folder, train, settings) if serving_folder and has_samples(serving_folder) else None
        # The serving version's rates by today's rules when its samples are kept, else as recorded when it served.
        baseline = (before.metrics if before else compared.metrics) if compared else None
        versions.record_metrics(version.version, with_baseline(
            {rate: now.metrics.get(rate) for rate in rates}, compared.version if compared else None,
            {rate: baseline.get(rate) for rate in rates} if baseline else None, tolerances,
        ))
        version = versions.get(version.version)
        scored = {f"serving {compared.version}": before, f"candidate {version.version}": now} if before else {"candidate": now}
        out = store.report_dir(name) / version.version  # per version: a refused candidate's never replaces another's
        plot = quality_plot(
            {k: s.metrics for k, s in scored.items()}, {k: s.flagged["latency_s"].tolist() for k, s in scored.items()}, name
        )
        comparison = comparison_markdown(now.metrics, before.metrics if before else None)
        examples = flagged_examples_markdown(now.flagged)
        publish_files(out, {
            "report.md": f"# {name}\n\n{comparison}\n\n{examples}\n".encode(),
            "flagged.parquet": now.flagged.to_parquet(),
            "quality.png": plot,
        })
        gate_checks = [
            check
            for check in adapter_gate(
                AdapterMetrics.from_dict(version.metrics), AdapterMetrics.from_dict(baseline) if baseline else None,
                tolerances, rates,
            ).checks
            if check.name.endswith("_not_worse")
        ]
        yield dg.MaterializeResult(
            metadata={
                **metric_metadata(now.metrics),
                "report": dg.MetadataValue.md(comparison),
                "plot": png_value(plot, "quality", out / "quality.png"),
                "flagged_examples": dg.MetadataValue.md(examples),
                "samples_run": dg.MetadataValue.dagster_run(now.run_id),
                "serving_version": compared.version if compared else "none besides the candidate",
                "serving_samples_run": dg.MetadataValue.dagster_run(before.run_id) if before else "none",
                "path": dg.MetadataValue.path(str(out / "report.md")),
                VERSION_KEY: version.version,
            }
        )
        yield dg.AssetCheckResult(
            check_name="not_worse_than_serving",
            passed=all(check.passed for check in gate_checks),
            metadata={"checks": table([vars(check) for check in gate_checks]), VERSION_KEY: version.version},
        )

    return _report


def _quality_checks(task: str) -> dg.AssetChecksDefinition:
    report_name = f"{task}_quality_report"

    @dg.multi_asset_check(
        name=f"{task}_quality_checks",
        specs=[
            dg.AssetCheckSpec(name, asset=report_name, description=f"{METRICS[name][0]} within its threshold")
            for name in _checks_for(task)
        ],
        can_subset=True,
    )
    def _checks(context: dg.AssetCheckExecutionContext, config: QualityThresholds):
        key = dg.AssetKey(report_name)
        metrics, judged = _report_metrics(context, key)
        if metrics is None:
            raise dg.Failure(f"{report_name} has no materialization to check")
        severity = dg.AssetCheckSeverity(config.severity)
        for check in context.selected_asset_check_keys:
            field, at_most = CHECKS[check.name]
            value, threshold = metrics.get(check.name), getattr(config, field)
            if value is None:  # the report rated no answers (no validation prompts): nothing passed
                yield dg.AssetCheckResult(
                    asset_key=key, check_name=check.name, passed=False, severity=severity,
                    metadata={"reason": f"not measured: {report_name} rated no answers", **judged},
                )
                continue
            yield dg.AssetCheckResult(
                asset_key=key,
                check_name=check.name,
                passed=value <= threshold if at_most else value >= threshold,
                severity=severity,
                metadata={"value": value, "threshold": threshold, **judged},
            )

    return _checks


report_assets = [_report_asset(task) for task in TASKS]
quality_checks = [_quality_checks(task) for task in TASKS]
