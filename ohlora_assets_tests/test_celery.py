"""A Celery fleet, for real: Debian's redis-server on loopback, a `dagster-celery` worker, the celery executor.

The test starts redis-server (127.0.0.1, a free port, a temporary folder, no persistence) and one worker
(`dagster-celery worker start -A dagster_celery.app -y deploy/celery.yaml`, this tree on PYTHONPATH), runs
the data group and the memory adapter (smoke profile) with the run config of deploy/celery.yaml on a real
persistent instance, and reads the materializations back from that instance. It skips, saying why, where
redis-server, dagster-celery or the redis client is missing (`.ci/run` installs redis-server through
scripts/ci_services.sh; the `celery` extra installs the rest). Every process it starts is stopped.
"""

import os
import runpy
import shutil
import subprocess
import sys
import time
from pathlib import Path

import dagster as dg
import pytest
import yaml

from ohlora_assets.assets import base_models, data, models
from ohlora_assets.resources import PROJECT_ROOT, default_resources
from ohlora_assets_tests.processes import free_port, stop_process_group

BIN = Path(sys.executable).parent
CELERY_YAML = PROJECT_ROOT / "deploy" / "celery.yaml"
JOB = "celery_smoke"
ADAPTER = "adapter_memory"


def celery_smoke_job() -> dg.JobDefinition:
    """The data group, the base models and one adapter on the celery executor. Module level: the run and
    the worker both rebuild the job from this function (`dg.reconstructable`)."""
    from dagster_celery import celery_executor

    selection = dg.AssetSelection.groups("data") | dg.AssetSelection.assets("base_models", ADAPTER)
    return dg.Definitions(
        assets=dg.load_assets_from_modules([data, base_models, models]),
        resources=default_resources(),
        jobs=[dg.define_asset_job(JOB, selection=selection, executor_def=celery_executor)],
    ).resolve_job_def(JOB)



def _wait_for(ready, what: str, process: subprocess.Popen, timeout: float, log: Path) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.skip(f"{what} exited at start ({process.returncode}): {log.read_text(errors='replace')[-800:]}")
        if ready():
            return
        time.sleep(0.3)
    pytest.skip(f"{what} did not become ready in {timeout:.0f} s: {log.read_text(errors='replace')[-800:]}")


@pytest.fixture
def redis_url(tmp_path):
    server = shutil.which("redis-server")
    if server is None:
        pytest.skip("redis-server is not installed (scripts/ci_services.sh installs Debian's)")
    redis = pytest.importorskip("redis", reason="the redis client is missing: pip install '.[celery]'")
    port, log = free_port(), tmp_path / "redis.log"
    process = subprocess.Popen(
        [server, "--bind", "127.0.0.1", "--port", str(port), "--save", "", "--appendonly", "no",
         "--dir", str(tmp_path), "--logfile", str(log)],
        start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT,
    )
    client = redis.Redis(host="127.0.0.1", port=port)

    def ping() -> bool:
        try:
            return client.ping()
        except redis.ConnectionError:
            return False

    try:
        log.touch()
        _wait_for(ping, "redis-server", process, 15, log)
        yield f"redis://127.0.0.1:{port}"
    finally:
        stop_process_group(process)


@pytest.mark.slow
def test_data_group_and_an_adapter_run_on_a_celery_worker(redis_url, tmp_path, monkeypatch):
    pytest.importorskip("dagster_celery", reason="dagster-celery is missing: pip install '.[celery]'")
    if not (BIN / "dagster-celery").exists():
        pytest.skip(f"no dagster-celery command beside {sys.executable}")
    env = {
        "OHLORA_HOME": str(tmp_path / "store"), "OHLORA_SMOKE": "1", "OHLORA_TORCH_THREADS": "1",
        "OHLORA_CELERY_BROKER": f"{redis_url}/0", "OHLORA_CELERY_BACKEND": f"{redis_url}/1",
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    (tmp_path / "dagster_home").mkdir()
    with dg.instance_for_test(temp_dir=str(tmp_path / "dagster_home")) as instance:
        worker_log = tmp_path / "worker.log"
        worker = subprocess.Popen(
            [str(BIN / "dagster-celery"), "worker", "start", "-A", "dagster_celery.app",
             "-y", str(CELERY_YAML), "-n", "ohlora-test", "--", "--concurrency=2"],
            # the CLI starts `celery` from PATH: this interpreter's
            env={**os.environ, "DAGSTER_HOME": instance.root_directory, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}",
                 "PYTHONPATH": os.pathsep.join(filter(None, [str(PROJECT_ROOT), os.environ.get("PYTHONPATH")]))},
            cwd=PROJECT_ROOT, start_new_session=True, stdout=worker_log.open("w"), stderr=subprocess.STDOUT,
        )
        try:
            _wait_for(lambda: " ready." in worker_log.read_text(errors="replace"), "the celery worker", worker, 60,
                      worker_log)
            run_config = yaml.safe_load(CELERY_YAML.read_text(encoding="utf-8"))
            with dg.execute_job(dg.reconstructable(celery_smoke_job), instance=instance, run_config=run_config) as result:
                assert result.success, worker_log.read_text(errors="replace")[-3000:]
                run_id = result.run_id
        finally:
            stop_process_group(worker)
        # What the instance recorded: every selected asset materialized by this run, in the worker's processes.
        job = celery_smoke_job()
        expected = {key.to_user_string() for key in job.asset_layer.executable_asset_keys}
        records = instance.get_records_for_run(run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION).records
        materialized = {r.event_log_entry.dagster_event.asset_key.to_user_string() for r in records}
        assert materialized == expected and ADAPTER in materialized
        adapter = instance.get_latest_materialization_event(dg.AssetKey(ADAPTER)).asset_materialization
        assert Path(adapter.metadata["path"].value).joinpath("adapter_config.json").is_file()
        assert Path(env["OHLORA_HOME"]) in Path(adapter.metadata["path"].value).parents
        # every step ran in the worker: the worker reports each step it takes as an engine event of the run
        workers = [entry.dagster_event.engine_event_data.metadata["Celery worker"].value
                   for entry in instance.all_logs(run_id, of_type=dg.DagsterEventType.ENGINE_EVENT)
                   if (entry.dagster_event.message or "").endswith("in celery worker")]
        steps = instance.all_logs(run_id, of_type=dg.DagsterEventType.STEP_SUCCESS)
        assert workers and len(workers) == len(steps) and all(w.startswith("ohlora-test@") for w in workers)


@pytest.mark.parametrize("executor_name", ["multiprocess", "celery"])
def test_the_deploy_definitions_load_with_the_chosen_executor(monkeypatch, executor_name):
    pytest.importorskip("dagster_celery", reason="dagster-celery is missing: pip install '.[celery]'")
    monkeypatch.setenv("OHLORA_EXECUTOR", executor_name)
    loaded = runpy.run_path(str(PROJECT_ROOT / "deploy" / "definitions.py"))["defs"]
    dg.Definitions.validate_loadable(loaded)
    assert loaded.resolve_job_def("retrain_all").executor_def.name == {"multiprocess": "multi_or_in_process_executor",
                                                                        "celery": "celery"}[executor_name]
    assert isinstance(loaded.resources["pipes_client"], dg.PipesSubprocessClient)
