"""The `ohlora` command as a user runs it: a subprocess of this tree, its exit status and output.

Exit status: 0 success, 1 failure, 2 usage errors only (argparse's).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pandas as pd
import pytest

from ohlora_assets.bench.cli import BENCHMARKS
from ohlora_assets.resources import PROJECT_ROOT


def ohlora(*args: str, home: Path | None = None) -> subprocess.CompletedProcess:
    script = Path(sys.executable).with_name("ohlora")
    command = [str(script)] if script.is_file() else [sys.executable, "-m", "ohlora_assets.cli"]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(PROJECT_ROOT), os.environ.get("PYTHONPATH", "")])}
    if home is not None:
        env["OHLORA_HOME"] = str(home)
    return subprocess.run([*command, *args], env=env, capture_output=True, text=True, timeout=300)


def test_version():
    result = ohlora("--version")
    version = tomllib.loads((PROJECT_ROOT / "pyproject.toml").read_text())["project"]["version"]
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"ohlora {version}"


@pytest.mark.parametrize(
    "args",
    [
        [],  # no command
        ["train"],  # no such command
        ["bench"],  # no benchmark
        ["bench", "generation", "--train", "x.csv"],  # another benchmark's option
        ["bench", "training", "--seeds", "1,2"],
        ["bench", "ethics-accuracy", "--seeds", "forty-two"],
    ],
)
def test_usage_errors_exit_2_and_say_why(args):
    result = ohlora(*args)
    assert result.returncode == 2, (args, result.stdout, result.stderr)
    assert "usage: ohlora" in result.stderr and "error:" in result.stderr


@pytest.mark.parametrize(
    "variable, value, command, named",
    [
        ("OHLORA_SMOKE", "of", ["chat", "--once", "안녕", "--user", "u"], "OHLORA_SMOKE='of': expected on"),  # not off
        ("OHLORA_TORCH_THREADS", "two", ["chat", "--once", "안녕", "--user", "u"], "OHLORA_TORCH_THREADS='two'"),
        ("OHLORA_TORCH_THREADS", "0", ["bench", "ethics-throughput", "--quick"], "OHLORA_TORCH_THREADS='0'"),
        # the chat reads the pipeline's device: a mistyped one is named before any model loads
        ("OHLORA_DEVICE", "gpu", ["chat", "--once", "안녕", "--user", "u"], "OHLORA_DEVICE='gpu'"),
        # empty: "no models yet" in the current directory, as it used to answer
        ("OHLORA_HOME", "", ["models", "list"], "OHLORA_HOME='': expected a folder"),
    ],
)
def test_a_mistyped_setting_is_named_with_exit_1_before_the_command_runs(
    tmp_path, monkeypatch, capsys, variable, value, command, named
):
    from ohlora_assets.cli import main

    monkeypatch.setenv("OHLORA_HOME", str(tmp_path))
    monkeypatch.setenv(variable, value)
    assert main(command) == 1
    error = capsys.readouterr().err
    assert error.startswith("ohlora: settings") and named in error and "Traceback" not in error


def test_chat_device_names_are_checked_as_usage():
    result = ohlora("chat", "--user", "u", "--once", "안녕", "--device", "gpu")
    assert result.returncode == 2
    assert "argument --device: 'gpu': expected auto, cpu, cuda or cuda:N" in result.stderr


def test_bench_help_lists_every_benchmark_with_only_its_options():
    result = ohlora("bench", "--help")
    assert result.returncode == 0
    for name in [*BENCHMARKS, "all"]:
        assert f"    {name}" in result.stdout, name
    accuracy = ohlora("bench", "ethics-accuracy", "--help").stdout
    assert all(option in accuracy for option in ("--train", "--test", "--seeds", "--quick", "--json"))
    generation = ohlora("bench", "generation", "--help").stdout
    assert "--quick" in generation and "--json" in generation
    assert not any(option in generation for option in ("--train", "--test", "--seeds"))


def test_help_is_written_for_users_and_imports_no_torch():
    result = ohlora("--help")
    assert result.returncode == 0
    assert "ethics" in result.stdout and "bench" in result.stdout
    assert not any(note in result.stdout for note in ("lazily", "import", "torch"))
    probe = subprocess.run(
        [sys.executable, "-c", "import sys; from ohlora_assets.cli import build_parser; build_parser(); "
         "print('torch' in sys.modules)"],
        env={**os.environ, "PYTHONPATH": str(PROJECT_ROOT)}, capture_output=True, text=True, timeout=120, check=True,
    )
    assert probe.stdout.strip() == "False"


def test_the_gate_answers_a_usage_error_in_json_with_exit_2():
    """`ethics check` speaks JSON on stdout whatever happens (its callers parse it): a usage error too."""
    result = ohlora("ethics", "check", "안녕")  # --user missing
    assert result.returncode == 2, (result.stdout, result.stderr)
    answer = json.loads(result.stdout)
    assert "--user" in answer["error"] and answer["usage"].startswith("usage:")


def test_a_command_that_fails_exits_1_not_2(tmp_path):
    result = ohlora(
        "ethics", "check", "안녕", "--user", "u", "--model", str(tmp_path / "no-model"), "--log", str(tmp_path / "log.sqlite"),
        home=tmp_path,
    )
    assert result.returncode == 1, result.stderr
    assert "ethics_sbert_model" in json.loads(result.stdout)["error"]


def test_ethics_accuracy_takes_a_train_file_and_a_test_file_and_leaves_out_repeats(tmp_path):
    frame = pd.read_csv(PROJECT_ROOT / "data" / "ethics_dataset.csv", dtype=str, keep_default_na=False)
    train = frame[frame["type"] == "train"].groupby("category").head(12)
    test = frame[frame["type"] == "test"].groupby("category").head(2)
    repeated = train.iloc[[0]].assign(type="test")  # a training prompt again in the test file: memory, not skill
    train.to_csv(tmp_path / "train.csv", index=False)
    pd.concat([test, repeated]).to_csv(tmp_path / "test.csv", index=False)
    result = ohlora("bench", "ethics-accuracy", "--quick", "--train", str(tmp_path / "train.csv"),
                    "--test", str(tmp_path / "test.csv"), home=tmp_path / "home")
    assert result.returncode == 0, result.stderr
    assert f"train: 1 prompts of {tmp_path / 'train.csv'} left out: near-duplicates of a scored prompt" in result.stdout
    assert any(line.startswith("accuracy=") for line in result.stdout.splitlines())

    (tmp_path / "broken.csv").write_text("type,user_prompt,category\ntrain,안녕,욕설\n", encoding="utf-8")
    broken = ohlora("bench", "ethics-accuracy", "--quick", "--train", str(tmp_path / "broken.csv"),
                    "--test", str(tmp_path / "test.csv"), home=tmp_path / "home")
    assert broken.returncode == 1 and "Traceback" not in broken.stderr
    assert f"ohlora bench ethics-accuracy: 1 problem(s) in input data:\n  - {tmp_path / 'broken.csv'}, row 2" in broken.stderr


def test_a_bad_benchmark_input_is_one_line_and_still_a_json_error(tmp_path):
    missing = tmp_path / "nowhere.csv"
    result = ohlora("bench", "ethics-accuracy", "--json", "--train", str(missing), home=tmp_path)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    outcome = json.loads(result.stdout)
    assert outcome["name"] == "ethics-accuracy" and outcome["value"] is None
    assert str(missing) in outcome["error"] and "--train" in outcome["error"]


def test_commands_check_only_the_settings_they_read(tmp_path, monkeypatch, capsys):
    """A training override whose folder lives on another machine does not stop the serving host's commands, and
    --home stands in for OHLORA_HOME."""
    from ohlora_assets.cli import main

    monkeypatch.setenv("OHLORA_BASE_MODELS", "memory=/models/only-on-the-training-host")
    monkeypatch.setenv("OHLORA_HOME", "")
    assert main(["models", "--home", str(tmp_path), "list"]) == 0
    assert f"no models yet under {tmp_path}" in capsys.readouterr().out
