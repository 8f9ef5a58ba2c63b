"""The ethics group materialized on the smoke profile, its lineage, and the commands built on its model."""

import json
import re
from pathlib import Path

import dagster as dg
import pytest
from sentence_transformers import SentenceTransformer

from ohlora_assets import cli
from ohlora_assets.assets import data, ethics, serving
from ohlora_assets.core.ethics.categories import BLOCKABLE, ETHICS_CATEGORIES
from ohlora_assets.core.device import bf16_is_native
from ohlora_assets.core.io import directory_hash
from ohlora_assets_tests.conftest import make_resources, sample_paths

ETHICS = ["ethics_pairs", "ethics_sbert_model", "ethics_thresholds", "ethics_report"]


ASSETS = dg.load_assets_from_modules([data, ethics, serving])


@pytest.fixture(scope="module")
def instance():
    return dg.DagsterInstance.ephemeral()


@pytest.fixture(scope="module")
def run(tmp_path_factory, instance):
    import torch

    torch.set_num_threads(1)
    resources = make_resources(tmp_path_factory.mktemp("ethics") / "store")
    selection = dg.AssetSelection.assets(*ETHICS, "serving_ethics_sbert_model").upstream()
    result = dg.materialize(ASSETS, selection=selection, resources=resources, instance=instance)
    return result, resources


def _materialization(result, name):
    (event,) = [e for e in result.get_asset_materialization_events() if e.asset_key.to_user_string() == name]
    return event.materialization


def test_the_group_materializes_with_a_loadable_model_and_its_data_version(run):
    result, resources = run
    assert result.success
    pairs = result.output_for_node("ethics_pairs")
    assert len(pairs) == 5 * len(result.output_for_node("ethics_dataset"))
    materialization = _materialization(result, "ethics_sbert_model")
    model_dir = Path(materialization.metadata["path"].value)
    assert model_dir.parent == resources["store"].model_dir("ethics_sbert_model") / "versions"
    assert materialization.tags["dagster/data_version"] == directory_hash(model_dir)
    assert materialization.metadata["train_prompts"].value + materialization.metadata["valid_prompts"].value > 600
    # Plain sentence-transformers, no code of ours needed to load it.
    model = SentenceTransformer(str(model_dir), device="cpu")
    assert type(model[0]).__module__.startswith("sentence_transformers.")
    assert model.max_seq_length == 64 and model[1].pooling_mode == "mean"
    assert materialization.metadata["base_model"].value.startswith("multilingual-e5-small")
    expected_precision = "bf16 autocast" if bf16_is_native("cpu") else "fp32"
    assert materialization.metadata["forward_precision"].value == expected_precision
    assert model.encode(["로라야 사랑해"]).shape[0] == 1


def test_thresholds_show_defaults_beside_calibrated_values(run):
    result, _ = run
    thresholds = result.output_for_node("ethics_thresholds")
    assert thresholds["default"] == {BLOCKABLE[0]: 0.98, BLOCKABLE[1]: 0.95, BLOCKABLE[2]: 0.9, BLOCKABLE[3]: 0.9}
    assert set(thresholds["calibrated"]) == set(BLOCKABLE)
    table = _materialization(result, "ethics_thresholds").metadata["thresholds"]
    columns = {column.name: column.type for column in table.schema.columns}
    assert columns["default_threshold"] == "float" and "calibrated_general_fp" in columns
    assert len(table.records) == len(BLOCKABLE)


def test_report_has_metrics_confusion_histograms_and_misclassified(run):
    result, resources = run
    metadata = _materialization(result, "ethics_report").metadata
    assert 0.0 <= metadata["accuracy"].value <= 1.0 and metadata["mse"].value >= 0.0
    assert "predicted \\ true" in metadata["confusion_matrix"].value and "precision" in metadata["confusion_matrix"].value
    assert metadata["histograms"].value.count("data:image/png;base64,") == 4
    report_dir = resources["store"].report_dir("ethics_report") / metadata["version"].value
    assert sorted(p.name for p in report_dir.glob("*.png")) == [
        "histogram_hate.png", "histogram_love.png", "histogram_paedrip.png", "histogram_politics.png",
    ]
    assert "misclassified" in metadata
    (check,) = [c for c in result.get_asset_check_evaluations() if c.check_name == "accuracy_target"]
    assert check.severity == dg.AssetCheckSeverity.WARN
    assert check.passed == (metadata["accuracy"].value >= 0.95)
    assert check.metadata["accuracy"].value == metadata["accuracy"].value


