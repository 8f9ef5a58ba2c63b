"""The data group on a real (ephemeral or temporary) Dagster instance."""

import re
import shutil
from pathlib import Path

import dagster as dg
import pandas as pd

# Dagster's own test helpers for observations and staleness (no public equivalent in 1.13).
from dagster._core.definitions.data_version import StaleStatus
from dagster._core.definitions.observe import observe
from dagster._utils.test.data_versions import get_stale_status_resolver

from ohlora_assets.assets import data
from ohlora_assets.core.io import content_hash
from ohlora_assets_tests.conftest import make_resources, sample_paths

DATA_ASSETS = dg.load_assets_from_modules([data])
SOURCES = [a for a in DATA_ASSETS if isinstance(a, dg.SourceAsset)]


def _values(result: dg.ExecuteInProcessResult) -> dict[str, object]:
    return {e.asset_key.to_user_string(): e for e in result.get_asset_materialization_events()}


def test_data_group_on_our_sample_data(resources):
    result = dg.materialize(DATA_ASSETS, resources=resources, instance=dg.DagsterInstance.ephemeral())
    assert result.success
    splits = {task: result.output_for_node("task_splits", f"{task}_split") for task in data.TASKS}
    for task, frame in splits.items():
        assert (frame["split"] == "train").sum() > 100, task
        assert (frame["split"] == "valid").sum() > 20, task
    augmented = result.output_for_node("augmented_output_message_train")
    assert sorted(augmented["epoch"].unique()) == [0, 1, 2, 3, 4]
    per_epoch = [set(augmented.loc[augmented["epoch"] == e, "prompt"]) for e in range(5)]
    assert len({frozenset(p) for p in per_epoch}) > 1, "every epoch got the same variant"
    # completions are never augmented
    assert (augmented.groupby("source_row")["completion"].nunique() == 1).all()
    meta = _values(result)["output_message_split"].materialization.metadata
    assert meta["train_rows"].value == (splits["output_message"]["split"] == "train").sum()
    assert "|" in meta["sample"].value  # a Markdown table


def test_upstream_csvs_give_the_original_split_sizes(tmp_path, upstream):
    paths = sample_paths(
        dialogue_csv=str(upstream / "OhLoRA_fine_tuning_v4.csv"),
        ethics_csv=str(upstream / "ethics_train_test_dataset.csv"),
        ml_qa_csv=str(upstream / "SFT_with_RAG_concept.csv"),
    )
    result = dg.materialize(
        DATA_ASSETS, resources=make_resources(tmp_path, paths), instance=dg.DagsterInstance.ephemeral()
    )
    assert result.success
    om = result.output_for_node("task_splits", "output_message_split")
    assert (om["split"] == "train").sum() == 632 and (om["split"] == "valid").sum() == 120
    ethics = result.output_for_node("ethics_dataset")
    assert ethics["type"].value_counts().to_dict() == {"train": 1060, "test": 190}
    assert len(result.output_for_node("ml_qa_dataset")) == 60


def test_bad_csv_fails_the_blocking_check_and_keeps_earlier_outputs(tmp_path):
    dialogue = tmp_path / "dialogue.csv"
    shutil.copy(sample_paths().dialogue_csv, dialogue)
    resources = make_resources(tmp_path / "store", sample_paths(dialogue_csv=str(dialogue)))
    instance = dg.DagsterInstance.ephemeral()
    assert dg.materialize(DATA_ASSETS, resources=resources, instance=instance).success
    io_dir = Path(resources["store"].path("io"))
    before = {name: (io_dir / name).read_bytes() for name in ("dialogue_dataset", "output_message_split")}

    frame = pd.read_csv(dialogue, dtype=str, keep_default_na=False, index_col=0)
    frame.loc[frame.index[frame["data_type"] == "train"][:8], "mouth"] = "살짝"
    frame.loc[frame.index[frame["data_type"] == "valid"][0], "input_data"] = ""
    frame.to_csv(dialogue)

    result = dg.materialize(DATA_ASSETS, resources=resources, instance=instance, raise_on_error=False)
    assert not result.success
    [check] = [c for c in result.get_asset_check_evaluations() if c.asset_key == dg.AssetKey("dialogue_dataset")]
    assert not check.passed and check.metadata["failures"].value >= 3
    table = check.metadata["issues"].value
    assert str(dialogue) in table and "mouth" in table and "input_data" in table
    # five of a kind, then a count: a wholly wrong column must not bury the other problems
    assert table.count("'살짝'") == 5 and "| 3 more (" in table
    materialized = set(_values(result))
    assert not materialized & {"dialogue_dataset", "output_message_split", "augmented_output_message_train"}
    assert "ethics_dataset" in materialized  # an unrelated branch still runs
    assert {name: (io_dir / name).read_bytes() for name in before} == before


