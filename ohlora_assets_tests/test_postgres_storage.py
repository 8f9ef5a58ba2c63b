"""The team instance of deploy/dagster.yaml, for real: a throwaway PostgreSQL server on loopback.

The test starts its own cluster (initdb + pg_ctl, on 127.0.0.1 and a free port, as the `postgres`
user when run as root), points deploy/dagster.yaml at it through the DAGSTER_PG_* variables,
materializes the data group through that instance, and reads the events back with SQL. It skips,
saying why, where no PostgreSQL server binaries are installed (`.ci/run` installs them through
scripts/ci_services.sh).
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import subprocess
import tempfile
from pathlib import Path

import dagster as dg
import pytest

from ohlora_assets.assets import data
from ohlora_assets.resources import PROJECT_ROOT
from ohlora_assets_tests.conftest import make_resources
from ohlora_assets_tests.processes import free_port

DEPLOY_YAML = PROJECT_ROOT / "deploy" / "dagster.yaml"


def _pg_bin_dir() -> Path | None:
    candidates = [os.environ.get("OHLORA_PG_BIN", "")]
    found = shutil.which("initdb")
    if found:
        candidates.append(str(Path(found).resolve().parent))
    candidates += sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True)
    for candidate in candidates:
        if candidate and (Path(candidate) / "initdb").exists() and (Path(candidate) / "pg_ctl").exists():
            return Path(candidate)
    return None



class Server:
    """A PostgreSQL cluster in a temporary folder, stopped and removed on exit."""

    def __init__(self, bin_dir: Path):
        self.bin_dir = bin_dir
        self.port = free_port()
        self.user = None
        if os.geteuid() == 0:  # postgres refuses to run as root
            try:
                self.user = pwd.getpwnam(os.environ.get("OHLORA_PG_OS_USER", "postgres"))
            except KeyError:
                pytest.skip("running as root and there is no `postgres` user to run the server as")
        self.root = Path(tempfile.mkdtemp(prefix="ohlora-pg-", dir="/tmp"))
        self.data = self.root / "data"
        self.log = self.root / "server.log"

    def _run(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
        kwargs = {"user": self.user.pw_uid, "group": self.user.pw_gid} if self.user else {}
        return subprocess.run(
            [str(self.bin_dir / args[0]), *args[1:]], capture_output=True, text=True, timeout=timeout,
            env={**os.environ, "LC_ALL": "C"}, **kwargs,
        )

    def __enter__(self) -> "Server":
        os.chmod(self.root, 0o755)
        if self.user:
            os.chown(self.root, self.user.pw_uid, self.user.pw_gid)
        init = self._run("initdb", "-D", str(self.data), "-U", "dagster", "--auth=trust", "-E", "UTF8", "--no-locale")
        if init.returncode:
            pytest.skip(f"initdb failed, cannot start a PostgreSQL server here: {init.stderr.strip()[-500:]}")
        options = f"-h 127.0.0.1 -p {self.port} -k {self.root} -c fsync=off"
        start = self._run("pg_ctl", "-D", str(self.data), "-o", options, "-l", str(self.log), "-w", "-t", "60", "start")
        if start.returncode:
            log = self.log.read_text() if self.log.exists() else ""
            pytest.skip(f"PostgreSQL server did not start: {start.stderr.strip()} {log[-500:]}")
        created = self._run("createdb", "-h", "127.0.0.1", "-p", str(self.port), "-U", "dagster", "ohlora", timeout=60)
        assert created.returncode == 0, created.stderr
        return self

    def __exit__(self, *exc) -> None:
        self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "-t", "30", "stop", timeout=60)
        shutil.rmtree(self.root, ignore_errors=True)

    def env(self) -> dict[str, str]:
        return {
            "DAGSTER_PG_HOST": "127.0.0.1",
            "DAGSTER_PG_PORT": str(self.port),
            "DAGSTER_PG_DB": "ohlora",
            "DAGSTER_PG_USERNAME": "dagster",
            "DAGSTER_PG_PASSWORD": "unused-with-trust-auth",
        }


@pytest.fixture
def postgres():
    bin_dir = _pg_bin_dir()
    if bin_dir is None:
        pytest.skip("no PostgreSQL server binaries (initdb, pg_ctl); scripts/ci_services.sh installs them")
    with Server(bin_dir) as server:
        yield server


def test_materialization_through_deploy_dagster_yaml_lands_in_postgres(postgres, tmp_path, monkeypatch):
    import psycopg2

    for name, value in postgres.env().items():
        monkeypatch.setenv(name, value)
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copy(DEPLOY_YAML, home / "dagster.yaml")

    with dg.DagsterInstance.from_config(str(home)) as instance:
        # every storage of the documented team instance is PostgreSQL, and its limits are loaded
        assert type(instance.run_storage).__name__ == "PostgresRunStorage"
        assert type(instance.event_log_storage).__name__ == "PostgresEventLogStorage"
        assert type(instance.schedule_storage).__name__ == "PostgresScheduleStorage"
        assert type(instance.run_coordinator).__name__ == "QueuedRunCoordinator"
        limits = instance.get_concurrency_config().run_queue_config.tag_concurrency_limits
        assert {"key": "ohlora/workload", "value": "training", "limit": 1} in limits
        assert instance.get_concurrency_config().pool_config.default_pool_limit == 1

        assets = dg.load_assets_from_modules([data])
        result = dg.materialize(assets, instance=instance, resources=make_resources(tmp_path / "store"))
        assert result.success
        materialized = {e.asset_key.to_user_string() for e in result.get_asset_materialization_events()}
        assert {"dialogue_dataset", "ethics_dataset", "output_message_split"} <= materialized
        # read back through the instance API ...
        record = instance.get_latest_materialization_event(dg.AssetKey("ethics_dataset"))
        assert record is not None and record.run_id == result.run_id
        assert instance.get_run_by_id(result.run_id).is_success

    # ... and straight from the database, with no Dagster in between
    connection = psycopg2.connect(
        host="127.0.0.1", port=postgres.port, dbname="ohlora", user="dagster", password="unused"
    )
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT status FROM runs WHERE run_id = %s", (result.run_id,))
            assert cursor.fetchone() == ("SUCCESS",)
            cursor.execute(
                "SELECT count(*) FROM event_logs WHERE run_id = %s AND dagster_event_type = 'ASSET_MATERIALIZATION'",
                (result.run_id,),
            )
            assert cursor.fetchone()[0] == len(materialized)
            cursor.execute("SELECT asset_key FROM asset_keys")
            keys = {row[0] for row in cursor.fetchall()}
            assert '["ethics_dataset"]' in keys
            cursor.execute(
                "SELECT count(*) FROM event_logs WHERE run_id = %s AND dagster_event_type = 'ASSET_CHECK_EVALUATION'",
                (result.run_id,),
            )
            assert cursor.fetchone()[0] >= 3  # schema_valid of the three datasets
    finally:
        connection.close()
