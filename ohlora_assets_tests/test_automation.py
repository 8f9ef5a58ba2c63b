"""Jobs, the weekly schedule and declarative automation, with Dagster's own testing APIs.

The automation tests drive `dg.evaluate_automation_conditions` tick by tick on a real (temporary)
instance, executing what each tick requests, exactly as the automation sensor would:

- the data group alone, materialized for real on copies of our sample files (seconds: nothing trains);
- the full project graph, with materializations reported without running (no training), to show an
  edited ethics CSV requests exactly the ethics branch of the real graph, whatever has landed in it.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import dagster as dg
import pandas as pd
from dagster._core.definitions.data_version import DATA_VERSION_TAG  # no public name
import pytest
import yaml

from ohlora_assets import automation
from ohlora_assets.assets import data
from ohlora_assets.automation import (
    ASSET_CONDITION, EXPERIMENTS, SOURCE_CONDITION, TRAINING_CONDITION, TRAINING_TAGS, with_automation,
)
from ohlora_assets.resources import PROJECT_ROOT, ModelProfile
from ohlora_assets.definitions import defs as project_defs
from ohlora_assets_tests.conftest import make_resources, sample_paths

# --- jobs and the schedule -------------------------------------------------------------------


def _job_keys(defs: dg.Definitions, name: str) -> set[dg.AssetKey]:
    return set(defs.resolve_job_def(name).asset_layer.selected_asset_keys)


def test_jobs_select_every_asset_the_ethics_branch_and_the_reports():
    graph = project_defs.resolve_asset_graph()
    materializable = set(graph.materializable_asset_keys)
    by_group: dict[str, set[dg.AssetKey]] = {}
    for key in materializable:
        by_group.setdefault(graph.get(key).group_name, set()).add(key)

    assert _job_keys(project_defs, "retrain_all") >= materializable
    ethics = by_group.get("ethics", set())
    ethics_only = _job_keys(project_defs, "ethics_only") & materializable
    assert ethics_only >= ethics
    # beyond the ethics group, only the data assets it reads (ethics_dataset) and the ethics model's promotion, never
    # dialogue or models
    promotion = dg.AssetKey("serving_ethics_sbert_model")
    assert promotion in ethics_only and {graph.get(k).group_name for k in ethics_only - ethics - {promotion}} <= {"data"}
    assert dg.AssetKey("dialogue_dataset") not in ethics_only
    if ethics:
        assert dg.AssetKey("ethics_dataset") in ethics_only
        # it observes what it reads first, so the run records fresh data versions of the ethics CSV and base
        observed = _job_keys(project_defs, "ethics_only") - materializable
        assert observed == {dg.AssetKey("raw_ethics_csv"), dg.AssetKey("ethics_base_settings")}
    # no training under the reports tag: the experiments (which train adapters) are left to retrain_all
    assert _job_keys(project_defs, "reports_only") & materializable == by_group.get("reports", set()) - EXPERIMENTS


@dg.asset(pool="accelerator")
def training_stand_in(context) -> dg.MaterializeResult:
    claimed = context.instance.event_log_storage.get_concurrency_info("accelerator").claimed_slots
    return dg.MaterializeResult(metadata={"pid": os.getpid(), "claimed_by": ",".join(s.run_id for s in claimed)})


@dg.asset(deps=[training_stand_in])
def after_training_stand_in() -> dg.MaterializeResult:
    return dg.MaterializeResult(metadata={"pid": os.getpid()})


def _retrain_all_on_stand_ins() -> dg.JobDefinition:
    """The project's retrain_all job over two stand-in assets (for dg.reconstructable)."""
    stand_ins = dg.Definitions(assets=[training_stand_in, after_training_stand_in], jobs=[automation.retrain_all])
    return stand_ins.resolve_job_def("retrain_all")


