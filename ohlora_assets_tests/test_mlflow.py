"""MLflow tracking (core/tracking.py) against a real `mlflow server` on loopback with a SQLite backend.

Skipped, saying why, where mlflow is not installed (the optional `[mlflow]` extra) or its server does
not start. Without a tracking URI, tracking is a no-op that never imports mlflow.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from ohlora_assets.core.progress import ProgressEvent
from ohlora_assets.core.tracking import URI_VARIABLES, tracking_run
from ohlora_assets.resources import PROJECT_ROOT
from ohlora_assets_tests.processes import free_port, stop_process_group

START_TIMEOUT_S = 180  # database migrations on a shared 2-core CPU take ~40 s


def test_without_a_uri_tracking_does_nothing_and_imports_no_mlflow(tmp_path):
    code = f"""
import sys
from ohlora_assets.core.progress import ProgressEvent
from ohlora_assets.core.tracking import tracking_run
with tracking_run("adapter_summary", {{"rank": 4}}) as run:
    run.progress()(ProgressEvent(done=1, epoch=1, epoch_end=True, loss=1.0))
    run.log_artifact_dir({str(tmp_path)!r})
print(run.run_url, "mlflow" in sys.modules)
"""
    env = {k: v for k, v in os.environ.items() if k not in URI_VARIABLES}
    env["PYTHONPATH"] = str(PROJECT_ROOT)
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120, check=True)
    assert result.stdout.split() == ["None", "False"]



@pytest.fixture(scope="module")
def mlflow_server(tmp_path_factory):
    pytest.importorskip("mlflow", reason="mlflow is not installed (pip install -e '.[mlflow]')")
    script = Path(sys.executable).with_name("mlflow")
    if not script.is_file():
        pytest.skip(f"no mlflow command next to {sys.executable}")
    root = tmp_path_factory.mktemp("mlflow")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = (root / "server.log").open("wb")
    server = subprocess.Popen(
        [str(script), "server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
         "--backend-store-uri", f"sqlite:///{root / 'mlflow.db'}", "--artifacts-destination", str(root / "artifacts")],
        stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            if server.poll() is not None:
                pytest.skip(f"mlflow server exited ({server.returncode}): {(root / 'server.log').read_text()[-1500:]}")
            try:
                with urllib.request.urlopen(f"{url}/health", timeout=5) as response:
                    if response.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                pytest.skip(f"mlflow server not up after {START_TIMEOUT_S}s: {(root / 'server.log').read_text()[-1500:]}")
            time.sleep(1)
        yield url
    finally:
        stop_process_group(server, grace_s=30)
        log.close()


def _fake_training(progress, epochs: int = 3) -> list[ProgressEvent]:
    """Emits what a real training loop reports: steps, then each epoch's end with its metrics."""
    events = []
    for epoch in range(1, epochs + 1):
        for step in (1, 2):
            events.append(ProgressEvent(done=(epoch - 1) * 2 + step, total=epochs * 2, epoch=epoch, epochs=epochs, loss=3.0 / epoch))
        events.append(ProgressEvent(
            done=epoch * 2, total=epochs * 2, epoch=epoch, epochs=epochs, loss=2.0 / epoch, epoch_end=True,
            metrics={"token_accuracy": 0.3 * epoch, "valid_loss": None},
        ))
    for event in events:
        progress(event)
    return events


def test_a_training_logs_params_epochs_and_artifacts(mlflow_server, monkeypatch, tmp_path):
    from mlflow.tracking import MlflowClient

    monkeypatch.setenv("OHLORA_MLFLOW_URI", mlflow_server)
    monkeypatch.setenv("OHLORA_MLFLOW_EXPERIMENT", "ohlora-test")
    model_dir = tmp_path / "adapter"
    model_dir.mkdir()
    (model_dir / "adapter_config.json").write_text('{"r": 16}')
    forwarded = []

    with tracking_run("adapter_summary", {"rank": 16, "learning_rate": 3e-4, "base": "embedded"}) as run:
        events = _fake_training(run.progress(forwarded.append))
        run.log_metrics({"final_valid_loss": 0.61})
        run.log_artifact_dir(model_dir, "model")

    assert forwarded == events  # the asset's own progress reporter still sees every event
    client = MlflowClient(tracking_uri=mlflow_server)
    logged = client.get_run(run.run_id)
    assert logged.info.status == "FINISHED" and logged.info.run_name == "adapter_summary"
    assert logged.data.params == {"rank": "16", "learning_rate": "0.0003", "base": "embedded"}
    loss = client.get_metric_history(run.run_id, "loss")
    assert [(m.step, m.value) for m in sorted(loss, key=lambda m: m.step)] == [(1, 2.0), (2, 1.0), (3, 2.0 / 3)]
    accuracy = sorted(client.get_metric_history(run.run_id, "token_accuracy"), key=lambda m: m.step)
    assert [m.step for m in accuracy] == [1, 2, 3] and accuracy[-1].value == pytest.approx(0.9)
    assert "valid_loss" not in logged.data.metrics  # None is not a measurement
    assert logged.data.metrics["final_valid_loss"] == 0.61
    assert [a.path for a in client.list_artifacts(run.run_id, "model")] == ["model/adapter_config.json"]
    assert run.run_url.startswith(mlflow_server) and run.run_url.endswith(run.run_id)
    with urllib.request.urlopen(run.run_url, timeout=30) as page:  # the link the asset metadata carries
        assert page.status == 200


def test_a_training_that_raises_leaves_a_failed_run(mlflow_server, monkeypatch):
    from mlflow.tracking import MlflowClient

    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_server)
    monkeypatch.delenv("OHLORA_MLFLOW_URI", raising=False)
    with pytest.raises(RuntimeError, match="out of memory"):
        with tracking_run("ethics_sbert_model", {"epochs": 2}) as run:
            run.log_epoch(1, {"loss": 0.5})
            raise RuntimeError("out of memory")
    assert MlflowClient(tracking_uri=mlflow_server).get_run(run.run_id).info.status == "FAILED"