def test_the_report_draws_its_own_candidates_thresholds_from_that_versions_file(run, instance):
    """Not the latest `ethics_thresholds` output: an overlapping run's calibration must not enter this report."""
    result, resources = run
    version = _materialization(result, "ethics_sbert_model").metadata["version"].value
    thresholds_file = resources["store"].report_dir("ethics_thresholds") / version / "thresholds.json"
    thresholds = json.loads(thresholds_file.read_text(encoding="utf-8"))
    thresholds["calibrated"][BLOCKABLE[0]] = 0.1234  # what only this version's file says
    thresholds_file.write_text(json.dumps(thresholds), encoding="utf-8")
    again = dg.materialize(ASSETS, selection=["ethics_report"], resources=resources, instance=instance)
    report = Path(_materialization(again, "ethics_report").metadata["report"].value).read_text(encoding="utf-8")
    assert re.search(r"\|\s*0\.1234\s*\|", report) and "calibrated_threshold" in report
    thresholds_file.unlink()
    missing = dg.materialize(ASSETS, selection=["ethics_report"], resources=resources, instance=instance,
                             raise_on_error=False)
    assert not missing.success
    (failure,) = [e for e in missing.all_events if e.is_step_failure]
    assert f"no thresholds calibrated for ethics_sbert_model {version}" in str(failure.step_failure_data.error)


def test_the_ethics_branch_reads_only_the_ethics_csv():
    from ohlora_assets.definitions import defs

    graph = defs.resolve_asset_graph()
    upstream = dg.AssetSelection.assets(*ETHICS).upstream().resolve(graph)  # materializable assets only
    assert {key.to_user_string() for key in upstream} == {"ethics_dataset", *ETHICS}
    groups = {key.to_user_string(): graph.get(key).group_name for key in upstream}
    assert all(groups[name] == "ethics" for name in ETHICS)


def test_cli_check_prints_json_and_logs_to_the_given_file(run, tmp_path, capsys):
    result, _ = run
    model_dir = Path(_materialization(result, "ethics_sbert_model").metadata["path"].value)
    log = tmp_path / "sanctions.sqlite"
    code = cli.main(["ethics", "check", "사1랑2해 로라야", "--user", "u1", "--answer", "미안", "--model", str(model_dir), "--log", str(log)])
    assert code == 0
    output = json.loads(capsys.readouterr().out)
    assert output["decision"] in {"allow", "warn", "block"}
    assert output["normalized_prompt"] == "사랑해 로라야"
    assert set(output["scores"]) == set(ETHICS_CATEGORIES)
    assert log.is_file()


def test_cli_check_without_a_model_says_how_to_get_one(tmp_path, capsys):
    code = cli.main(["ethics", "check", "-_-", "--user", "u", "--model", str(tmp_path / "none"), "--log", str(tmp_path / "l.sqlite")])
    assert code == 1 and "ethics_sbert_model" in json.loads(capsys.readouterr().out)["error"]


def test_throughput_bench_scores_both_ways_alike_and_prints_its_ratio_last(monkeypatch, capsys):
    """It measures on the embedded base it builds itself, whatever the artifact folder holds. The ratio is the
    benchmark's to judge (`ohlora bench`), not a test's: a loaded CI machine would make a speed bound flaky."""
    import argparse

    from ohlora_assets.bench import ethics_throughput

    monkeypatch.setenv("OHLORA_TORCH_THREADS", "1")
    ratio = ethics_throughput.run(argparse.Namespace(quick=True))  # raises if the two methods' scores differ
    lines = capsys.readouterr().out.strip().splitlines()
    assert "not fine-tuned" in lines[0]
    assert lines[1].endswith(f"of {sample_paths().ethics_csv}")  # which data, as every benchmark says
    assert float(lines[-2].split(":")[1]) <= 1e-3  # max |score difference|
    assert lines[-1] == f"ratio={ratio:.2f}" and ratio > 0


def test_accuracy_bench_prints_accuracy_last(tmp_path, monkeypatch, capsys):
    import argparse

    from ohlora_assets.bench import ethics_accuracy
    from ohlora_assets.resources import SAMPLE_DATA

    monkeypatch.setenv("OHLORA_TORCH_THREADS", "1")
    csv = str(SAMPLE_DATA / "ethics_dataset.csv")
    accuracy = ethics_accuracy.run(argparse.Namespace(train=csv, test=csv, quick=True, seed=None))
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[-1] == f"accuracy={accuracy:.4f}" and 0.0 <= accuracy <= 1.0
    assert any(line.startswith("misclassified:") for line in lines)
    gate = [line for line in lines if line.startswith("test gate at ")]
    assert [line.split()[3] for line in gate] == ["product", "calibrated"]
    # Thresholds calibrated on the test split are set just above its highest 일반 score: no false alarm there.
    assert gate[1].endswith("일반 false alarms 0.00")
