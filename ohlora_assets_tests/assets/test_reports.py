"""The reports and serving groups on the smoke profile: data -> base -> adapters -> samples and reports of the
candidate version -> the promotion gate; then a retrain compared with the serving version, a worse candidate
refused while the serving version keeps serving, and a rollback."""

import dagster as dg
import pandas as pd
import pytest

from ohlora_assets.assets import base_models, data, models, reports, samples, serving
from ohlora_assets.core.formats import TASKS
from ohlora_assets.core.lora import load_adapter
from ohlora_assets.core.model_training import VERSION_KEY
from ohlora_assets.core.promotion import BASELINE_KEY
from ohlora_assets.core.registry import ModelRegistry
from ohlora_assets_tests.conftest import smoke_materialization, step_failure

ASSETS = dg.load_assets_from_modules([data, base_models, models, samples, reports, serving])
CHECKS = dg.load_asset_checks_from_modules([models, reports])
ALL = [*ASSETS, *CHECKS]
REPORTS = [f"{task}_quality_report" for task in TASKS]
ADAPTERS = [f"adapter_{task}" for task in TASKS]
# One epoch and shorter examples for the adapters: the reports need adapters, not good ones. (Two epochs are
# the smoke cap; one makes loss_decreased fail, which blocks, so keep the cap here.)
ADAPTERS_FAST = {"ops": {f"adapter_{task}": {"config": {"max_length": 96}} for task in TASKS}}


def _materializations(result: dg.ExecuteInProcessResult) -> dict[str, dg.AssetMaterialization]:
    return {e.asset_key.to_user_string(): e.materialization for e in result.get_asset_materialization_events()}


def _registry(resources, name: str) -> ModelRegistry:
    return ModelRegistry(resources["store"].path("models"), name)


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory):
    """One smoke run of data, models, reports and serving, shared by the tests below."""
    result, instance, resources = smoke_materialization(
        tmp_path_factory.mktemp("store"), ALL, run_config=ADAPTERS_FAST,
        selection=dg.AssetSelection.all() - dg.AssetSelection.assets("serving_ethics_sbert_model"),
    )
    assert result.success
    return result, instance, resources


def test_inference_samples_of_the_candidate_are_saved_and_shown(pipeline):
    result, _, resources = pipeline
    events = _materializations(result)
    for task in TASKS:
        name = f"{task}_inference_samples"
        meta = events[name].metadata
        assert meta["version"].value == events[f"adapter_{task}"].metadata["version"].value
        frame = pd.read_parquet(resources["store"].report_dir(name) / meta["version"].value / "samples.parquet")
        # smoke: 3 validation prompts x 2 answers
        assert meta["prompts"].value == 3 and meta["answers"].value == len(frame) == 6, task
        assert list(frame["answer_index"]) == [0, 1] * 3
        assert {"source_row", "prompt", "answer", "retries", "gave_up", "output_tokens", "latency_s"} <= set(frame.columns)
        assert frame["prompt"].str.endswith("### 답변:").all() and (frame["output_tokens"] > 0).all()
        assert (frame["latency_s"] > 0).all() and frame["retries"].between(0, 1).all()
        assert "source_row" in meta["samples"].value.splitlines()[0]


def test_quality_reports_have_metrics_plot_and_evaluated_checks(pipeline):
    result, _, resources = pipeline
    events = _materializations(result)
    for name in REPORTS:
        meta = events[name].metadata
        for key in ("numbered_prefix_rate", "give_up_rate", "retries", "latency_p95_s", "tokens_per_s"):
            assert key in meta, (name, key)
        assert 0.0 <= meta["give_up_rate"].value <= 1.0
        assert meta["latency_p95_s"].value >= meta["latency_mean_s"].value * 0.5
        # Nothing served when the first candidates were judged.
        assert "nothing serves yet" in meta["report"].value and "data:image/png;base64," in meta["plot"].value
        assert (resources["store"].report_dir(name) / meta[VERSION_KEY].value / "quality.png").is_file()
    assert "copied_answer_rate" not in events["eyes_mouth_pose_quality_report"].metadata
    assert "format_valid_rate" in events["memory_quality_report"].metadata
    evaluations = {
        (e.asset_key.to_user_string(), e.check_name): e
        for e in result.get_asset_check_evaluations()
        if e.asset_key.to_user_string() in REPORTS
    }
    assert ("output_message_quality_report", "copied_answer_rate") in evaluations
    assert ("eyes_mouth_pose_quality_report", "format_valid_rate") in evaluations
    assert ("output_message_quality_report", "format_valid_rate") not in evaluations
    # numbered + give-up on each, copy on 3 tasks, format on 2, and the blocking comparison on each
    assert len(evaluations) == 4 * 2 + 3 + 2 + 4
    for (report, check), evaluation in evaluations.items():
        if check == "not_worse_than_serving":
            assert evaluation.passed and evaluation.severity == dg.AssetCheckSeverity.ERROR
        else:
            assert evaluation.severity == dg.AssetCheckSeverity.WARN
            assert evaluation.metadata["threshold"].value is not None
        # the version judged, so that a check executed alone later says which report it read
        assert evaluation.metadata[VERSION_KEY].value == events[report].metadata[VERSION_KEY].value


