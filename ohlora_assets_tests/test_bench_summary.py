"""`ohlora bench all` and `ohlora bench NAME`: every registered benchmark against its target.

The benchmarks themselves are replaced by fast functions of this module (registered the way the real
ones are, as "module:function"); what is tested is the command: options, table, files, exit status.
"""

import dataclasses
import json

import pytest

from ohlora_assets import cli
from ohlora_assets.bench import cli as bench_cli

CALLS = []


def fast_training(args):
    CALLS.append(("training", args.quick))
    return 2.25


def slow_generation(args):
    CALLS.append(("generation", args.quick))
    print("generation details")
    return 3.5


def broken_accuracy(args):
    CALLS.append(("ethics-accuracy", args.seeds))
    raise RuntimeError("no model")


@pytest.fixture
def fake_benchmarks(monkeypatch, tmp_path):
    real = bench_cli.BENCHMARKS
    fakes = {"training": "fast_training", "ethics-accuracy": "broken_accuracy", "generation": "slow_generation"}
    monkeypatch.setattr(
        bench_cli, "BENCHMARKS",
        {name: dataclasses.replace(real[name], run=f"{__name__}:{function}") for name, function in fakes.items()},
    )
    monkeypatch.setenv("OHLORA_HOME", str(tmp_path))
    CALLS.clear()
    return tmp_path


def test_bench_all_runs_everything_reports_misses_and_fails_only_on_errors(fake_benchmarks, capsys):
    code = cli.main(["bench", "all", "--quick"])
    out = capsys.readouterr().out
    assert code == 1  # ethics-accuracy could not run
    # --quick passed through, each benchmark got its own defaults, the error did not stop the rest
    assert CALLS == [("training", True), ("ethics-accuracy", None), ("generation", True)]
    table = out.split("=== ohlora bench all: summary")[1]
    lines = {line.split()[0]: line.split() for line in table.splitlines() if line.split() and line.split()[0] in bench_cli.BENCHMARKS}
    assert lines["training"][1:5] == ["2.250", ">=", "1.5", "pass"]
    assert lines["generation"][1:5] == ["3.500", ">=", "4", "FAIL"]
    assert lines["ethics-accuracy"][1:5] == ["-", ">=", "0.95", "ERROR"]
    assert "generation: target missed (3.500 < 4)" in table
    assert "ethics-accuracy: could not run: RuntimeError: no model" in table
    assert "machine:" in table and "cores" in table
    assert "| `training` | 2.250 | ≥ 1.5 | pass |" in (fake_benchmarks / "bench" / "summary.md").read_text()
    saved = json.loads((fake_benchmarks / "bench" / "summary.json").read_text())
    assert saved["quick"] is True and [r["name"] for r in saved["results"]] == ["training", "ethics-accuracy", "generation"]


def test_a_missed_target_is_a_result_not_a_failure(fake_benchmarks, monkeypatch, capsys):
    monkeypatch.delitem(bench_cli.BENCHMARKS, "ethics-accuracy")
    assert cli.main(["bench", "all"]) == 0
    assert "generation: target missed" in capsys.readouterr().out
    assert cli.main(["bench", "generation"]) == 0
    assert "target missed: generation speed-up ratio 3.500 < 4" in capsys.readouterr().out


def test_one_benchmark_as_json_keeps_stdout_parseable(fake_benchmarks, capsys):
    assert cli.main(["bench", "generation", "--json"]) == 0
    captured = capsys.readouterr()
    result = json.loads(captured.out)
    assert result["name"] == "generation" and result["value"] == 3.5 and result["passed"] is False
    assert "generation details" in captured.err


def test_bench_all_as_json(fake_benchmarks, capsys):
    assert cli.main(["bench", "all", "--json"]) == 1
    summary = json.loads(capsys.readouterr().out)
    assert {r["name"]: r["error"] for r in summary["results"]}["ethics-accuracy"] == "RuntimeError: no model"


def test_a_benchmark_that_cannot_run_exits_1(fake_benchmarks, capsys):
    assert cli.main(["bench", "ethics-accuracy", "--seeds", "42,7"]) == 1
    assert CALLS == [("ethics-accuracy", [42, 7])]
