import pytest

from ohlora_assets.core.io import atomic_directory, content_hash, directory_hash


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