def test_make_runs_config_runs_every_step_in_the_run_process_and_still_takes_the_accelerator_pool(tmp_path: Path):
    run_config = yaml.safe_load((PROJECT_ROOT / "deploy" / "local" / "retrain_all.yaml").read_text())
    assert "-c deploy/local/retrain_all.yaml" in (PROJECT_ROOT / "Makefile").read_text()
    overrides = {"concurrency": {"pools": {"default_limit": 1}}}
    with dg.instance_for_test(temp_dir=str(tmp_path), overrides=overrides) as instance:
        # execute_job honours the run config's executor (execute_in_process would always run in process)
        job = dg.reconstructable(_retrain_all_on_stand_ins)
        with dg.execute_job(job, instance=instance, run_config=run_config) as result:
            assert result.success
            run_id = result.run_id
            metadata = {
                event.asset_key.path[-1]: {k: v.value for k, v in event.materialization.metadata.items()}
                for event in result.get_asset_materialization_events()
            }
    assert metadata["training_stand_in"]["pid"] == metadata["after_training_stand_in"]["pid"] == os.getpid()
    assert metadata["training_stand_in"]["claimed_by"] == run_id  # it held the accelerator slot while it ran


def test_weekly_schedule_ticks_retrain_all_on_sunday_0300_utc():
    schedule = project_defs.resolve_schedule_def("weekly_retrain_all")
    assert schedule.job_name == "retrain_all"
    assert schedule.cron_schedule == "0 3 * * 0" and schedule.execution_timezone == "UTC"

    sunday = dt.datetime(2026, 11, 22, 3, 0, tzinfo=dt.timezone.utc)
    with dg.instance_for_test() as instance:
        context = dg.build_schedule_context(instance=instance, scheduled_execution_time=sunday)
        [request] = schedule.evaluate_tick(context).run_requests
    assert request.tags[automation.WORKLOAD_TAG] == TRAINING_TAGS[automation.WORKLOAD_TAG]

    # the next ticks after a Wednesday noon are Sundays at 03:00 UTC, one week apart
    # (Dagster's own cron iterator: no public equivalent in 1.13)
    from dagster._utils.schedules import cron_string_iterator

    wednesday_noon = dt.datetime(2026, 11, 18, 12, tzinfo=dt.timezone.utc).timestamp()
    ticks = cron_string_iterator(wednesday_noon, schedule.cron_schedule, schedule.execution_timezone)
    first, second = next(ticks), next(ticks)
    assert (first.weekday(), first.hour, first.minute) == (6, 3, 0)
    assert second - first == dt.timedelta(days=7)


def test_every_asset_but_the_experiments_carries_a_condition_and_sensors_cover_them():
    graph = project_defs.resolve_asset_graph()
    automated = set(graph.materializable_asset_keys) - EXPERIMENTS
    for key in automated:
        assert graph.get(key).automation_condition is not None, key
    for key in graph.observable_asset_keys:
        assert graph.get(key).automation_condition == SOURCE_CONDITION, key
    sensors = {s.name: s for s in project_defs.sensors}
    assert set(sensors) == {"observe_raw_files", "rematerialize_stale"}
    observed = sensors["observe_raw_files"].asset_selection.resolve(graph)
    rematerialized = sensors["rematerialize_stale"].asset_selection.resolve(graph)
    assert observed == set(graph.observable_asset_keys)
    assert rematerialized == automated
    assert sensors["rematerialize_stale"].run_tags == {**TRAINING_TAGS, **automation.RETRY_TAGS}


def test_experiments_run_only_when_asked_for():
    graph = project_defs.resolve_asset_graph()
    assert EXPERIMENTS <= set(graph.materializable_asset_keys), "the experiments were renamed: update EXPERIMENTS"
    for key in EXPERIMENTS:
        assert graph.get(key).automation_condition is None, key  # no eager (nor any) condition
    assert EXPERIMENTS <= _job_keys(project_defs, "retrain_all")  # an explicit full retrain still runs them