def test_an_adapter_materialization_logs_to_mlflow_and_links_the_run(mlflow_server, monkeypatch, tmp_path):
    """The real training path (core/model_training.py, what both launchers run): the asset's metadata links
    the MLflow run, which holds the LoRA parameters, one loss per epoch and the saved adapter."""
    import dagster as dg
    from mlflow.tracking import MlflowClient

    from ohlora_assets.assets import base_models, data, models
    from ohlora_assets_tests.conftest import make_resources

    monkeypatch.setenv("OHLORA_MLFLOW_URI", mlflow_server)
    monkeypatch.setenv("OHLORA_MLFLOW_EXPERIMENT", "ohlora-assets-test")
    monkeypatch.setenv("OHLORA_TORCH_THREADS", "1")
    result = dg.materialize(
        [*dg.load_assets_from_modules([data, base_models, models])],
        selection=dg.AssetSelection.groups("data") | dg.AssetSelection.assets("base_models", "adapter_memory"),
        resources=make_resources(tmp_path / "store"), instance=dg.DagsterInstance.ephemeral(),
    )
    assert result.success
    (event,) = [e for e in result.get_asset_materialization_events() if e.asset_key.to_user_string() == "adapter_memory"]
    link = event.materialization.metadata["mlflow_run"]
    assert isinstance(link, dg.UrlMetadataValue) and link.url.startswith(mlflow_server)
    client = MlflowClient(tracking_uri=mlflow_server)
    logged = client.get_run(link.url.rsplit("/", 1)[-1])
    assert logged.info.status == "FINISHED" and logged.info.run_name == "adapter_memory"
    assert logged.data.params["rank"] == "64" and logged.data.params["profile"] == "embedded"
    epochs = event.materialization.metadata["per_epoch"].records
    assert [m.step for m in client.get_metric_history(logged.info.run_id, "loss")] == [r.data["epoch"] for r in epochs]
    assert "adapter/adapter_model.safetensors" in [a.path for a in client.list_artifacts(logged.info.run_id, "adapter")]


def test_a_server_that_does_not_answer_leaves_the_training_untracked_not_failed(monkeypatch):
    """Tracking copies the figures; an outage is a warning, and costs seconds, not MLflow's minutes of retries."""
    import socket
    import time

    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    monkeypatch.setenv("OHLORA_MLFLOW_URI", f"http://127.0.0.1:{port}")
    for variable in ("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "MLFLOW_HTTP_REQUEST_TIMEOUT"):
        monkeypatch.delenv(variable, raising=False)
    started = time.monotonic()
    with tracking_run("adapter_memory", {"rank": 16}) as run:
        events = _fake_training(run.progress())
        run.log_artifact_dir("/nonexistent", "adapter")
    assert len(events) > 0 and run.run_id is None
    assert run.problem.startswith(f"no MLflow run at http://127.0.0.1:{port}")
    assert time.monotonic() - started < 60


def test_an_upload_that_fails_after_training_marks_the_run_failed_and_the_training_stands(monkeypatch, tmp_path):
    """The artifact store refuses the files (here its location lies under a plain file; a full disk or a dropped
    connection alike): the run says FAILED, and the training's block ends normally."""
    from mlflow.tracking import MlflowClient

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    (tmp_path / "a_file").write_text("not a folder")
    MlflowClient(tracking_uri=uri).create_experiment("broken-store", artifact_location=str(tmp_path / "a_file" / "art"))
    monkeypatch.setenv("OHLORA_MLFLOW_URI", uri)
    monkeypatch.setenv("OHLORA_MLFLOW_EXPERIMENT", "broken-store")
    model_dir = tmp_path / "adapter"
    model_dir.mkdir()
    (model_dir / "adapter_config.json").write_text('{"r": 16}')
    with tracking_run("adapter_summary", {"rank": 16}) as run:
        _fake_training(run.progress())
        run.log_artifact_dir(model_dir, "adapter")
        run.log_metrics({"final_valid_loss": 0.5})  # tracking has stopped; nothing raises
    assert run.problem.startswith("uploading the artifacts failed (NotADirectoryError")
    logged = MlflowClient(tracking_uri=uri).get_run(run.run_id)
    assert logged.info.status == "FAILED" and "final_valid_loss" not in logged.data.metrics
    assert logged.data.metrics["loss"] == pytest.approx(2.0 / 3)  # what was logged before the failure stays


def test_with_tracking_down_an_adapter_still_materializes_and_says_it_was_not_tracked(monkeypatch, tmp_path):
    import socket

    import dagster as dg

    from ohlora_assets.assets import base_models, data, models
    from ohlora_assets_tests.conftest import make_resources

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    monkeypatch.setenv("OHLORA_MLFLOW_URI", f"http://127.0.0.1:{port}")
    monkeypatch.setenv("OHLORA_TORCH_THREADS", "1")
    result = dg.materialize(
        [*dg.load_assets_from_modules([data, base_models, models])],
        selection=dg.AssetSelection.groups("data") | dg.AssetSelection.assets("base_models", "adapter_memory"),
        resources=make_resources(tmp_path / "store"), instance=dg.DagsterInstance.ephemeral(),
    )
    assert result.success  # the model, its checks and its version are there as ever
    (event,) = [e for e in result.get_asset_materialization_events() if e.asset_key.to_user_string() == "adapter_memory"]
    assert event.materialization.metadata["mlflow_run"].value.startswith(f"not tracked: no MLflow run at http://127.0.0.1:{port}")
