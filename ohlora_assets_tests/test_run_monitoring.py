"""A run whose worker is SIGKILLed while it holds the `accelerator` pool slot is marked failed and its
slot freed, so the next run starts: deploy/local/dagster.yaml on a real instance. Launched runs (a real
code server and run workers) through the monitoring daemon's two iterations, called directly; and
`dagster job execute` runs (`make run`, no daemon) through `release_dead_runs`."""

import contextlib
import logging
import os
import shutil
import signal
import subprocess
import sys
import time
from importlib.util import module_from_spec, spec_from_file_location
from pathlib import Path

import dagster as dg
import pytest
from dagster._core.workspace.context import WorkspaceProcessContext
from dagster._core.workspace.load_target import PythonFileTarget
from dagster._daemon.monitoring.concurrency import execute_concurrency_slots_iteration
from dagster._daemon.monitoring.run_monitoring import execute_run_monitoring_iteration

from ohlora_assets.resources import PROJECT_ROOT
from ohlora_assets.run_launcher import MonitoredRunLauncher, process_alive, release_dead_runs

# A stand-in for a training step: takes the pool slot, says so, and runs until killed.
JOB_FILE = '''
import os, pathlib, time
import dagster as dg

@dg.asset(pool="accelerator")
def training_stand_in(context):
    marks = pathlib.Path(os.environ["OHLORA_TEST_MARKS"])
    written = marks.parent / f"{context.run_id}.tmp"  # outside marks/: a reader sees no mark or a whole one
    written.write_text(str(os.getpid()))
    os.replace(written, marks / context.run_id)
    time.sleep(120)

train = dg.define_asset_job("train", [training_stand_in], executor_def=dg.in_process_executor)
train_in_subprocesses = dg.define_asset_job("train_in_subprocesses", [training_stand_in])  # multiprocess executor
defs = dg.Definitions(assets=[training_stand_in], jobs=[train, train_in_subprocesses])
'''


def _wait_for(condition, seconds: float, what: str):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.5)
    raise AssertionError(f"timed out waiting for {what}")


def _drain(iterator) -> None:
    errors = [e for e in iterator if e is not None]
    assert not errors, errors


def test_a_process_is_alive_while_it_runs_and_not_once_exited_reaped_or_newer_than_the_record(monkeypatch):
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        assert process_alive(child.pid, time.time())
        assert not process_alive(child.pid, time.time() - 3600), "a newer process that reused the number"
        child.kill()
        _wait_for(lambda: not process_alive(child.pid, time.time()), 30, "the killed child to die")  # a zombie
    finally:
        child.kill()
        child.wait()
    assert not process_alive(child.pid, time.time())  # reaped
    # reaped between the signal check and the read of /proc: dead, not an exception nor "alive"
    monkeypatch.setattr(os, "kill", lambda pid, sig: None)
    assert not process_alive(child.pid, time.time())