def _sensor_statuses(env: dict[str, str]) -> dict[str, str]:
    # the default status is fixed when the module loads, so each setting needs a fresh interpreter
    code = (
        "from ohlora_assets.automation import SENSORS; "
        "print(*(f'{s.name}={s.default_status.value}' for s in SENSORS))"
    )
    environment = {k: v for k, v in os.environ.items() if k != "OHLORA_AUTOMATION"}
    environment["PYTHONPATH"] = os.pathsep.join([str(PROJECT_ROOT), environment.get("PYTHONPATH", "")])
    result = subprocess.run(
        [sys.executable, "-W", "ignore", "-c", code], env={**environment, **env},
        capture_output=True, text=True, timeout=120, check=True,
    )
    return dict(item.split("=") for item in result.stdout.split())


def test_sensors_start_stopped_unless_automation_is_turned_on():
    assert set(_sensor_statuses({}).values()) == {"STOPPED"}  # a first daemon start launches nothing
    assert set(_sensor_statuses({"OHLORA_AUTOMATION": "on"}).values()) == {"RUNNING"}


def test_automation_setting_typos_fail_the_load_named_with_every_other_bad_setting():
    environment = {**os.environ, "OHLORA_OBSERVE_CRON": "every 5 minutes", "OHLORA_AUTOMATION": "maybe",
                   "OHLORA_PROFILE": "tiny"}
    environment["PYTHONPATH"] = os.pathsep.join([str(PROJECT_ROOT), environment.get("PYTHONPATH", "")])
    result = subprocess.run([sys.executable, "-W", "ignore", "-c", "import ohlora_assets.definitions"],
                            env=environment, capture_output=True, text=True, timeout=120)
    assert result.returncode == 1
    assert "OHLORA_OBSERVE_CRON='every 5 minutes': not a cron schedule" in result.stderr
    assert "OHLORA_AUTOMATION='maybe': expected on" in result.stderr and "OHLORA_PROFILE='tiny'" in result.stderr


# --- automation on the real data group -------------------------------------------------------


def _next_observation_tick(after: dt.datetime) -> dt.datetime:
    # Dagster's own cron iterator (no public equivalent in 1.13)
    from dagster._utils.schedules import cron_string_iterator

    return next(cron_string_iterator(after.timestamp() + 1, automation.OBSERVE_CRON, "UTC"))


class Ticker:
    """Evaluates the automation conditions tick by tick, keeping the cursor like the sensor does,
    and executes each tick's request in one run (observations and materializations together).

    Time is explicit: ticks start just after an observation cron tick at least ten minutes ahead
    (so the runs of the test happen before it, even on a slow machine), a plain tick adds one second (never crossing the
    next cron tick), and `tick(cron=True)` jumps just past the next cron tick.
    """

    def __init__(self, assets: list, resources: dict, instance: dg.DagsterInstance):
        self.assets, self.resources, self.instance = assets, resources, instance
        self.defs = dg.Definitions(assets=assets, resources=resources)
        self.cursor = None
        start = dt.datetime.now(dt.timezone.utc) + dt.timedelta(minutes=10)
        self.now = _next_observation_tick(start) + dt.timedelta(seconds=1)

    def tick(self, cron: bool = False, execute: bool = True) -> set[str]:
        if cron:
            self.now = _next_observation_tick(self.now) + dt.timedelta(seconds=1)
        else:
            self.now += dt.timedelta(seconds=1)
            assert self.now < _next_observation_tick(self.now - dt.timedelta(seconds=1))
        assert self.now > dt.datetime.now(dt.timezone.utc), "the test outran its simulated clock"
        result = dg.evaluate_automation_conditions(
            defs=self.defs, instance=self.instance, cursor=self.cursor, evaluation_time=self.now
        )
        self.cursor = result.cursor
        requested = {r.key.to_user_string() for r in result.results if r.true_subset.size}
        assert result.total_requested == len(requested)
        if requested and execute:
            self.run(requested)
        return requested

    def run(self, keys: set[str], automated: bool = True) -> None:
        """A run of `keys`, tagged as the automation sensor tags its runs unless `automated` is False (a person)."""
        job = dg.define_asset_job("tick", selection=dg.AssetSelection.keys(*sorted(keys)))
        defs = dg.Definitions(assets=self.assets, resources=self.resources, jobs=[job])
        tags = {automation.AUTOMATION_CONDITION_TAG: "true"} if automated else {}
        assert defs.resolve_job_def("tick").execute_in_process(instance=self.instance, tags=tags).success