def test_nothing_stale_after_full_run_and_an_edit_stales_only_its_downstream(tmp_path):
    ethics = tmp_path / "ethics.csv"
    shutil.copy(sample_paths().ethics_csv, ethics)
    resources = make_resources(tmp_path / "store", sample_paths(ethics_csv=str(ethics)))
    with dg.instance_for_test() as instance:
        observe(SOURCES, instance=instance, resources=resources)
        assert dg.materialize(DATA_ASSETS, resources=resources, instance=instance).success

        def stale() -> set[str]:
            resolver = get_stale_status_resolver(instance, DATA_ASSETS)
            keys = [k for a in DATA_ASSETS if isinstance(a, dg.AssetsDefinition) for k in a.keys]
            return {k.to_user_string() for k in keys if resolver.get_status(k) != StaleStatus.FRESH}

        assert stale() == set()
        observe(SOURCES, instance=instance, resources=resources)
        assert stale() == set(), "re-observing unchanged files must not stale anything"

        with ethics.open("a", encoding="utf-8") as handle:
            handle.write("train,로라야 오늘 구름 모양 봤어?,일반\n")
        observe(SOURCES, instance=instance, resources=resources)
        assert stale() == {"ethics_dataset"}


def test_a_dataset_materialized_without_an_observation_records_the_file_it_read(tmp_path):
    """Edit, materialize without observing (the UI's Materialize button), undo the edit, observe: the dataset
    holds the edit, which is no longer in the file, so it must be stale, not fresh."""
    ethics = tmp_path / "ethics.csv"
    shutil.copy(sample_paths().ethics_csv, ethics)
    original = ethics.read_bytes()
    resources = make_resources(tmp_path / "store", sample_paths(ethics_csv=str(ethics)))
    with dg.instance_for_test() as instance:
        observe(SOURCES, instance=instance, resources=resources)
        assert dg.materialize(DATA_ASSETS, resources=resources, instance=instance).success
        ethics.write_bytes(original + "train,로라야 오늘 구름 모양 봤어?,일반\n".encode())
        edited = dg.materialize(DATA_ASSETS, selection=["ethics_dataset"], resources=resources, instance=instance)
        meta = _values(edited)["ethics_dataset"].materialization.metadata
        assert meta["file_hash"].value == content_hash(ethics)
        fresh = get_stale_status_resolver(instance, DATA_ASSETS).get_status(dg.AssetKey("ethics_dataset"))
        assert fresh == StaleStatus.FRESH  # it holds what the file holds
        ethics.write_bytes(original)
        observe(SOURCES, instance=instance, resources=resources)
        resolver = get_stale_status_resolver(instance, DATA_ASSETS)
        assert resolver.get_status(dg.AssetKey("ethics_dataset")) == StaleStatus.STALE


def test_unreadable_paths_are_observed_as_such_and_reported_by_the_blocking_check(tmp_path):
    folder = tmp_path / "dialogue.csv"
    folder.mkdir()  # a directory where the CSV should be
    paths = sample_paths(dialogue_csv=str(folder), synonyms_json=str(tmp_path / "missing.json"))
    resources = make_resources(tmp_path / "store", paths)
    with dg.instance_for_test() as instance:
        observe(SOURCES, instance=instance, resources=resources)  # no failure: every file is observed
        for source in SOURCES:
            assert instance.get_latest_data_version_record(source.key) is not None, source.key
        problem = instance.get_latest_data_version_record(dg.AssetKey("raw_dialogue_csv"))
        assert "directory" in problem.asset_observation.metadata["problem"].value

        result = dg.materialize(DATA_ASSETS, resources=resources, instance=instance, raise_on_error=False)
    checks = {c.asset_key.to_user_string(): c for c in result.get_asset_check_evaluations()}
    assert "this path is a directory, not a file" in checks["dialogue_dataset"].metadata["issues"].value
    assert "file not found" in checks["synonym_groups"].metadata["issues"].value
    assert checks["ethics_dataset"].passed and "ethics_dataset" in _values(result)


def test_bad_synonyms_fail_their_check_by_group_and_keep_augmentation_from_running(tmp_path):
    synonyms = tmp_path / "synonyms.json"
    synonyms.write_text('[["오!", "우와!"], ["혼자"], ["나는 ", "   "]]', encoding="utf-8")
    resources = make_resources(tmp_path / "store", sample_paths(synonyms_json=str(synonyms)))
    result = dg.materialize(
        DATA_ASSETS, resources=resources, instance=dg.DagsterInstance.ephemeral(), raise_on_error=False
    )
    [check] = [c for c in result.get_asset_check_evaluations() if c.asset_key == dg.AssetKey("synonym_groups")]
    table = check.metadata["issues"].value
    assert not check.passed and check.metadata["failures"].value == 2
    assert "row (group)" in table and re.search(r"\|\s*3\s*\| word 2", table) and "at least two words" in table
    assert {"dialogue_dataset", "output_message_split"} <= set(_values(result))
    assert "augmented_output_message_train" not in _values(result)