@pytest.mark.slow
def test_a_killed_run_releases_its_pool_slot_and_the_next_run_starts(tmp_path, monkeypatch):
    home, marks = tmp_path / "home", tmp_path / "marks"
    home.mkdir()
    marks.mkdir()
    shutil.copy(PROJECT_ROOT / "deploy" / "local" / "dagster.yaml", home / "dagster.yaml")
    (tmp_path / "slot_job.py").write_text(JOB_FILE)
    monkeypatch.setenv("OHLORA_TEST_MARKS", str(marks))
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    target = PythonFileTarget(str(tmp_path / "slot_job.py"), None, str(tmp_path), "slot_job")
    logger = logging.getLogger("test_run_monitoring")

    with dg.DagsterInstance.from_config(str(home)) as instance:
        assert isinstance(instance.run_launcher, MonitoredRunLauncher)
        assert instance.run_monitoring_enabled
        with WorkspaceProcessContext(instance, target) as workspace:
            location = workspace.create_request_context().get_code_location("slot_job")
            remote_job = location.get_repository("__repository__").get_full_job("train")
            spec = spec_from_file_location("slot_job", tmp_path / "slot_job.py")
            module = module_from_spec(spec)
            spec.loader.exec_module(module)
            job_def = module.defs.resolve_job_def("train")

            def launch() -> str:
                run = instance.create_run_for_job(
                    job_def=job_def,
                    remote_job_origin=remote_job.get_remote_origin(),
                    job_code_origin=remote_job.get_python_origin(),
                )
                instance.launch_run(run.run_id, workspace.create_request_context())
                return run.run_id

            first = launch()
            step_pid = int(_wait_for(lambda: (marks / first).exists() and (marks / first).read_text(), 120, "run 1"))
            second = launch()
            _wait_for(lambda: instance.get_run_by_id(second).status == dg.DagsterRunStatus.STARTED, 120, "run 2")
            time.sleep(2)
            assert not (marks / second).exists(), "run 2 must wait for the pool slot"

            os.kill(step_pid, signal.SIGKILL)  # in-process executor: the step runs in the run worker
            # SIGKILL takes effect when the kernel next schedules the process: on a busy CPU, not at once.
            _wait_for(lambda: not process_alive(step_pid, time.time()), 30, "run 1's worker to die")

            def monitored_as_failed() -> bool:
                _drain(execute_run_monitoring_iteration(workspace, logger))
                return instance.get_run_by_id(first).status == dg.DagsterRunStatus.FAILURE

            _wait_for(monitored_as_failed, 60, "run monitoring to mark run 1 failed")
            time.sleep(instance.run_monitoring_settings["free_slots_after_run_end_seconds"] + 1)

            def slot_taken() -> bool:
                _drain(execute_concurrency_slots_iteration(workspace, logger))
                return (marks / second).exists()

            _wait_for(slot_taken, 120, "run 2 to take the freed slot")
            os.kill(int((marks / second).read_text()), signal.SIGKILL)


@pytest.mark.slow
def test_make_run_after_a_killed_make_run_starts_once_dead_runs_are_released(tmp_path):
    home, marks = tmp_path / "home", tmp_path / "marks"
    home.mkdir()
    marks.mkdir()
    shutil.copy(PROJECT_ROOT / "deploy" / "local" / "dagster.yaml", home / "dagster.yaml")
    (tmp_path / "slot_job.py").write_text(JOB_FILE)
    env = {**os.environ, "DAGSTER_HOME": str(home), "OHLORA_TEST_MARKS": str(marks), "PYTHONPATH": str(PROJECT_ROOT)}
    dagster = Path(sys.executable).parent / "dagster"

    def make_run() -> subprocess.Popen:
        command = [str(dagster), "job", "execute", "-f", "slot_job.py", "-j", "train_in_subprocesses"]
        return subprocess.Popen(command, cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    first = make_run()
    step_pid = int(_wait_for(lambda: [p.read_text() for p in marks.iterdir()], 120, "run 1")[0])
    first.send_signal(signal.SIGKILL)  # the run worker dies; its step process lives on, holding the slot
    first.wait()
    second = make_run()
    try:
        time.sleep(8)
        assert len(list(marks.iterdir())) == 1, "run 2 must wait for the pool slot"
        with dg.DagsterInstance.from_config(str(home)) as instance:
            [released] = release_dead_runs(instance)
            assert instance.get_run_by_id(released).status == dg.DagsterRunStatus.FAILURE
        # the orphan step of the dead run is stopped (SIGKILL lands when the kernel next schedules it)
        _wait_for(lambda: not process_alive(step_pid, time.time()), 30, "the orphan step of the dead run to die")
        _wait_for(lambda: len(list(marks.iterdir())) == 2, 120, "run 2 to take the freed slot")
    finally:
        second.kill()
        second.wait()
        for mark in marks.iterdir():
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(mark.read_text()), signal.SIGKILL)
