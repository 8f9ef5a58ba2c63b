"""The default Pipes client's messages: a message the reader sees in pieces arrives whole, and a remote training that
reports no materialization fails its step instead of passing as an empty one.

Linux shows a large write to a concurrent reader a page at a time; the remote script here writes each message in two
parts with a pause between, so that the reader meets the cut every time, not once in a few hundred CI runs.
"""

import sys
import threading
import time

import dagster as dg

from ohlora_assets.launchers import run_through_pipes
from ohlora_assets.pipes_clients import subprocess_training_client, whole_lines
from ohlora_assets.resources import ArtifactStore, ModelProfile

WRITES_IN_HALVES = """
import json, time
from contextlib import contextmanager
from dagster_pipes import PipesDefaultMessageWriter, PipesMessageWriterChannel, open_dagster_pipes

class Halves(PipesMessageWriterChannel):
    def __init__(self, path):
        self.path = path

    def write_message(self, message):
        line = json.dumps(message) + "\\n"
        with open(self.path, "a", encoding="utf-8") as stream:
            stream.write(line[: len(line) // 2]); stream.flush(); time.sleep(0.2); stream.write(line[len(line) // 2 :])

class HalvesWriter(PipesDefaultMessageWriter):
    @contextmanager
    def open(self, params):
        yield Halves(params[self.FILE_PATH_KEY])

with open_dagster_pipes(message_writer=HalvesWriter()) as pipes:
    pipes.log.info("로라: epoch 1")
    pipes.report_asset_materialization(metadata={"loss_curve": "손실" * 5000}, data_version="remote-1")
"""
REPORTS_NOTHING = "from dagster_pipes import open_dagster_pipes\nwith open_dagster_pipes(): pass\n"


def test_whole_lines_waits_for_the_rest_of_a_line_and_reads_to_the_end_once_closed(tmp_path):
    path = tmp_path / "messages"
    path.write_bytes(b"")
    closed = threading.Event()
    long_line = ('{"text": "' + "오로라" * 3000 + '"}').encode()
    cut = len(long_line) // 2 + 1  # inside a three-byte character

    def write():
        with path.open("ab") as stream:
            for part in (b'{"n": 1}\n' + long_line[:cut], long_line[cut:] + b"\n", b'{"n": 2}\n'):
                stream.write(part)
                stream.flush()
                time.sleep(0.1)
        closed.set()  # the session closes only after the writer is done, as Pipes does

    writer = threading.Thread(target=write)
    writer.start()
    lines = list(whole_lines(str(path), closed.is_set))
    writer.join()
    assert lines == ['{"n": 1}', long_line.decode(), '{"n": 2}']


def test_a_line_the_writer_never_ended_is_handed_on_at_close(tmp_path):
    path = tmp_path / "messages"
    path.write_bytes('{"n": 1}\n{"cut": "오로'.encode())
    assert list(whole_lines(str(path), lambda: True)) == ['{"n": 1}', '{"cut": "오로']


def test_a_message_read_in_pieces_reaches_dagster_whole():
    @dg.asset
    def remote(context: dg.AssetExecutionContext, pipes_client: dg.PipesSubprocessClient):
        command = [sys.executable, "-c", WRITES_IN_HALVES]
        return pipes_client.run(context=context, command=command).get_materialize_result(implicit_materialization=False)

    instance = dg.DagsterInstance.ephemeral()
    result = dg.materialize([remote], resources={"pipes_client": subprocess_training_client()}, instance=instance)
    (event,) = result.get_asset_materialization_events()
    assert event.materialization.metadata["loss_curve"].value == "손실" * 5000
    assert event.materialization.tags["dagster/data_version"] == "remote-1"
    messages = [entry.user_message for entry in instance.all_logs(result.run_id)]
    assert "로라: epoch 1" in messages
    assert not [m for m in messages if "framework exception" in m]


class _ReportsNothing(dg.PipesSubprocessClient):
    """A remote machine whose entry point opens Pipes and exits without reporting (its report lost on the way)."""

    def run(self, *, context, command, extras=None, **run_args):
        return super().run(context=context, command=[sys.executable, "-c", REPORTS_NOTHING], extras=extras, **run_args)


def test_a_remote_training_that_reports_no_materialization_fails_its_step(tmp_path):
    @dg.asset
    def adapter_trained_remotely(context: dg.AssetExecutionContext, store: ArtifactStore, profile: ModelProfile,
                                 pipes_client: dg.ResourceParam[dg.PipesClient]):
        return run_through_pipes(context, pipes_client, store, profile, [], {})

    resources = {"store": ArtifactStore(root=str(tmp_path)), "profile": ModelProfile(smoke=True),
                 "pipes_client": _ReportsNothing(message_reader=subprocess_training_client().message_reader)}
    result = dg.materialize([adapter_trained_remotely], resources=resources, raise_on_error=False)
    assert not result.success and not result.get_asset_materialization_events()
    (failure,) = [e for e in result.all_events if e.event_type == dg.DagsterEventType.STEP_FAILURE]
    assert "ended without reporting its materialization" in failure.step_failure_data.error.to_string()