def _names(selection: dg.AssetSelection, defs: dg.Definitions) -> set[str]:
    return {k.to_user_string() for k in selection.resolve(defs.resolve_asset_graph())}


def test_edited_ethics_csv_rematerializes_exactly_the_ethics_branch(tmp_path: Path):
    files = {}
    for field in ("dialogue_csv", "ethics_csv", "ml_qa_csv", "synonyms_json"):
        source = Path(getattr(sample_paths(), field))
        files[field] = tmp_path / source.name
        shutil.copy(source, files[field])
    resources = make_resources(tmp_path / "store", sample_paths(**{k: str(v) for k, v in files.items()}))
    assets = with_automation(dg.load_assets_from_modules([data]))

    with dg.instance_for_test() as instance:
        ticker = Ticker(assets, resources, instance)
        sources = _names(dg.AssetSelection.all(include_sources=True) - dg.AssetSelection.all(), ticker.defs)
        materializable = _names(dg.AssetSelection.all(), ticker.defs)
        assert "raw_ethics_csv" in sources and "ethics_dataset" in materializable

        # first tick: the never-observed files are hashed; nothing can run before that
        assert ticker.tick() == sources
        # second tick: everything is missing and its sources are known -> one run builds it all
        assert ticker.tick() == materializable
        # nothing changed: nothing is requested, tick after tick
        assert ticker.tick() == set()
        # the cron tick re-hashes the files; same content, same data versions -> still nothing
        assert ticker.tick(cron=True) == sources
        assert ticker.tick() == set()

        # a manual re-run of an unchanged dataset keeps its data version: no ripple downstream
        ticker.run({"dialogue_dataset"}, automated=False)
        assert ticker.tick() == set()

        # the user edits the ethics CSV
        rows_before = len(pd.read_csv(files["ethics_csv"]))
        with files["ethics_csv"].open("a", encoding="utf-8") as handle:
            handle.write("train,오늘 저녁 뭐 먹을까,일반\n")
        assert ticker.tick(execute=False) == set(), "an edit is not noticed before the next observation"
        assert ticker.tick(cron=True) == sources
        expected = _names(dg.AssetSelection.keys("raw_ethics_csv").downstream(include_self=False), ticker.defs)
        requested = ticker.tick()
        assert requested == expected and "ethics_dataset" in requested
        assert not requested & {"dialogue_dataset", "ml_qa_dataset", "output_message_split"}
        # ... and once that run is done, the graph is quiet again
        assert ticker.tick() == set()

        event = instance.get_latest_materialization_event(dg.AssetKey("ethics_dataset"))
        assert event.asset_materialization.metadata["dagster/row_count"].value == rows_before + 1


# --- automation on the whole project graph (reported, not trained) ---------------------------


def _report(instance: dg.DagsterInstance, keys: set[str], data_version: str) -> None:
    """What a run of `keys` records, without running it: materializations with the data version it came out at."""
    for key in sorted(keys):
        instance.report_runless_asset_event(dg.AssetMaterialization(key, tags={DATA_VERSION_TAG: data_version}))


def _until_quiet(ticker: Ticker, data_version: str) -> list[set[str]]:
    """Each tick's request, every request reported as run at `data_version`, until a tick requests nothing."""
    requests = []
    while requested := ticker.tick(execute=False):
        requests.append(requested)
        _report(ticker.instance, requested, data_version)
        assert len(requests) < 10, requests
    return requests


