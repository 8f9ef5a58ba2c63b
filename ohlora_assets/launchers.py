"""Where a training asset trains: in this process (default) or through a Dagster Pipes client.

Run config `launcher: "pipes"` hands the training to the `pipes_client` resource (a `PipesSubprocessClient`
here; `dagster_k8s.PipesK8sClient` or `dagster_docker.PipesDockerClient` for a GPU machine, deploy/README.md),
which runs `python -m ohlora_assets.pipes_training`. Both launchers call the same core/model_training.py
function; the remote one gets its inputs as Parquet files in the shared artifact folder and everything else as
Pipes extras.
"""

import os
import re
import shutil
import signal
import sys
from pathlib import Path
from typing import Any, Literal

import dagster as dg
import pandas as pd
from dagster_pipes import DagsterPipesError
from pydantic import Field

from ohlora_assets.core.model_training import Markdown, Table, TrainedVersion, TrainingProfile, Url
from ohlora_assets.metadata import table
from ohlora_assets.pipes_training import ORCHESTRATOR_PID
from ohlora_assets.resources import ArtifactStore, ModelProfile

PIPES_CLIENT = "pipes_client"
ENTRY_POINT = "ohlora_assets.pipes_training"


class LauncherConfig(dg.Config):
    launcher: Literal["in_process", "pipes"] = Field(
        default="in_process",
        description="in_process: train in the step's process; pipes: through the `pipes_client` resource "
        f"(python -m {ENTRY_POINT}, on the machine that client starts it on)",
    )


def artifact_root(store: ArtifactStore) -> Path:
    """The artifact folder as both launchers pass it to core: absolute, so a remote process finds it too."""
    return Path(store.root).resolve()


def training_profile(profile: ModelProfile) -> TrainingProfile:
    return TrainingProfile(
        profile.name, profile.smoke, profile.device, profile.base_model_overrides, profile.trust_remote_code
    )


def dagster_metadata(metadata: dict[str, Any]) -> dict[str, Any]:
    """core metadata -> Dagster metadata: Markdown and paths typed, every other value inferred."""
    def typed(value):
        if isinstance(value, Markdown):
            return dg.MetadataValue.md(str(value))
        if isinstance(value, Table):
            return table(value)
        if isinstance(value, Url):
            return dg.MetadataValue.url(str(value))
        if isinstance(value, Path):
            return dg.MetadataValue.path(str(value))
        return value

    return {key: typed(value) for key, value in metadata.items()}


def materialized(trained: TrainedVersion) -> dg.MaterializeResult:
    """The in-process launcher's result."""
    return dg.MaterializeResult(data_version=dg.DataVersion(trained.data_version), metadata=dagster_metadata(trained.metadata))


def training_command(client: dg.PipesClient, *args: str) -> list[str]:
    """The entry point's command line: this interpreter for a local subprocess, the image's `python` elsewhere."""
    python = sys.executable if isinstance(client, dg.PipesSubprocessClient) else "python"
    return [python, "-m", ENTRY_POINT, *args]


def run_through_pipes(
    context: dg.AssetExecutionContext,
    client: dg.PipesClient,
    store: ArtifactStore,
    profile: ModelProfile,
    args: list[str],
    inputs: dict[str, pd.DataFrame | None],
    **extras: Any,
) -> dg.MaterializeResult:
    """Train remotely: save the input tables where the remote process reads them, run the entry point through
    the client, and return what it reported. A remote failure raises with its error text."""
    folder = store.path("pipes_inputs", context.asset_key.to_user_string(), context.run_id)
    folder.mkdir(parents=True, exist_ok=True)
    paths = {}
    for name, frame in inputs.items():
        if frame is not None:
            paths[name] = str(folder / f"{name}.parquet")
            frame.to_parquet(paths[name])
    if isinstance(client, dg.PipesSubprocessClient):  # the remote's parent: it stops once this step is gone
        extras[ORCHESTRATOR_PID] = os.getpid()
    try:
        invocation = client.run(
            context=context,
            command=training_command(client, *args),
            extras={
                "artifact_root": str(artifact_root(store)),
                "profile": training_profile(profile).to_dict(),
                "inputs": paths,
                **extras,
            },
        )
    except Exception as error:  # each client has its own error type; what the remote reported is the same
        remote = remote_error(context)
        if remote is not None:
            raise dg.Failure(f"remote training failed ({error}):\n{remote}") from None
        if (signal_name := killed_by(error)) is None:
            raise
        raise dg.Failure(
            f"the remote training was killed by {signal_name} ({error}). Its staging folder is removed by the next "
            "run, and an adapter resumes there from its last finished epoch; if it wrote a version before the kill "
            "(its log says `wrote registry version`), that version was not materialized and does not serve"
        ) from None
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    try:  # not Dagster's implicit, empty materialization: a lost report must fail the step, not pass unjudged
        return invocation.get_materialize_result(implicit_materialization=False)
    except DagsterPipesError as error:
        raise dg.Failure(
            f"the remote training ended without reporting its materialization ({error}); the [pipes] events of "
            "this step say why. If it wrote a version (its log says `wrote registry version`), that version was "
            "not materialized and does not serve"
        ) from None


# Dagster's engine event for a remote that closed its Pipes session with an exception (not the reader's own errors).
REMOTE_CLOSED_WITH_EXCEPTION = "[pipes] external process pipes closed with exception"
# The subprocess client's error for a process a signal ended: "External execution process failed with code -9".
_SIGNALLED = re.compile(r"failed with code -(\d+)\b")


def remote_error(context: dg.AssetExecutionContext) -> str | None:
    """The exception the remote process reported when its Pipes session closed (Dagster records it as an engine
    event of this step), with its remote traceback; None when it died before it could report one."""
    records = context.instance.all_logs(context.run_id, of_type=dg.DagsterEventType.ENGINE_EVENT)
    errors = [
        record.dagster_event.engine_event_data.error
        for record in records
        if record.step_key == context.get_step_execution_context().step.key
        and record.dagster_event.engine_event_data.error is not None
        and record.user_message == REMOTE_CLOSED_WITH_EXCEPTION
    ]
    return errors[-1].to_string() if errors else None


def killed_by(error: Exception) -> str | None:
    """The signal that ended a local remote process, named (SIGKILL: often the out-of-memory killer), or None."""
    if (match := _SIGNALLED.search(str(error))) is None:
        return None
    number = int(match.group(1))
    try:
        name = signal.Signals(number).name
    except ValueError:
        return f"signal {number}"
    return f"{name}, often the out-of-memory killer" if number == signal.SIGKILL else name