def test_first_versions_serve_once_the_gate_passed(pipeline):
    result, _, resources = pipeline
    events = _materializations(result)
    for name in ADAPTERS:
        meta = events[f"serving_{name}"].metadata
        version = events[name].metadata["version"].value
        assert meta["promoted"].value is True and meta["serving"].value == version == meta["candidate"].value
        assert _registry(resources, name).serving_label() == version
        assert events[f"serving_{name}"].tags["dagster/data_version"] == version
        assert [r.data["version"] for r in meta["versions"].records if r.data["serving"] == "*"] == [version]
        # decided by the tolerances the report judged with: the smoke profile's open ones
        (tolerances,) = meta["tolerances"].records
        assert tolerances.data["quality_rate"] == 1.0 and tolerances.data["min_end_mark_rate"] == 0.0
    load_adapter(_registry(resources, "adapter_summary").serving_path())  # plain PEFT


def test_a_retrain_is_compared_with_the_serving_version_then_served_and_rolled_back(pipeline):
    result, instance, resources = pipeline
    first = _materializations(result)
    first_version = first["adapter_output_message"].metadata["version"].value
    config = {
        "ops": {
            # another seed: other weights, so a new candidate version
            "adapter_output_message": {"config": {"seed": 1, "max_length": 96}},
            "output_message_quality_checks": {"config": {"max_give_up_rate": -1.0, "severity": "ERROR"}},
        }
    }
    again = dg.materialize(
        ALL,
        selection=["adapter_output_message", "output_message_inference_samples", "output_message_quality_report",
                   "serving_adapter_output_message"],
        resources=resources, instance=instance, run_config=config, raise_on_error=False,
    )
    events = _materializations(again)
    candidate = events["adapter_output_message"].metadata["version"].value
    assert candidate != first_version
    report = events["output_message_quality_report"].metadata
    assert report["serving_version"].value == first_version
    # the serving column holds the first version's answers, scored again by the same rules
    row = next(line for line in report["report"].value.splitlines() if line.startswith("| give-up rate |"))
    assert row.split("|")[3].strip() == f"{first['output_message_quality_report'].metadata['give_up_rate'].value:.3f}"
    checks = {e.check_name: e for e in again.get_asset_check_evaluations()}
    # the configured threshold makes any give-up rate fail, at the configured severity (it does not block)
    assert not checks["give_up_rate"].passed and checks["give_up_rate"].severity == dg.AssetCheckSeverity.ERROR
    assert checks["not_worse_than_serving"].passed
    registry = _registry(resources, "adapter_output_message")
    assert events["serving_adapter_output_message"].metadata["promoted"].value is True
    assert registry.serving_label() == candidate
    assert registry.rollback().version == first_version and registry.serving_label() == first_version


def test_a_worse_candidate_is_refused_and_the_serving_version_keeps_serving(pipeline):
    """A retrain that learns nothing (learning rate 0, no dropout: the loss cannot fall) fails the blocking
    loss check: nothing downstream runs and the version that served still serves, and still loads."""
    result, instance, resources = pipeline
    registry = _registry(resources, "adapter_summary")
    serving = registry.serving_label()
    worse = dg.materialize(
        ALL,
        selection=["adapter_summary", "summary_inference_samples", "summary_quality_report", "serving_adapter_summary"],
        resources=resources, instance=instance, raise_on_error=False,
        run_config={"ops": {"adapter_summary": {"config": {"learning_rate": 0.0, "dropout": 0.0, "max_length": 96}}}},
    )
    assert not worse.success
    events = _materializations(worse)
    assert set(events) == {"adapter_summary"}  # the candidate was written; nothing judged it further
    (loss,) = [e for e in worse.get_asset_check_evaluations() if e.check_name == "loss_decreased"]
    assert not loss.passed and loss.severity == dg.AssetCheckSeverity.ERROR
    assert events["adapter_summary"].metadata["version"].value != serving
    assert registry.serving_label() == serving
    load_adapter(registry.serving_path())


