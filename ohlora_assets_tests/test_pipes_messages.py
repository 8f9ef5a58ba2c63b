"""The default Pipes client's messages and the remote's lifetime: a message the reader sees in pieces arrives whole;
a remote training that reports no materialization, is killed or raises fails its step with what happened; and a
remote whose orchestrator is gone stops instead of training on as an orphan.

Linux shows a large write to a concurrent reader a page at a time; the remote script here writes each message in two
parts with a pause between, so that the reader meets the cut every time, not once in a few hundred CI runs.
"""

import os
import subprocess
import sys
import threading
import time

import dagster as dg
import pytest

from ohlora_assets.launchers import run_through_pipes
from ohlora_assets.pipes_clients import WholeLineMessageReader, subprocess_training_client, whole_lines
from ohlora_assets.resources import PROJECT_ROOT, ArtifactStore, ModelProfile
from ohlora_assets.run_launcher import process_alive
from ohlora_assets_tests.conftest import step_failure

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


def test_a_line_that_is_no_utf8_is_handed_on_damaged_and_the_next_still_arrives(tmp_path):
    path = tmp_path / "messages"
    path.write_bytes(b'{"n": "\xff\xfe"}\n{"n": 2}\n')
    assert list(whole_lines(str(path), lambda: True)) == ['{"n": "\ufffd\ufffd"}', '{"n": 2}']


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


class _RemoteRuns(dg.PipesSubprocessClient):
    """A remote machine whose entry point runs `script` in place of the training."""

    def __init__(self, script: str):
        super().__init__(message_reader=WholeLineMessageReader())
        self.script = script

    def run(self, *, context, command, extras=None, **run_args):
        return super().run(context=context, command=[sys.executable, "-c", self.script], extras=extras, **run_args)


def _remote_failure(root, script: str) -> str:
    """The step failure's text when the training asset's remote runs `script`."""
    @dg.asset
    def adapter_trained_remotely(context: dg.AssetExecutionContext, store: ArtifactStore, profile: ModelProfile,
                                 pipes_client: dg.ResourceParam[dg.PipesClient]):
        return run_through_pipes(context, pipes_client, store, profile, [], {})

    resources = {"store": ArtifactStore(root=str(root)), "profile": ModelProfile(smoke=True),
                 "pipes_client": _RemoteRuns(script)}
    result = dg.materialize([adapter_trained_remotely], resources=resources, raise_on_error=False)
    assert not result.get_asset_materialization_events()
    return step_failure(result).to_string()


def test_a_remote_training_that_reports_no_materialization_fails_its_step(tmp_path):
    assert "ended without reporting its materialization" in _remote_failure(tmp_path, REPORTS_NOTHING)


def test_a_remote_killed_by_a_signal_is_named_with_what_it_leaves(tmp_path):
    text = _remote_failure(tmp_path, "import os, signal\nos.kill(os.getpid(), signal.SIGKILL)\n")
    assert "killed by SIGKILL, often the out-of-memory killer" in text and "does not serve" in text


def test_the_remote_error_is_named_even_after_a_message_dagster_refused(tmp_path):
    """A message the handler refuses (a malformed table) is dropped and logged; the remote's own error, reported
    after it when the session closes, is still the step's error, not the reader's."""
    script = (
        "from dagster_pipes import open_dagster_pipes\n"
        "with open_dagster_pipes() as pipes:\n"
        "    pipes.report_asset_materialization(metadata={'curve': {'raw_value': 5, 'type': 'table'}})\n"
        "    raise RuntimeError('CUDA out of memory')\n"
    )
    text = _remote_failure(tmp_path, script)
    assert "remote training failed" in text and "RuntimeError: CUDA out of memory" in text


ORPHAN = """
import os, pathlib, signal, sys, time
from ohlora_assets.pipes_training import stop_when_orphaned

marks, behaviour, orchestrator = pathlib.Path(sys.argv[1]), sys.argv[2], int(sys.argv[3])
(marks.parent / "pid.tmp").write_text(str(os.getpid()))
os.replace(marks.parent / "pid.tmp", marks / "pid")
if behaviour == "ignores-interrupts":  # stands in for a long call in C that sees no interrupt
    signal.signal(signal.SIGINT, signal.SIG_IGN)
if behaviour == "starts-watching-late":  # its imports took longer than the orchestrator lived
    while os.getppid() == orchestrator:
        time.sleep(0.01)
stop_when_orphaned(orchestrator, poll_s=0.05, grace_s=1.0)
try:
    time.sleep(60)
except KeyboardInterrupt:
    (marks / "interrupted").write_text("")
"""
# The orchestrator: starts the remote with its stderr on a pipe (as a step captures it), waits until it runs, and
# dies without a word, as a SIGKILL leaves it: the pipe has no reader any more.
ORCHESTRATOR = """
import os, pathlib, subprocess, sys, time
marks = pathlib.Path(sys.argv[1])
subprocess.Popen([sys.executable, "-c", sys.argv[3], sys.argv[1], sys.argv[2], str(os.getpid())],
                 stderr=subprocess.PIPE)
while not (marks / "pid").exists():
    time.sleep(0.01)
os._exit(0)
"""


@pytest.mark.parametrize("remote", ["stops-when-interrupted", "ignores-interrupts", "starts-watching-late"])
def test_a_remote_whose_orchestrator_died_stops_instead_of_training_on(tmp_path, remote):
    marks = tmp_path / "marks"
    marks.mkdir()
    env = {**os.environ, "PYTHONPATH": str(PROJECT_ROOT)}
    subprocess.run([sys.executable, "-c", ORCHESTRATOR, str(marks), remote, ORPHAN], env=env, cwd=PROJECT_ROOT,
                   check=True, timeout=120)
    pid = int((marks / "pid").read_text())
    deadline = time.monotonic() + 30
    while process_alive(pid, time.time()):
        assert time.monotonic() < deadline, f"the orphaned remote ({remote}) is still running"
        time.sleep(0.05)
    if remote == "stops-when-interrupted":  # (a late watcher interrupts it before it reaches its work)
        assert (marks / "interrupted").exists()
