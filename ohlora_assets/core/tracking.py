"""Experiment tracking in MLflow, optional: a no-op unless a tracking server is configured.

Set OHLORA_MLFLOW_URI (or MLflow's own MLFLOW_TRACKING_URI) to a tracking server, e.g.
`http://127.0.0.1:5000`, and install the extra (`pip install -e '.[mlflow]'`). Then each training
logs its parameters, its per-epoch metrics and its artifact directory to one MLflow run in the
experiment OHLORA_MLFLOW_EXPERIMENT (default `ohlora`):

    with tracking_run("adapter_summary", {"rank": 16, "lr": 3e-4}) as run:
        result = train(..., progress=run.progress(reporter))  # epoch ends -> MLflow metrics
        run.log_metrics({"valid_loss": result.valid_loss})
        run.log_artifact_dir(model_dir)
    metadata["mlflow_run"] = run.run_url  # None when tracking is off

mlflow is imported only when a URI is set, and talked to through `MlflowClient` (no global state,
so runs in parallel threads stay apart).
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

from ohlora_assets.core.progress import Progress, ProgressEvent
from ohlora_assets.core.settings import SettingsError

URI_VARIABLES = ("OHLORA_MLFLOW_URI", "MLFLOW_TRACKING_URI")
EXPERIMENT_VARIABLE = "OHLORA_MLFLOW_EXPERIMENT"
DEFAULT_EXPERIMENT = "ohlora"
# The tracking stores MLflow 3 opens by URI scheme (a database scheme may name its driver: `postgresql+psycopg2`);
# no scheme is a local folder.
_STORE_SCHEMES = {"", "file", "http", "https", "databricks", "sqlite", "postgresql", "mysql", "mssql"}


def tracking_uri() -> str | None:
    """The configured tracking server, or None (tracking off)."""
    for variable in URI_VARIABLES:
        if value := os.environ.get(variable, "").strip():
            return value
    return None


def check_tracking_settings() -> None:
    """SettingsError naming the variable when tracking is configured but cannot work: mlflow missing, or a URI
    scheme no MLflow store has (`htp://`). Checked when the definitions load, not after a training's first step."""
    import importlib.util
    from urllib.parse import urlsplit

    uri = tracking_uri()
    if uri is None:
        return
    variable = next(v for v in URI_VARIABLES if os.environ.get(v, "").strip())
    if importlib.util.find_spec("mlflow") is None:
        raise SettingsError(f"{variable}={uri!r}: tracking is on but mlflow is not installed: "
                            "pip install 'ohlora-assets[mlflow]' (or unset it)")
    scheme = urlsplit(uri).scheme.partition("+")[0]
    if scheme not in _STORE_SCHEMES:
        raise SettingsError(f"{variable}={uri!r}: no MLflow tracking store has the scheme {scheme!r}: use "
                            "http(s)://host:port, a folder, file:, sqlite:, postgresql:, mysql: or databricks")


class TrackingRun:
    """What a training logs to. This base class is the no-op used when tracking is off."""

    run_id: str | None = None
    run_url: str | None = None  # a link for the asset metadata, when the server has a web UI

    def log_metrics(self, metrics: Mapping[str, float | None], step: int = 0) -> None:
        """Numeric metrics at `step`; None and non-numeric values are skipped."""

    def log_epoch(self, epoch: int, metrics: Mapping[str, float | None]) -> None:
        """One epoch's metrics, with the epoch as MLflow's step."""
        self.log_metrics(metrics, step=epoch)

    def log_artifact_dir(self, path: str | Path, artifact_path: str | None = None) -> None:
        """Uploads a directory's files (a saved model, a report) to the run's artifacts."""

    def progress(self, forward: Progress | None = None) -> Progress:
        """A `Progress` that logs each epoch end's loss and metrics, and passes every event on to `forward`."""

        def observe(event: ProgressEvent) -> None:
            if event.epoch_end and event.epoch is not None:
                self.log_epoch(event.epoch, {"loss": event.loss, **event.metrics})
            if forward is not None:
                forward(event)

        return observe


class MlflowRun(TrackingRun):
    def __init__(self, client, run, uri: str):
        self.client = client
        self.run_id = run.info.run_id
        if uri.startswith(("http://", "https://")):
            self.run_url = f"{uri.rstrip('/')}/#/experiments/{run.info.experiment_id}/runs/{self.run_id}"

    def log_metrics(self, metrics: Mapping[str, float | None], step: int = 0) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        batch = [
            Metric(key, float(value), now, step)
            for key, value in metrics.items()
            if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
        ]
        if batch:
            self.client.log_batch(self.run_id, metrics=batch)

    def log_artifact_dir(self, path: str | Path, artifact_path: str | None = None) -> None:
        self.client.log_artifacts(self.run_id, str(path), artifact_path)


def _experiment_id(client, name: str) -> str:
    from mlflow.exceptions import MlflowException

    experiment = client.get_experiment_by_name(name)
    if experiment is None:
        try:
            return client.create_experiment(name)
        except MlflowException:  # another training created it meanwhile
            experiment = client.get_experiment_by_name(name)
    return experiment.experiment_id


@contextmanager
def tracking_run(name: str, params: Mapping[str, object], tags: Mapping[str, str] | None = None) -> Iterator[TrackingRun]:
    """One MLflow run named `name` with `params`, finished (or marked failed) when the block ends.

    Without a configured URI it yields a `TrackingRun` that does nothing, so callers need no `if`.
    """
    uri = tracking_uri()
    if uri is None:
        yield TrackingRun()
        return
    try:
        from mlflow.entities import Param
        from mlflow.tracking import MlflowClient
    except ImportError as err:
        raise RuntimeError(
            f"{'/'.join(URI_VARIABLES)} is set but mlflow is not installed: pip install 'ohlora-assets[mlflow]'"
        ) from err

    client = MlflowClient(tracking_uri=uri)
    experiment_id = _experiment_id(client, os.environ.get(EXPERIMENT_VARIABLE, DEFAULT_EXPERIMENT))
    run = client.create_run(experiment_id, run_name=name, tags=dict(tags or {}))
    client.log_batch(run.info.run_id, params=[Param(key, str(value)) for key, value in params.items()])
    try:
        yield MlflowRun(client, run, uri)
    except BaseException:
        client.set_terminated(run.info.run_id, "FAILED")
        raise
    client.set_terminated(run.info.run_id, "FINISHED")
