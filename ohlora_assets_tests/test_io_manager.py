"""The atomic IO manager: a failed write keeps the last good output loadable; files are shared-readable."""

import os
import stat

import dagster as dg

from ohlora_assets.io_manager import AtomicFilesystemIOManager
from ohlora_assets_tests.conftest import step_failure

VALUE = {"rows": [1, 2, 3]}


@dg.asset
def table():
    return VALUE


@dg.asset(name="table")
def unpicklable_table():
    return lambda: None  # the same key, now failing to pickle


def test_a_failed_write_keeps_the_previous_output_and_leaves_no_debris(tmp_path):
    io_manager = AtomicFilesystemIOManager(base_dir=str(tmp_path))
    previous = os.umask(0o077)
    try:
        assert dg.materialize([table], resources={"io_manager": io_manager}).success
    finally:
        os.umask(previous)
    stored = tmp_path / "table"
    assert stat.S_IMODE(stored.stat().st_mode) == 0o644
    good = stored.read_bytes()

    # Dagster's stock manager has truncated the file at this point
    result = dg.materialize([unpicklable_table], resources={"io_manager": io_manager}, raise_on_error=False)
    assert not result.success
    assert stored.read_bytes() == good
    assert sorted(p.name for p in tmp_path.iterdir()) == ["table"]

    @dg.asset
    def reader(table) -> None:
        assert table == VALUE

    assert dg.materialize([reader, table.to_source_asset()], resources={"io_manager": io_manager}).success


@dg.asset
def reads_table(table: dict) -> int:
    return len(table["rows"])


def test_a_stored_value_that_is_gone_names_the_asset_to_materialize(tmp_path):
    """The instance still records `table`, but its folder was emptied (or OHLORA_HOME points elsewhere now)."""
    io_manager = AtomicFilesystemIOManager(base_dir=str(tmp_path))
    with dg.instance_for_test() as instance:
        assert dg.materialize([table], resources={"io_manager": io_manager}, instance=instance).success
        (tmp_path / "table").unlink()
        result = dg.materialize([table, reads_table], selection=[reads_table], instance=instance,
                                resources={"io_manager": io_manager}, raise_on_error=False)
    assert f"no stored value of table at {tmp_path / 'table'}: materialize table" in step_failure(result).to_string()
