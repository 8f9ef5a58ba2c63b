"""The training entry point of a remote machine: one model trained inside a Dagster Pipes session.

    python -m ohlora_assets.pipes_training adapter <task>
    python -m ohlora_assets.pipes_training ethics

A Pipes client on the orchestrator (`ohlora_assets.launchers`) starts it and passes, as Pipes extras, the
artifact folder (shared with the orchestrator), the model profile, the input tables it saved there (Parquet)
and, for an adapter, the base model and the run config's LoRA fields. The training is core/model_training.py,
the same function the in-process launcher calls: it writes a new registry version (the promotion gate still
decides whether it serves). Progress lines go back as Pipes logs; the metadata and the data version (the
weights' hash) as the asset's materialization. Only dagster-pipes is imported here, never dagster.
"""

from __future__ import annotations

import argparse
import os
import signal
import threading
import time
from pathlib import Path
from typing import Any

import pandas as pd
from dagster_pipes import PipesContext, open_dagster_pipes

from ohlora_assets.core.base_models import BaseModelRef
from ohlora_assets.core.formats import TASKS
from ohlora_assets.core.model_training import (
    ETHICS_MODEL,
    Markdown,
    Table,
    TrainedVersion,
    Url,
    TrainingProfile,
    adapter_name,
    train_adapter_version,
    train_ethics_version,
)
from ohlora_assets.core.progress import ProgressReporter
from ohlora_assets.core.render import typed_table


def pipes_metadata(metadata: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """core metadata -> Pipes metadata: Markdown, paths, tables and links typed as in process, every other value
    inferred."""
    typed = {}
    for key, value in metadata.items():
        if isinstance(value, Markdown):
            typed[key] = {"raw_value": str(value), "type": "md"}
        elif isinstance(value, Table):
            records, columns = typed_table(list(value))
            schema = [{"name": name, "type": kind} for name, kind in columns]
            typed[key] = {"raw_value": {"records": records, "schema": schema}, "type": "table"}
        elif isinstance(value, Url):
            typed[key] = {"raw_value": str(value), "type": "url"}
        elif isinstance(value, Path):
            typed[key] = {"raw_value": str(value), "type": "path"}
        else:
            typed[key] = {"raw_value": value, "type": "__infer__"}
    return typed


def _input(pipes: PipesContext, name: str) -> pd.DataFrame | None:
    path = pipes.get_extra("inputs").get(name)
    return pd.read_parquet(path) if path else None


def train(pipes: PipesContext, model: str, task: str | None) -> TrainedVersion:
    root = Path(pipes.get_extra("artifact_root"))
    profile = TrainingProfile(**pipes.get_extra("profile"))
    if model == "ethics":
        return train_ethics_version(
            _input(pipes, "pairs"), profile, root, ProgressReporter(pipes.log.info, label=ETHICS_MODEL)
        )
    name = adapter_name(task)
    return train_adapter_version(
        task, _input(pipes, "split"), _input(pipes, "augmented"), BaseModelRef(**pipes.get_extra("base_model")),
        pipes.get_extra("hyper_params"), profile, root, ProgressReporter(pipes.log.info, label=name), pipes.log.info,
    )


#: The Pipes extra with the pid of the step that started this process (only a local subprocess client sends it: a
#: container's process is PID 1 of its own namespace, and its parent never changes).
ORCHESTRATOR_PID = "orchestrator_pid"
#: Seconds an orphaned training has to stop after its interrupt before it is killed (a long call in C or CUDA, or
#: a save, sees the interrupt only when it returns).
STOP_GRACE_S = 30.0


def stop_when_orphaned(orchestrator: int, poll_s: float = 1.0, grace_s: float = STOP_GRACE_S) -> threading.Thread:
    """Interrupt this process once `orchestrator` (the step that started it) is no longer its parent, and kill it
    `grace_s` later if it still runs.

    The step can die (SIGKILL, the out-of-memory killer) or give up on it (Dagster waits 20 s after a cancel, then
    leaves it). An orphan would train on beside the retrain that replaces it, on the same GPU and checkpoint, and
    write a version nobody materializes. The interrupt lets the registry remove its staging folder. The pid comes
    from the orchestrator (a Pipes extra), so a step that died before this process looked is noticed too.
    """

    def watch() -> None:
        while os.getppid() == orchestrator:
            time.sleep(poll_s)
        try:  # no notice on stderr: nobody reads it any more, and a write there could fail or block the kill
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(grace_s)
        finally:
            os.kill(os.getpid(), signal.SIGKILL)

    watcher = threading.Thread(target=watch, name="stop-when-orphaned", daemon=True)
    watcher.start()
    return watcher


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m ohlora_assets.pipes_training", description=__doc__.split("\n")[0])
    parser.add_argument("model", choices=["adapter", "ethics"])
    parser.add_argument("task", nargs="?", choices=TASKS, help="the adapter's task")
    args = parser.parse_args(argv)
    if (args.model == "adapter") != (args.task is not None):
        parser.error("an adapter needs its task; the ethics model takes none")
    with open_dagster_pipes() as pipes:
        if (orchestrator := pipes.extras.get(ORCHESTRATOR_PID)) is not None:  # a subprocess of this machine
            stop_when_orphaned(orchestrator)
        trained = train(pipes, args.model, args.task)
        # said before the report, which a kill or a lost message could stop: the step log names what is left
        pipes.log.info(f"wrote registry version {trained.version} (it serves only once promoted)")
        pipes.report_asset_materialization(metadata=pipes_metadata(trained.metadata), data_version=trained.data_version)


if __name__ == "__main__":
    main()
