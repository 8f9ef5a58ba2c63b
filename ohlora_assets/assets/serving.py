"""Group `serving`: one promotion asset per gated model, the last step of train -> check -> promote -> serve.

A training asset writes a candidate version; its blocking checks (loads and stops at the end mark, loss fell;
for the ethics model accuracy and recall) and the report's blocking `not_worse_than_serving` stand between it
and here, so a failed check stops the run before this step. Here the whole gate (core/promotion.py) is decided
once more over the figures the checks recorded, by the tolerances the report judged with (its run config), and
the serving pointer moves in one atomic rename only when every check passed; otherwise the serving version stays
and the metadata says why. A candidate no report judged against the version serving now (a step left out of the
selection, or another version promoted since) fails the step, naming what to materialize. Old versions are
pruned, with the report folders kept for them (samples, loss curves, reports), and any such folder a killed run
left.
"""

from dataclasses import asdict

import dagster as dg

from ohlora_assets.configs import KINDS, OWNERS, PromotionConfig
from ohlora_assets.core.formats import TASKS
from ohlora_assets.core.model_training import ETHICS_MODEL
from ohlora_assets.core.registry import remove_orphaned_reports
from ohlora_assets.metadata import table
from ohlora_assets.resources import ArtifactStore
from ohlora_assets.versions import candidate, compared_serving, registry

GROUP = "serving"
# gated model -> the asset that evaluates its candidate
EVALUATED_BY = {**{f"adapter_{task}": f"{task}_quality_report" for task in TASKS}, ETHICS_MODEL: "ethics_report"}


def _to_judge(model: str, version: str, store: ArtifactStore) -> str:
    """What to materialize so that a report judges `version`: an adapter's report scores its version's samples."""
    from ohlora_assets.core.samples import has_samples

    report = EVALUATED_BY[model]
    samples = f"{model.removeprefix('adapter_')}_inference_samples"
    if model == ETHICS_MODEL or has_samples(store.report_dir(samples) / version):
        return report
    return f"{samples}, then {report},"


def _promotion_asset(model: str, evaluated_by: str) -> dg.AssetsDefinition:
    @dg.asset(
        name=f"serving_{model}",
        group_name=GROUP, kinds=KINDS[GROUP], owners=OWNERS,
        code_version="2",
        deps=[model, evaluated_by],
        description=(
            f"Promotes the candidate version of `{model}` when every gate check passed (checked by `{model}` and "
            f"`{evaluated_by}`); the serving pointer moves in one atomic rename. Data version: the serving version."
        ),
    )
    def _promote(
        context: dg.AssetExecutionContext, config: PromotionConfig, store: ArtifactStore
    ) -> dg.MaterializeResult:
        from ohlora_assets.core.promotion import (
            AdapterMetrics,
            EthicsMetrics,
            GateDecision,
            adapter_gate,
            ethics_gate,
            measured_rates,
            promote_if_passed,
            recorded_baseline,
            recorded_tolerances,
            versions_table,
        )

        versions = registry(store, model)
        version = candidate(context, store, model)
        compared = compared_serving(versions, version)
        # The serving figures and the tolerances this candidate's report judged it by; if another version serves
        # by now, the comparison is stale and the candidate waits for a new report.
        to_judge = _to_judge(model, version.version, store)
        baseline, stale = recorded_baseline(version.metrics, compared.version if compared else None, to_judge)
        tolerances, unjudged = recorded_tolerances(version.metrics, to_judge)

        def prune() -> list[str]:
            # The candidate is kept whatever its age says (a clock set back would sort it oldest): a refused one
            # stays for `ohlora models promote`.
            pruned = versions.prune(config.keep_versions, protected={version.version})
            remove_orphaned_reports(store.path("reports"), store.path("models"))
            return pruned

        # The candidate serves already (the same weights trained again, an earlier release's or a manual promotion):
        # nothing to decide, and no report need have judged it.
        serving = versions.serving_label()
        if serving == version.version:
            decision, promoted, message = GateDecision(()), False, f"{version.version} serves already"
        elif stale is not None or unjudged is not None:
            # a step left out, not a verdict: the run fails, so that it does not read as a promotion
            reasons = "; ".join(check.reason for check in (stale, unjudged) if check is not None)
            prune()
            raise dg.Failure(f"{model} {version.version} was not judged against what serves now ({reasons}); "
                             + (f"{serving} keeps serving" if serving else "nothing serves"))
        else:
            if model == ETHICS_MODEL:
                decision = ethics_gate(EthicsMetrics.from_dict(version.metrics),
                                       EthicsMetrics.from_dict(baseline) if baseline else None, tolerances)
            else:
                decision = adapter_gate(AdapterMetrics.from_dict(version.metrics),
                                        AdapterMetrics.from_dict(baseline) if baseline else None, tolerances,
                                        measured_rates(model.removeprefix("adapter_")))
            promoted, message = promote_if_passed(versions, version.version, decision)
        pruned = prune()
        context.log.info(f"{model}: {message}")
        return dg.MaterializeResult(
            data_version=dg.DataVersion(versions.serving_label() or "none"),
            metadata={
                "decision": message,
                "promoted": promoted,
                "candidate": version.version,
                "serving": versions.serving_label() or "none",
                "checks": table(decision.rows()),
                "tolerances": table([asdict(tolerances)]) if tolerances else "none recorded",
                "versions": table(versions_table(versions)),
                "pruned": ", ".join(pruned) or "none",
            },
        )

    return _promote


promotion_assets = [_promotion_asset(model, evaluated_by) for model, evaluated_by in EVALUATED_BY.items()]