def test_full_graph_edit_of_ethics_csv_requests_only_its_downstream_and_trains_only_on_new_data(tmp_path: Path):
    """Every asset of the real graph, materializations reported (runless) so nothing trains. The cheap part of the
    branch goes in one run; training waits for its input's new data version, so an edit that leaves the validated
    table as it was (a blank row) trains nothing, and a real edit trains the ethics model a tick later, evaluating
    and promoting it in the same run."""
    ethics_csv = tmp_path / "ethics.csv"
    shutil.copy(sample_paths().ethics_csv, ethics_csv)
    resources = make_resources(tmp_path / "store", sample_paths(ethics_csv=str(ethics_csv)))
    graph = project_defs.resolve_asset_graph()
    assets = list(project_defs.assets) + list(project_defs.asset_checks or [])
    branch = {k.to_user_string() for k in dg.AssetSelection.keys("raw_ethics_csv").downstream(include_self=False)
              .resolve(graph)}

    with dg.instance_for_test() as instance:
        ticker = Ticker(assets, resources, instance)
        # the state after a full build: every file observed, every asset materialized
        ticker.run({k.to_user_string() for k in graph.observable_asset_keys})
        _report(instance, {k.to_user_string() for k in graph.materializable_asset_keys}, "built")

        assert ticker.tick() == set(), "nothing changed, nothing runs"
        assert ticker.tick(cron=True) == {k.to_user_string() for k in graph.observable_asset_keys}
        assert ticker.tick(execute=False) == set()

        # a blank row: the file's hash changes, the validated table does not
        ethics_csv.write_text(ethics_csv.read_text(encoding="utf-8") + ",,\n", "utf-8")
        ticker.tick(cron=True)  # observation run: raw_ethics_csv gets a new data version
        [cheap_part] = _until_quiet(ticker, "built")
        assert "ethics_dataset" in cheap_part and cheap_part <= branch
        model_and_below = {k.to_user_string() for k in dg.AssetSelection.keys("ethics_sbert_model").downstream()
                           .resolve(graph)}
        # no retrain on the bet that the table changed, and no report or promotion of the old model either
        assert not cheap_part & model_and_below

        # a real edit: the table changes, and the model trains once its new pairs are recorded
        ethics_csv.write_text(ethics_csv.read_text(encoding="utf-8") + "test,사귀자 진짜로,사랑 고백/만남\n", "utf-8")
        ticker.tick(cron=True)
        # validate; then, once the new pairs are recorded, train, evaluate and promote in one run
        assert _until_quiet(ticker, "edited") == [cheap_part, model_and_below]
        assert cheap_part | model_and_below == branch
        for untouched in ("dialogue_dataset", "output_message_split", "ml_qa_dataset", "base_models"):
            assert untouched not in cheap_part | model_and_below


