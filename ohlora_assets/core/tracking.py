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

Tracking is a copy of what the training reports, never a condition of it: a server that does not answer, a
full artifact store or a dropped connection is logged as a warning and the training goes on (its version is
materialized, checked and promoted as ever; the metadata says "not tracked" and why). MLflow's own HTTP retries
would spend about four minutes per call on a server that is down; unless you set them, they are 2 here.
"""

from __future__ import annotations

import logging
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
# MLflow's HTTP client retries a failed call 7 times with growing backoff (minutes); a copy of the figures is not
# worth it. (Its 120 s timeout stays: a model upload to a slow store may need it.)
_HTTP_DEFAULTS = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2"}
_LOG = logging.getLogger(__name__)


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
    scheme = "databricks" if uri.partition(":")[0] == "databricks" else urlsplit(uri).scheme.partition("+")[0]
    if scheme not in _STORE_SCHEMES:
        raise SettingsError(f"{variable}={uri!r}: no MLflow tracking store has the scheme {scheme!r}: use "
                            "http(s)://host:port, sqlite:, postgresql:, mysql: or databricks")
    if scheme in ("", "file") and not _folder_store_allowed():
        raise SettingsError(f"{variable}={uri!r}: this mlflow refuses folder stores (they are in maintenance mode): "
                            "use sqlite:///<folder>/mlflow.db, or set MLFLOW_ALLOW_FILE_STORE=true")


def _folder_store_allowed() -> bool:
    """Whether the installed mlflow opens a folder store: from 3.x on only with MLFLOW_ALLOW_FILE_STORE set."""
    from mlflow import environment_variables

    allowed = getattr(environment_variables, "MLFLOW_ALLOW_FILE_STORE", None)
    return allowed is None or bool(allowed.get())


class TrackingRun:
    """What a training logs to. This base class is the no-op used when tracking is off."""

    run_id: str | None = None
    run_url: str | None = None  # a link for the asset metadata, when the server has a web UI
    problem: str | None = None  # why tracking stopped for this training (configured, but a call failed)

    def log_metrics(self, metrics: Mapping[str, float | None], step: int = 0) -> None:
        """Numeric metrics at `step`; None and non-numeric values are skipped."""

    def log_epoch(self, epoch: int, metrics: Mapping[str, float | None]) -> None:
        """One epoch's metrics, with the epoch as MLflow's step."""
        self.log_metrics(metrics, step=epoch)

    def log_artifact_dir(self, path: str | Path, artifact_path: str | None = None) -> None:
        """Uploads a directory's files (a saved model, a report) to the run's artifacts."""

    def set_tags(self, tags: Mapping[str, str]) -> None:
        """Tags on the run (the version id a training wrote, known only once it is saved)."""

    def progress(self, forward: Progress | None = None) -> Progress:
        """A `Progress` that logs each epoch end's loss and metrics, and passes every event on to `forward`."""

        def observe(event: ProgressEvent) -> None:
            if event.epoch_end and event.epoch is not None:
                self.log_epoch(event.epoch, {"loss": event.loss, **event.metrics})
            if forward is not None:
                forward(event)

        return observe


class MlflowRun(TrackingRun):
    """Logs to one MLflow run. A call that fails is logged as a warning and tracking stops for this run: the
    training it copies goes on."""

    def __init__(self, client, run, uri: str):
        self.client = client
        self.run_id = run.info.run_id
        self.problem: str | None = None
        if uri.startswith(("http://", "https://")):
            self.run_url = f"{uri.rstrip('/')}/#/experiments/{run.info.experiment_id}/runs/{self.run_id}"

    def _call(self, what: str, call, *args) -> None:
        if self.problem is not None:
            return
        try:
            call(*args)
        except Exception as error:  # the server, the network, the artifact store: any of them, never the training
            self.problem = f"{what} failed ({type(error).__name__}: {error})"
            _LOG.warning("MLflow run %s: %s; tracking stops for this training, the training goes on",
                         self.run_id, self.problem)

    def log_metrics(self, metrics: Mapping[str, float | None], step: int = 0) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        batch = [
            Metric(key, float(value), now, step)
            for key, value in metrics.items()
            if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
        ]
        if batch:
            self._call("logging metrics", lambda: self.client.log_batch(self.run_id, metrics=batch))

    def log_artifact_dir(self, path: str | Path, artifact_path: str | None = None) -> None:
        self._call("uploading the artifacts", self.client.log_artifacts, self.run_id, str(path), artifact_path)

    def set_tags(self, tags: Mapping[str, str]) -> None:
        from mlflow.entities import RunTag

        self._call("tagging the run", lambda: self.client.log_batch(
            self.run_id, tags=[RunTag(key, str(value)) for key, value in tags.items()]))

    def finish(self, status: str) -> None:
        if self.problem is None:
            self._call("ending the run", self.client.set_terminated, self.run_id, status)
        else:  # a run that missed part of the copy says so, whatever the training did
            try:
                self.client.set_terminated(self.run_id, "FAILED")
            except Exception:
                pass


class UntrackedRun(TrackingRun):
    """Tracking was configured but the run could not be created: the training goes on untracked."""

    def __init__(self, problem: str):
        self.problem = problem


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

    Without a configured URI it yields a `TrackingRun` that does nothing, so callers need no `if`. A server that
    cannot be reached yields an `UntrackedRun` saying why (`problem`), after a warning.
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

    for variable, value in _HTTP_DEFAULTS.items():
        os.environ.setdefault(variable, value)
    try:
        client = MlflowClient(tracking_uri=uri)
        experiment_id = _experiment_id(client, os.environ.get(EXPERIMENT_VARIABLE, DEFAULT_EXPERIMENT))
        run = client.create_run(experiment_id, run_name=name, tags=dict(tags or {}))
    except Exception as error:
        problem = f"no MLflow run at {uri} ({type(error).__name__}: {error})"
        _LOG.warning("%s: %s; the training goes on untracked", name, problem)
        yield UntrackedRun(problem)
        return
    tracked = MlflowRun(client, run, uri)
    tracked._call("logging the parameters", lambda: client.log_batch(
        run.info.run_id, params=[Param(key, str(value)) for key, value in params.items()]))
    try:
        yield tracked
    except BaseException:
        tracked.finish("FAILED")
        raise
    tracked.finish("FINISHED")
