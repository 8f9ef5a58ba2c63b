"""The reports group on the smoke profile: data -> embedded base -> adapters -> samples, reports, checks, experiments."""

import json

import dagster as dg
import pandas as pd
import pytest

from ohlora_assets.assets import data, models, reports
from ohlora_assets.core.formats import TASKS
from ohlora_assets_tests.conftest import UPSTREAM, make_resources, sample_paths

ASSETS = dg.load_assets_from_modules([data, models, reports])
REPORT_CHECKS = dg.load_asset_checks_from_modules([reports])
ALL = [*ASSETS, *REPORT_CHECKS]
REPORTS = [f"{task}_quality_report" for task in TASKS]
# One epoch and shorter examples for the adapters: the reports need adapters, not good ones.
ADAPTERS_FAST = {"ops": {f"adapter_{task}": {"config": {"epochs": 1, "max_length": 96}} for task in TASKS}}


def _materializations(result: dg.ExecuteInProcessResult) -> dict[str, dg.AssetMaterialization]:
    return {e.asset_key.to_user_string(): e.materialization for e in result.get_asset_materialization_events()}


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory):
    """One smoke run of the whole graph, shared by the tests below (it trains five small models)."""
    root = tmp_path_factory.mktemp("store")
    instance = dg.DagsterInstance.ephemeral()
    resources = make_resources(root)
    result = dg.materialize(ALL, resources=resources, instance=instance, run_config=ADAPTERS_FAST)
    assert result.success
    return result, instance, resources, root


def test_inference_samples_are_saved_and_shown(pipeline):
    result, _, resources, _ = pipeline
    events = _materializations(result)
    for task in TASKS:
        name = f"{task}_inference_samples"
        meta = events[name].metadata
        frame = pd.read_parquet(resources["store"].report_dir(name) / "samples.parquet")
        # smoke: 3 validation prompts x 2 answers
        assert meta["prompts"].value == 3 and meta["answers"].value == len(frame) == 6, task
        assert list(frame["answer_index"]) == [0, 1] * 3
        assert {"source_row", "prompt", "answer", "retries", "gave_up", "output_tokens", "latency_s"} <= set(frame.columns)
        assert frame["prompt"].str.endswith("### 답변:").all() and (frame["output_tokens"] > 0).all()
        assert (frame["latency_s"] > 0).all() and frame["retries"].between(0, 1).all()
        assert "source_row" in meta["samples"].value.splitlines()[0]


def test_quality_reports_have_metrics_plot_and_evaluated_checks(pipeline):
    result, _, resources, _ = pipeline
    events = _materializations(result)
    for name in REPORTS:
        meta = events[name].metadata
        for key in ("numbered_prefix_rate", "give_up_rate", "retries", "latency_p95_s", "tokens_per_s"):
            assert key in meta, (name, key)
        assert 0.0 <= meta["give_up_rate"].value <= 1.0
        assert meta["latency_p95_s"].value >= meta["latency_mean_s"].value * 0.5
        assert "first run" in meta["report"].value and "data:image/png;base64," in meta["plot"].value
        assert (resources["store"].report_dir(name) / "quality.png").is_file()
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
    assert len(evaluations) == 4 * 2 + 3 + 2  # numbered + give-up on each, copy on 3 tasks, format on 2
    for evaluation in evaluations.values():
        assert evaluation.severity == dg.AssetCheckSeverity.WARN
        assert evaluation.metadata["threshold"].value is not None


def test_new_samples_are_compared_with_the_previous_ones(pipeline):
    result, instance, resources, _ = pipeline
    first = _materializations(result)["output_message_quality_report"].metadata
    config = {
        "ops": {
            # another seed: other answers from the same adapter
            "output_message_inference_samples": {"config": {"seed": 1}},
            "output_message_quality_checks": {"config": {"max_give_up_rate": -1.0, "severity": "ERROR"}},
        }
    }
    again = dg.materialize(
        ALL,
        selection=["output_message_inference_samples", "output_message_quality_report"],
        resources=resources,
        instance=instance,
        run_config=config,
    )
    assert again.success
    meta = _materializations(again)["output_message_quality_report"].metadata
    assert meta["previous_samples_run_id"].value == result.run_id and meta["samples_run_id"].value == again.run_id
    table = meta["report"].value
    assert "first run" not in table
    # the previous column holds the first run's values, scored again by the same rules
    row = next(line for line in table.splitlines() if line.startswith("| give-up rate |"))
    assert row.split("|")[3].strip() == f"{first['give_up_rate'].value:.3f}"
    assert "data:image/png;base64," in meta["plot"].value
    folder = resources["store"].report_dir("output_message_inference_samples")
    assert (folder / "previous" / "samples.parquet").is_file()
    checks = {e.check_name: e for e in again.get_asset_check_evaluations()}
    # the configured threshold makes any give-up rate fail, at the configured severity
    assert not checks["give_up_rate"].passed and checks["give_up_rate"].severity == dg.AssetCheckSeverity.ERROR
    assert checks["give_up_rate"].metadata["threshold"].value == -1.0


def test_lora_rank_experiment_reports_both_ranks(pipeline):
    result, _, resources, _ = pipeline
    meta = _materializations(result)["lora_rank_experiment"].metadata
    assert "| metric | rank 16 | rank 64 |" in meta["report"].value
    assert "rank_16/numbered_prefix_rate" in meta and "rank_64/give_up_rate" in meta
    store = resources["store"]
    for rank in (16, 64):
        config = json.loads((store.model_dir("lora_rank_experiment") / f"rank_{rank}" / "adapter_config.json").read_text())
        assert config["r"] == rank
    assert set(pd.read_parquet(store.report_dir("lora_rank_experiment") / "answers.parquet")["rank"]) == {16, 64}


def test_rag_concept_experiment_reports_accuracy_per_question(pipeline):
    result, _, _, _ = pipeline
    meta = _materializations(result)["rag_concept_experiment"].metadata
    assert 0.0 <= meta["accuracy_with_concept"].value <= 1.0
    assert 0.0 <= meta["accuracy_without_concept"].value <= 1.0
    assert meta["questions"].value == 3 and meta["key_facts_derived_from_concept"].value == 0
    assert "| # | question | key facts | with concept | without concept |" in meta["per_question"].value
    assert "data:image/png;base64," in meta["plot"].value


@pytest.mark.skipif(not (UPSTREAM / "SFT_with_RAG_concept.csv").is_file(), reason="upstream seed data not present")
def test_rag_concept_experiment_runs_on_the_seed_csv(pipeline):
    _, instance, _, root = pipeline
    # same artifact folder (the smoke base model is reused), the seed's ML Q&A file instead of ours
    resources = make_resources(root, paths=sample_paths(ml_qa_csv=str(UPSTREAM / "SFT_with_RAG_concept.csv")))
    result = dg.materialize(ALL, selection=["ml_qa_dataset", "rag_concept_experiment"], resources=resources, instance=instance)
    assert result.success
    meta = _materializations(result)["rag_concept_experiment"].metadata
    assert meta["questions"].value == 3 and meta["key_facts_derived_from_concept"].value == 3
    assert "코사인 유사도 *(derived)*" in meta["per_question"].value