def test_a_changed_base_setting_requests_exactly_the_models_on_that_base(tmp_path: Path):
    """A setting is not an asset, so the bases' settings are observed like the raw files: choosing another base for
    the ethics model, or replacing its weights in place, stales the ethics branch and nothing else; another base
    for one adapter stales the adapters' branch and not the ethics model. Reported, not trained, as above."""
    encoder = tmp_path / "own_encoder"
    encoder.mkdir()
    (encoder / "config.json").write_text("{}")
    (encoder / "model.safetensors").write_bytes(b"first weights")
    resources = make_resources(tmp_path / "store")
    graph = project_defs.resolve_asset_graph()
    assets = list(project_defs.assets) + list(project_defs.asset_checks or [])
    observable = {k.to_user_string() for k in graph.observable_asset_keys}

    def downstream(source: str) -> set[str]:
        return {k.to_user_string() for k in dg.AssetSelection.keys(source).downstream(include_self=False).resolve(graph)}

    def requested_after(ticker: Ticker, overrides: dict[str, str], data_version: str) -> list[set[str]]:
        ticker.resources = {**resources, "profile": ModelProfile(smoke=True, base_model_overrides=overrides)}
        ticker.defs = dg.Definitions(assets=assets, resources=ticker.resources)
        assert ticker.tick(cron=True) == observable
        return _until_quiet(ticker, data_version)

    with dg.instance_for_test() as instance:
        ticker = Ticker(assets, resources, instance)
        ticker.run(observable)
        _report(instance, {k.to_user_string() for k in graph.materializable_asset_keys}, "built")
        assert ticker.tick() == set()
        assert requested_after(ticker, {}, "built") == [], "the same settings observed again request nothing"

        ethics_branch = downstream("ethics_base_settings")
        assert "ethics_sbert_model" in ethics_branch and "base_models" not in ethics_branch
        own_encoder = {"ethics": str(encoder)}
        assert requested_after(ticker, own_encoder, "own encoder") == [ethics_branch]
        assert requested_after(ticker, own_encoder, "own encoder") == []
        (encoder / "model.safetensors").write_bytes(b"other weights, same folder")
        assert requested_after(ticker, own_encoder, "new weights") == [ethics_branch]

        # the experiments train only when asked for (EXPERIMENTS)
        adapters_branch = downstream("base_model_settings") - {k.to_user_string() for k in EXPERIMENTS}
        assert "base_models" in adapters_branch and "ethics_sbert_model" not in adapters_branch
        requests = requested_after(ticker, {**own_encoder, "memory": "org/own-memory-base@v1"}, "own memory base")
        assert requests == [{"base_models"}, adapters_branch - {"base_models"}]


# --- a training that is running when its input changes -----------------------------------------

EDITS = Path(os.environ.get("OHLORA_TEST_EDITS", "/nonexistent"))
TRAINING_GATE = threading.Event()


@dg.asset
def pairs_stand_in() -> dg.MaterializeResult:
    text = (EDITS / "pairs.txt").read_text()
    return dg.MaterializeResult(data_version=dg.DataVersion(text), metadata={"text": text})


@dg.asset(pool="accelerator", deps=[pairs_stand_in])
def model_stand_in() -> dg.MaterializeResult:
    read = (EDITS / "pairs.txt").read_text()  # what a training reads when it starts
    (EDITS / "training_started").write_text(read)
    TRAINING_GATE.wait(timeout=600)  # the test opens it (at the latest when it ends); the bound only stops a hang
    return dg.MaterializeResult(data_version=dg.DataVersion(f"trained on {read}"), metadata={"read": read})


@contextlib.contextmanager
def _gate_opened_at_the_end():
    """A failed assertion must not leave a training thread waiting at the gate."""
    try:
        yield
    finally:
        TRAINING_GATE.set()


def _started_training(edits: Path, run: threading.Thread) -> None:
    deadline = time.monotonic() + 120
    while not (edits / "training_started").exists():
        assert run.is_alive() and time.monotonic() < deadline, "the training run never started"
        time.sleep(0.01)


def _finished(run: threading.Thread) -> None:
    TRAINING_GATE.set()
    run.join(timeout=120)
    assert not run.is_alive(), "the training run did not end once the gate opened"


