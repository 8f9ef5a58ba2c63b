"""Dagster's DefaultRunLauncher, plus the worker health check that run monitoring needs.

Dagster's run monitor marks a STARTED run failed when its launcher reports the worker dead, but the
DefaultRunLauncher (a process on this machine, started by the code server) cannot report it. A run
worker killed by SIGKILL, the out-of-memory killer or a power cut then stays STARTED for ever and
keeps its `accelerator` pool slot, so every later training run waits. This launcher reads the pid
the worker logged ("Started process for run (pid: N)") and tells the monitor whether that process
still runs; `free_slots_after_run_end_seconds` then releases the dead run's slots
(deploy/local/dagster.yaml). Valid where run workers run on the daemon's machine, as with this
launcher; container launchers (Kubernetes, Docker, ECS) have their own health checks.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path

from dagster import DagsterEventType, DagsterRun
from dagster._core.launcher import CheckRunHealthResult, DefaultRunLauncher, WorkerStatus

_PID_MESSAGE = "Started process for run (pid:"


def process_alive(pid: int, started_before: float) -> bool:
    """Whether `pid` runs and is not a zombie nor a newer process that reused the number."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    stat = Path(f"/proc/{pid}/stat")
    if not stat.exists():  # not Linux: trust the signal check
        return True
    fields = stat.read_text().rsplit(")", 1)[1].split()
    if fields[0] in ("Z", "X"):  # exited, not yet reaped by the code server
        return False
    boot = next(float(line.split()[1]) for line in Path("/proc/stat").read_text().splitlines() if "btime" in line)
    started = boot + int(fields[19]) / os.sysconf("SC_CLK_TCK")
    return started <= started_before + 2  # 2 s: btime and ticks are coarse


class MonitoredRunLauncher(DefaultRunLauncher):
    """DefaultRunLauncher whose workers the run monitor can see die."""

    @property
    def supports_check_run_worker_health(self) -> bool:
        return True

    def check_run_worker_health(self, run: DagsterRun) -> CheckRunHealthResult:
        origin = run.remote_job_origin.repository_origin.code_location_origin if run.remote_job_origin else None
        host = getattr(origin, "host", None)  # a code server on another machine runs the worker there
        if host not in (None, "localhost", "127.0.0.1", "::1", socket.gethostname()):
            return CheckRunHealthResult(WorkerStatus.RUNNING, f"the worker runs on {host}: not checked from here")
        started = [
            event
            for event in self._instance.all_logs(run.run_id, of_type=DagsterEventType.ENGINE_EVENT)
            if event.step_key is None and event.message.startswith(_PID_MESSAGE)
        ]
        if not started:  # launched, worker not up yet: the start timeout covers this phase
            return CheckRunHealthResult(WorkerStatus.RUNNING, "the worker has not logged its pid yet")
        event = started[-1]  # a resumed run logs a new worker
        pid = int(event.dagster_event.engine_event_data.metadata["pid"].value)
        if process_alive(pid, event.timestamp):
            return CheckRunHealthResult(WorkerStatus.RUNNING, f"run worker pid {pid} is running")
        return CheckRunHealthResult(WorkerStatus.FAILED, f"run worker pid {pid} is gone (killed or crashed)")
