"""SIGKILL a writer before each step of the atomic write path: the previous output stays readable
(or the new one is complete), and the next successful write leaves no debris."""

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from ohlora_assets.core.io import atomic_directory, atomic_write_bytes
from ohlora_assets.resources import PROJECT_ROOT

# The child counts every file-system step of the write path (the real functions, wrapped) and kills
# itself with SIGKILL just before step KILL_AT. Steps inside the `with` body count too.
CHILD = r"""
import os, shutil, signal, sys
from pathlib import Path
import ohlora_assets.core.io as io

kill_at, steps = int(os.environ["KILL_AT"]), [0]

def counted(function):
    def step(*args, **kwargs):
        steps[0] += 1
        if steps[0] == kill_at:
            os.kill(os.getpid(), signal.SIGKILL)
        return function(*args, **kwargs)
    return step

for module, name in [(os, "replace"), (os, "fsync"), (os, "chmod"), (os, "fchmod"), (os, "open"),
                     (os, "mkdir"), (shutil, "rmtree"), (io, "exchange"), (io, "remove_debris")]:
    setattr(module, name, counted(getattr(module, name)))

target, kind = Path(sys.argv[1]), sys.argv[2]
if kind == "directory":
    with io.atomic_directory(target) as staging:
        for name in ("adapter_config.json", "adapter_model.safetensors"):
            counted(lambda: (staging / name).write_text("new"))()
else:
    io.atomic_write_bytes(target, b"new" * 1000)
print(steps[0])
"""


def _write_in_child(target: Path, kind: str, kill_at: int) -> subprocess.CompletedProcess:
    env = {**os.environ, "KILL_AT": str(kill_at), "PYTHONPATH": str(PROJECT_ROOT)}
    return subprocess.run([sys.executable, "-c", CHILD, str(target), kind], env=env, capture_output=True, text=True)


def _read(target: Path, kind: str) -> set[str]:
    if kind == "directory":
        return {p.read_text() for p in target.iterdir()}
    return {target.read_text()[:3]}


@pytest.mark.parametrize("kind", ["directory", "file"])
def test_a_kill_before_any_step_leaves_the_previous_output_readable(tmp_path, kind):
    target = tmp_path / ("model" if kind == "directory" else "report.md")
    kill_at, killed = 1, 0
    while True:
        if kind == "directory":
            with atomic_directory(target) as staging:
                for name in ("adapter_config.json", "adapter_model.safetensors"):
                    (staging / name).write_text("old")
        else:
            atomic_write_bytes(target, b"old")
        assert [p.name for p in tmp_path.iterdir()] == [target.name], "the previous write left debris"

        child = _write_in_child(target, kind, kill_at)
        if child.returncode == 0:
            break
        assert child.returncode == -signal.SIGKILL, child.stderr
        killed += 1
        # old or new, complete: never missing, never a mix
        assert _read(target, kind) in ({"old"}, {"new"}), f"killed before step {kill_at}"
        kill_at += 1
    assert killed >= 5 and _read(target, kind) == {"new"}