def test_an_input_that_changes_while_its_training_runs_is_trained_on_once_that_run_ends(tmp_path, monkeypatch):
    """The running training read the input before the edit; its materialization must not count as having handled
    the edit, or the model would never learn it (and stay stale for good)."""
    monkeypatch.setattr(sys.modules[__name__], "EDITS", tmp_path)
    assets = with_automation([pairs_stand_in, model_stand_in])
    edit = (tmp_path / "pairs.txt").write_text
    edit("first")
    with dg.instance_for_test() as instance, _gate_opened_at_the_end():
        ticker = Ticker(assets, {}, instance)
        TRAINING_GATE.set()
        ticker.run({"pairs_stand_in", "model_stand_in"})  # built
        assert ticker.tick() == set()

        edit("second")
        ticker.run({"pairs_stand_in"})  # the sensor's validation run
        assert ticker.tick(execute=False) == {"model_stand_in"}
        TRAINING_GATE.clear()
        (tmp_path / "training_started").unlink()  # the build's
        training = threading.Thread(target=ticker.run, args=({"model_stand_in"},))
        training.start()  # the training reads "second", then runs on

        _started_training(tmp_path, training)
        assert ticker.tick() == set()  # the sensor ticks on while it trains (every 30 s)
        edit("third")  # the user edits again while it trains
        ticker.run({"pairs_stand_in"})
        assert ticker.tick() == set(), "never while its own training runs"
        _finished(training)
        read = instance.get_latest_materialization_event(dg.AssetKey("model_stand_in")).asset_materialization
        assert read.metadata["read"].value == "second"

        assert ticker.tick() == {"model_stand_in"}, "the edit made during the training is trained on next"
        read = instance.get_latest_materialization_event(dg.AssetKey("model_stand_in")).asset_materialization
        assert read.metadata["read"].value == "third"
        assert ticker.tick() == set()

        # A whole job's run (the weekly schedule, `make run`) that validates and trains in one run while the sensor
        # ticks: the model it trains read the new data, so nothing is requested after it.
        edit("fourth")
        job = dg.define_asset_job("whole", [pairs_stand_in, model_stand_in])
        whole = dg.Definitions(assets=assets, jobs=[job]).resolve_job_def("whole")
        TRAINING_GATE.clear()
        (tmp_path / "training_started").unlink()
        training = threading.Thread(target=lambda: whole.execute_in_process(instance=instance))
        training.start()
        _started_training(tmp_path, training)
        assert ticker.tick() == set() and ticker.tick() == set()
        _finished(training)
        assert ticker.tick() == set() and ticker.tick(cron=True) == set()


@dg.asset
def fails_once_stand_in() -> None:
    raise RuntimeError("the worker was killed (out of memory)")


@pytest.mark.parametrize("config", ["local", "."])
def test_a_failed_automation_run_is_retried_by_the_daemon_and_a_manual_run_is_not(config):
    """Its request consumed the trigger: without a retry, a transient failure would leave the model stale. (How
    many times: the run's dagster/max_retries, counted by Dagster over the run's group.)"""
    from dagster._daemon.auto_run_reexecution.auto_run_reexecution import filter_runs_to_should_retry

    instance_yaml = yaml.safe_load((PROJECT_ROOT / "deploy" / config / "dagster.yaml").read_text())
    sensor = project_defs.resolve_sensor_def("rematerialize_stale")
    job = dg.Definitions(assets=[fails_once_stand_in], jobs=[dg.define_asset_job("once", [fails_once_stand_in])])
    with dg.instance_for_test(overrides={"run_retries": instance_yaml["run_retries"]}) as instance:
        def failed_run(tags: dict[str, str]) -> dg.DagsterRun:
            result = job.resolve_job_def("once").execute_in_process(instance=instance, tags=tags, raise_on_error=False)
            assert not result.success
            return instance.get_run_by_id(result.run_id)

        automated, manual = failed_run(sensor.run_tags), failed_run({})
        assert [r.run_id for r in filter_runs_to_should_retry([automated, manual], instance)] == [automated.run_id]
        assert automated.tags["dagster/retry_strategy"] == "FROM_FAILURE"  # the failed steps, not what succeeded


@pytest.mark.parametrize("condition", [ASSET_CONDITION, TRAINING_CONDITION, SOURCE_CONDITION])
def test_conditions_serialize_for_the_ui(condition):
    # the automation sensor and the UI read conditions from the code location's snapshot
    assert condition.get_label()
    assert condition.get_node_snapshot("0") is not None
