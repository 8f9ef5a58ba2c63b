import os
import stat
import subprocess
import sys
import threading

import pytest

from ohlora_assets.core.io import (
    atomic_directory, atomic_write_bytes, content_hash, directory_hash, exchange, publish_files,
)


def test_atomic_directory_replaces_on_success_and_keeps_old_on_failure(tmp_path):
    target = tmp_path / "model"
    with atomic_directory(target) as staging:
        (staging / "w.safetensors").write_bytes(b"v1")
    assert (target / "w.safetensors").read_bytes() == b"v1"

    with pytest.raises(RuntimeError):
        with atomic_directory(target) as staging:
            (staging / "w.safetensors").write_bytes(b"half")
            raise RuntimeError("training crashed")
    assert (target / "w.safetensors").read_bytes() == b"v1"
    assert [p.name for p in tmp_path.iterdir()] == ["model"]  # no staging debris

    with atomic_directory(target) as staging:
        (staging / "w.safetensors").write_bytes(b"v2")
    assert (target / "w.safetensors").read_bytes() == b"v2"


def test_hashes_follow_content(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    for folder, payload in ((a, b"same"), (b, b"same")):
        folder.mkdir()
        (folder / "adapter_model.safetensors").write_bytes(payload)
        (folder / "notes.txt").write_text(str(folder))  # not weights: ignored
    assert directory_hash(a) == directory_hash(b)
    (b / "adapter_model.safetensors").write_bytes(b"different")
    assert directory_hash(a) != directory_hash(b)
    assert content_hash(a / "notes.txt") != content_hash(b / "notes.txt")


def test_artifacts_get_shared_folder_permissions_whatever_the_umask(tmp_path):
    previous = os.umask(0o077)
    try:
        with atomic_directory(tmp_path / "model") as staging:
            (staging / "sub").mkdir()
            (staging / "sub" / "w.safetensors").write_bytes(b"w")
        atomic_write_bytes(tmp_path / "report.md", b"# report")
    finally:
        os.umask(previous)
    modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in [tmp_path / "model", *tmp_path.rglob("*")]}
    assert modes == {"model": 0o755, "sub": 0o755, "w.safetensors": 0o644, "report.md": 0o644}


def test_a_successful_write_removes_debris_of_dead_writers_only(tmp_path):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead_pid = int(dead.stdout)
    stale = [tmp_path / f".model.tmp-{dead_pid}-0a1b2c3d", tmp_path / f".model.old-{dead_pid}-0a1b2c3e"]
    for folder in stale:
        folder.mkdir()
        (folder / "w.safetensors").write_bytes(b"half")
    (tmp_path / f".report.md.tmp-{dead_pid}-0a1b2c3f").write_bytes(b"half")
    in_progress = tmp_path / f".model.tmp-{os.getppid()}-0a1b2c40"  # a live writer's staging stays
    in_progress.mkdir()
    with atomic_directory(tmp_path / "model") as staging:
        (staging / "w.safetensors").write_bytes(b"v1")
    atomic_write_bytes(tmp_path / "report.md", b"ok")
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["model", "report.md", in_progress.name])


def test_directory_replacement_never_leaves_the_target_missing(tmp_path):
    """The publish step is one atomic exchange: there is no instant at which the target path is missing."""
    target = tmp_path / "model"
    with atomic_directory(target) as staging:
        (staging / "version").write_text("0")
    if not exchange(tmp_path / "model", tmp_path / "model"):
        pytest.skip("this file system has no atomic exchange (the two-rename fallback is used)")
    stop = threading.Event()
    missing = []

    def read() -> None:
        while not stop.is_set():
            if not target.is_dir():
                missing.append(1)

    reader = threading.Thread(target=read)
    reader.start()
    for version in range(1, 30):
        with atomic_directory(target) as staging:
            (staging / "version").write_text(str(version))
    stop.set()
    reader.join()
    assert missing == [] and (target / "version").read_text() == "29"


def test_published_files_replace_the_folder_whole_or_not_at_all(tmp_path):
    folder = tmp_path / "reports" / "rag_concept_experiment"
    publish_files(folder, {"report.md": b"first run", "accuracy.png": b"first plot", "old_only.parquet": b"x"})
    publish_files(folder, {"report.md": b"second run", "accuracy.png": b"second plot"})
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == {"report.md": b"second run", "accuracy.png": b"second plot"}

    # a run that fails part-way through its files (here: a plot that is no bytes) leaves the last whole report
    with pytest.raises(TypeError):
        publish_files(folder, {"report.md": b"third run", "plot.png": "a str, not bytes"})
    with pytest.raises(ValueError, match="plain file names"):
        publish_files(folder, {"report.md": b"third run", "../outside.png": b"x"})
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == {"report.md": b"second run", "accuracy.png": b"second plot"}
    assert [p.name for p in folder.parent.iterdir()] == ["rag_concept_experiment"], "no staging debris left"
