"""`ohlora models list|promote|rollback` against a real registry in a temporary artifact folder."""

import argparse
import json

import pytest

from ohlora_assets.cli_models import register
from ohlora_assets.core.registry import ModelRegistry


def _run(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="ohlora")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return args.handler(args)


@pytest.fixture
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("OHLORA_HOME", str(tmp_path))
    registry = ModelRegistry(tmp_path / "models", "adapter_memory")
    for i, loss in enumerate([2.0, 1.5]):
        metrics = {"final_train_loss": loss, "give_up_rate": 0.1 * i}
        with registry.write_version(metrics=metrics, data_version=f"{i + 1:x}" * 16) as pending:
            (pending.path / "adapter_model.safetensors").write_bytes(b"x")
    registry.promote("1111111111111111", "first version")
    (tmp_path / "models" / "ethics_sbert_model").mkdir(parents=True)
    (tmp_path / "models" / "ethics_sbert_model" / "modules.json").write_text("[]")  # a model from before versions
    return tmp_path


def test_list_shows_versions_metrics_and_what_serves(home, capsys):
    assert _run(["models", "list"]) == 0
    out = capsys.readouterr().out
    assert "adapter_memory: serving 1111111111111111" in out and "ethics_sbert_model: serving legacy" in out
    lines = out.splitlines()
    assert lines[1].split() == ["version", "created", "final_train_loss", "give_up_rate"]
    assert lines[2].split()[:2] == ["*", "1111111111111111"] and lines[2].split()[-2:] == ["2.0000", "0.0000"]
    assert lines[3].split()[0] == "2222222222222222" and lines[3].split()[-2:] == ["1.5000", "0.1000"]


def test_list_json_of_one_asset(home, capsys):
    assert _run(["models", "--home", str(home), "list", "adapter_memory", "--json"]) == 0
    (described,) = json.loads(capsys.readouterr().out)
    assert described["serving"] == "1111111111111111"
    serving_marks = [(v["version"], v["serving"]) for v in described["versions"]]
    assert serving_marks == [("1111111111111111", True), ("2222222222222222", False)]


def test_manual_promote_is_recorded_and_rollback_returns(home, capsys):
    registry = ModelRegistry(home / "models", "adapter_memory")
    assert _run(["models", "promote", "adapter_memory", "2222"]) == 0
    assert registry.serving_label() == "2222222222222222"
    assert registry.state()["history"][-1]["reason"] == "manual"
    assert _run(["models", "rollback", "adapter_memory"]) == 0
    assert registry.serving_label() == "1111111111111111"
    assert "rolled back, 1111111111111111 serves" in capsys.readouterr().out


def test_failures_exit_1_with_the_reason(home, capsys):
    assert _run(["models", "promote", "adapter_memory", "9999"]) == 1
    assert "no version '9999'" in capsys.readouterr().err
    assert _run(["models", "rollback", "adapter_memory"]) == 1
    assert "no earlier serving version" in capsys.readouterr().err
    assert _run(["models", "rollback", "adapter_nothing"]) == 1
    assert "no model asset 'adapter_nothing'" in capsys.readouterr().err


def test_a_damaged_serving_pointer_is_named_with_exit_1(home, capsys):
    pointer = home / "models" / "adapter_memory" / "serving.json"
    pointer.write_text('{"version": ', encoding="utf-8")  # cut short mid-write by hand or a full disk
    for argv in (["models", "list"], ["models", "list", "adapter_memory", "--json"], ["models", "rollback", "adapter_memory"]):
        assert _run(argv) == 1
        assert f"{pointer}: unreadable" in capsys.readouterr().err


def test_usage_errors_exit_2():
    with pytest.raises(SystemExit) as exited:
        _run(["models", "promote", "adapter_memory"])
    assert exited.value.code == 2


def test_a_registry_that_cannot_be_written_is_named_with_exit_1(home, capsys):
    registry = ModelRegistry(home / "models", "adapter_memory")
    (registry.root / ".lock").unlink()
    (registry.root / ".lock").mkdir()  # stands in for a read-only disk (root writes through chmod)
    assert _run(["models", "promote", "adapter_memory", "2222"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("adapter_memory: the serving pointer was not moved: Is a directory: ")
    assert registry.serving_label() == "1111111111111111"
