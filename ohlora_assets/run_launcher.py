"""Dagster's DefaultRunLauncher, plus the worker health check that run monitoring needs.

Dagster's run monitor marks a STARTED run failed when its launcher reports the worker dead, but the
DefaultRunLauncher (a process on this machine, started by the code server) cannot report it. A run
worker killed by SIGKILL or a power cut then stays STARTED for ever and keeps its `accelerator` pool
slot, so every later training run waits. The health check here reads the pids a run logged (its
worker's, and its step processes') and tells the monitor whether the worker still runs;
`free_slots_after_run_end_seconds` then releases the dead run's slots (deploy/local/dagster.yaml).
Step processes left running by a dead worker are stopped, so a retrain never shares the GPU with an
orphan. Valid where run workers run on this machine; container launchers have their own checks.

`release_dead_runs` does the monitor's work once, for `make run` (`dagster job execute`, no daemon):
`python -m ohlora_assets.run_launcher`.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
from pathlib import Path

from dagster import DagsterEventType, DagsterInstance, DagsterRun, DagsterRunStatus, RunsFilter
from dagster._core.launcher import CheckRunHealthResult, DefaultRunLauncher, WorkerStatus

_PID_EVENTS = {DagsterEventType.ENGINE_EVENT, DagsterEventType.STEP_WORKER_STARTED}
_LOCAL_HOSTS = (None, "localhost", "127.0.0.1", "::1", socket.gethostname())


def process_alive(pid: int, started_before: float) -> bool:
    """Whether `pid` runs and is not a zombie nor a newer process that reused the number."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's: its start time (readable by all) says whether it reused the number
        pass
    if not Path("/proc/self/stat").exists():  # not Linux: trust the signal check
        return True
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError):  # reaped since the signal check
        return False
    if fields[0] in ("Z", "X"):  # exited, not yet reaped by its parent
        return False
    boot = next(float(line.split()[1]) for line in Path("/proc/stat").read_text().splitlines() if "btime" in line)
    started = boot + int(fields[19]) / os.sysconf("SC_CLK_TCK")
    # 30 s: btime and ticks are coarse, and btime follows the wall clock, so a clock stepped forward (NTP, a VM
    # resumed) moves a live process's start later; a number reused that soon after its owner logged it is unlikely
    return started <= started_before + 30


def _logged_pids(instance: DagsterInstance, run_id: str) -> tuple[tuple[int, float] | None, list[tuple[int, float]]]:
    """((worker pid, when logged) or None, [(step process pid, when logged)]) from the run's events."""
    worker, steps = None, []
    for record in instance.all_logs(run_id, of_type=_PID_EVENTS):
        metadata = getattr(record.dagster_event.event_specific_data, "metadata", None) or {}
        if "pid" in metadata:
            entry = (int(metadata["pid"].value), record.timestamp)
            if record.step_key is None:
                worker = entry  # the latest: a resumed run logs a new worker
            else:
                steps.append(entry)
    return worker, steps


def worker_health(instance: DagsterInstance, run: DagsterRun) -> CheckRunHealthResult:
    """RUNNING unless the run's worker process is known to be gone (then its orphan steps are stopped)."""
    origin = run.remote_job_origin.repository_origin.code_location_origin if run.remote_job_origin else None
    host = getattr(origin, "host", None)  # a code server on another machine runs the worker there
    if host not in _LOCAL_HOSTS:
        return CheckRunHealthResult(WorkerStatus.RUNNING, f"the worker runs on {host}: not checked from here")
    worker, steps = _logged_pids(instance, run.run_id)
    if worker is None:  # launched, worker not up yet: the start timeout covers this phase
        return CheckRunHealthResult(WorkerStatus.RUNNING, "the worker has not logged its pid yet")
    if process_alive(*worker):
        return CheckRunHealthResult(WorkerStatus.RUNNING, f"run worker pid {worker[0]} is running")
    orphans = [pid for pid, logged in steps if process_alive(pid, logged)]
    for pid in orphans:
        with contextlib.suppress(ProcessLookupError, PermissionError):  # exited meanwhile, or the pid is reused
            os.kill(pid, signal.SIGKILL)
    stopped = f"; its step processes {orphans} were stopped" if orphans else ""
    return CheckRunHealthResult(WorkerStatus.FAILED, f"run worker pid {worker[0]} is gone (killed or crashed){stopped}")


class MonitoredRunLauncher(DefaultRunLauncher):
    """DefaultRunLauncher whose workers the run monitor can see die."""

    @property
    def supports_check_run_worker_health(self) -> bool:
        return True

    def check_run_worker_health(self, run: DagsterRun) -> CheckRunHealthResult:
        return worker_health(self._instance, run)


def release_dead_runs(instance: DagsterInstance) -> list[str]:
    """Mark every STARTED run whose worker is gone failed and free its pool slots; their run ids."""
    released = []
    for run in instance.get_runs(RunsFilter(statuses=[DagsterRunStatus.STARTED])):
        health = worker_health(instance, run)
        if health.status == WorkerStatus.FAILED:
            instance.report_run_failed(run, f"Marked failed: {health.msg}")
            if instance.event_log_storage.supports_global_concurrency_limits:
                instance.event_log_storage.free_concurrency_slots_for_run(run.run_id)
            released.append(run.run_id)
    return released


if __name__ == "__main__":
    with DagsterInstance.get() as current:
        for run_id in release_dead_runs(current):
            print(f"run {run_id}: its worker is gone; marked failed and its pool slots freed")