def test_a_candidate_no_report_measured_is_refused_when_its_promotion_runs_alone(pipeline):
    """Retrained, checked, then promoted without its report (a partial selection, or another run's candidate):
    nothing compared it with the serving version, so it must not serve, and the failed run says what to run;
    the report clicked before the new version's samples says so too. Following the hints judges it."""
    _, instance, resources = pipeline
    registry = _registry(resources, "adapter_memory")
    serving = registry.serving_label()
    trained = dg.materialize(
        ALL, selection=["adapter_memory"], resources=resources, instance=instance, raise_on_error=False,
        run_config={"ops": {"adapter_memory": {"config": {"seed": 1, "max_length": 96}}}},
    )
    candidate = _materializations(trained)["adapter_memory"].metadata["version"].value
    assert candidate != serving

    def alone(asset: str) -> dg.ExecuteInProcessResult:
        return dg.materialize(ALL, selection=[asset], resources=resources, instance=instance, raise_on_error=False)

    refused = step_failure(alone("serving_adapter_memory")).message
    assert f"no report compared it, but {serving} serves now" in refused
    assert "no report recorded the tolerances it judged it by" in refused
    assert "materialize memory_inference_samples, then memory_quality_report, again" in refused
    assert f"{serving} keeps serving" in refused and registry.serving_label() == serving
    assert candidate in {v.version for v in registry.versions()}  # kept for a report, or a manual promote
    assert (f"memory_inference_samples has no answers of adapter_memory {candidate}, the version to judge: "
            "materialize memory_inference_samples first") in step_failure(alone("memory_quality_report")).message
    judged = dg.materialize(ALL, selection=["memory_inference_samples", "memory_quality_report",
                                            "serving_adapter_memory"], resources=resources, instance=instance,
                            raise_on_error=False)
    materialized = _materializations(judged)
    assert "memory_quality_report" in materialized
    assert registry.get(candidate).metrics[BASELINE_KEY]["version"] == serving
    # judged now: the promotion decided (served or refused), or the report's blocking check stopped it before
    failed = {e.step_key for e in judged.all_events if e.event_type == dg.DagsterEventType.STEP_FAILURE}
    blocked = [e for e in judged.get_asset_check_evaluations() if e.check_name == "not_worse_than_serving"
               and not e.passed]
    assert "serving_adapter_memory" not in failed and ("serving_adapter_memory" in materialized) != bool(blocked)


def test_a_promotion_run_again_for_the_version_that_serves_decides_nothing(pipeline):
    """No report need judge a version that serves already (the same weights trained again, or one an earlier
    release or a person promoted): the pointer stays, and the metadata says so instead of "refused"."""
    _, instance, resources = pipeline
    registry = _registry(resources, "adapter_eyes_mouth_pose")
    serving, pointer = registry.serving_label(), registry.pointer
    before = pointer.read_bytes()
    again = dg.materialize(ALL, selection=["serving_adapter_eyes_mouth_pose"], resources=resources, instance=instance)
    meta = _materializations(again)["serving_adapter_eyes_mouth_pose"].metadata
    assert meta["decision"].value == f"{serving} serves already" and meta["promoted"].value is False
    assert pointer.read_bytes() == before


def test_what_to_materialize_for_an_unjudged_candidate_asks_for_samples_only_when_they_are_missing(tmp_path):
    from ohlora_assets.core.samples import RUN_FILE, SAMPLES_FILE
    from ohlora_assets.resources import ArtifactStore

    store = ArtifactStore(root=str(tmp_path))
    assert serving._to_judge("adapter_memory", "a" * 16, store) == "memory_inference_samples, then memory_quality_report,"
    kept = store.report_dir("memory_inference_samples") / ("a" * 16)
    kept.mkdir(parents=True)
    (kept / SAMPLES_FILE).write_bytes(b"")
    (kept / RUN_FILE).write_text("run")
    assert serving._to_judge("adapter_memory", "a" * 16, store) == "memory_quality_report"  # only compared stale
    assert serving._to_judge("ethics_sbert_model", "a" * 16, store) == "ethics_report"