def test_normalized_input_is_accepted_with_notes_and_the_cell_limit_is_run_config(tmp_path):
    import unicodedata

    ethics = tmp_path / "ethics.csv"
    text = Path(sample_paths().ethics_csv).read_text(encoding="utf-8")
    ethics.write_bytes(b"\xef\xbb\xbf" + unicodedata.normalize("NFD", text).encode())  # a macOS spreadsheet export
    resources = make_resources(tmp_path / "store", sample_paths(ethics_csv=str(ethics)))
    only_ethics = [data.ethics_dataset]
    result = dg.materialize(only_ethics, resources=resources, instance=dg.DagsterInstance.ephemeral())
    meta = _values(result)["ethics_dataset"].materialization.metadata
    assert "normalized to NFC" in meta["notes"].value
    frame = result.output_for_node("ethics_dataset")
    assert frame.index[0] == 2  # the spreadsheet row: the header is row 1
    assert frame.reset_index(drop=True).equals(pd.read_csv(sample_paths().ethics_csv, dtype=str, keep_default_na=False))

    tight = {"ops": {"ethics_dataset": {"config": {"max_cell_chars": 10}}}}
    result = dg.materialize(
        only_ethics, resources=resources, instance=dg.DagsterInstance.ephemeral(), run_config=tight,
        raise_on_error=False,
    )
    [check] = result.get_asset_check_evaluations()
    assert not check.passed and "the limit is 10" in check.metadata["issues"].value


def test_many_notes_of_one_kind_are_logged_as_the_table_shows_them(tmp_path):
    """Five of a kind and a count: one warning event per note made a file with thousands of them 10x slower."""
    import logging

    ethics = tmp_path / "ethics.csv"
    # twelve test prompts that are training prompts to the model (a note each); the sample file ends on row 1295
    rows = "".join(f"train,로라야 {i}번째 진짜 사랑해,사랑 고백/만남\ntest,로라야 {i}번째 진짜 사💗랑해,사랑 고백/만남\n"
                   for i in range(12))
    ethics.write_text(Path(sample_paths().ethics_csv).read_text(encoding="utf-8") + rows, encoding="utf-8")
    instance = dg.DagsterInstance.ephemeral()
    result = dg.materialize([data.ethics_dataset], instance=instance,
                            resources=make_resources(tmp_path / "store", sample_paths(ethics_csv=str(ethics))))
    assert result.success
    warnings = [r.user_message for r in instance.all_logs(result.run_id) if r.level == logging.WARNING]
    assert sum("as the model reads it" in w for w in warnings) == 5
    assert [w for w in warnings if "notes like the one above" in w] == [
        "7 more (1307-1319) notes like the one above: see the schema_valid check's table"]


def test_a_file_saved_while_it_is_read_is_named_as_changed_not_as_bad_data(tmp_path, monkeypatch):
    """An editor writes a file in place (truncate, then write): read midway, it is empty or cut short."""
    from ohlora_assets.core import schemas

    ethics = tmp_path / "ethics.csv"
    shutil.copy(sample_paths().ethics_csv, ethics)
    real_load = schemas.load

    def load_while_saved(spec, path, *args):
        Path(path).write_bytes(b"")  # the editor has truncated it and not yet written the rest
        return real_load(spec, path, *args)

    monkeypatch.setattr(schemas, "load", load_while_saved)
    result = dg.materialize([data.ethics_dataset], instance=dg.DagsterInstance.ephemeral(), raise_on_error=False,
                            resources=make_resources(tmp_path / "store", sample_paths(ethics_csv=str(ethics))))
    assert not result.success and not result.get_asset_check_evaluations()  # not recorded as a data failure
    [failure] = [e for e in result.all_events if e.is_step_failure]
    assert f"{ethics} changed while it was read (saved again mid-run?): run again" in str(
        failure.step_failure_data.error.message)


def test_run_config_out_of_range_fails_the_run_before_its_first_step_naming_every_value(resources, monkeypatch):
    # Dagster checks bounds only as each step starts: the last step's typo would wait for every step before it.
    monkeypatch.setenv("OHLORA_TEST_EPOCHS", "0")
    result = dg.materialize(
        DATA_ASSETS, resources=resources, instance=dg.DagsterInstance.ephemeral(), raise_on_error=False,
        run_config={"ops": {"augmented_output_message_train": {"config": {"epochs": {"env": "OHLORA_TEST_EPOCHS"}}},
                            "dialogue_dataset": {"config": {"max_cell_chars": -5}}}},
    )
    assert not result.success
    assert not [e for e in result.all_events if e.event_type_value == "STEP_START"]
    [failure] = [e for e in result.all_events if e.event_type_value == "PIPELINE_FAILURE"]
    error, text = failure.event_specific_data.error, ""
    while error is not None:
        text, error = text + error.message, error.cause
    assert "ops.augmented_output_message_train.config.epochs = '0': Input should be greater than or equal to 1" in text
    assert "ops.dialogue_dataset.config.max_cell_chars = -5: Input should be greater than or equal to 1" in text


def test_one_split_can_be_materialized_alone(resources):
    result = dg.materialize(DATA_ASSETS, selection=["dialogue_dataset", "summary_split"], resources=resources,
                            instance=dg.DagsterInstance.ephemeral())
    assert result.success and set(_values(result)) == {"dialogue_dataset", "summary_split"}
