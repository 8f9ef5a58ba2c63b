"""`ohlora bench all`: runs every registered benchmark and summarizes them against their targets."""

import json

from ohlora_assets import cli
from ohlora_assets.bench import summary

CALLS = []


def fast_training(args):
    CALLS.append((args.name, args.quick))
    return 2.25


def slow_generation(args):
    CALLS.append((args.name, args.quick))
    return 3.5


def broken_accuracy(args):
    raise RuntimeError("no model")


def test_bench_all_runs_everything_and_prints_the_table(monkeypatch, tmp_path, capsys):
    here = __name__
    monkeypatch.setattr(
        cli,
        "BENCHMARKS",
        {
            "training": f"{here}:fast_training",
            "ethics-accuracy": f"{here}:broken_accuracy",
            "generation": f"{here}:slow_generation",
        },
    )
    monkeypatch.setenv("OHLORA_HOME", str(tmp_path))
    CALLS.clear()
    code = cli.main(["bench", "all", "--quick"])
    out = capsys.readouterr().out
    assert code == 1  # generation misses its target and ethics-accuracy broke
    assert CALLS == [("training", True), ("generation", True)]  # --quick passed through, the error did not stop the rest
    table = out.split("=== ohlora bench all: summary")[1]
    lines = {line.split()[0]: line.split() for line in table.splitlines() if line.split() and line.split()[0] in summary.TARGETS}
    assert lines["training"][1:5] == ["2.250", ">=", "1.5", "pass"]
    assert lines["generation"][1:5] == ["3.500", ">=", "4", "FAIL"]
    assert lines["ethics-accuracy"][1:5] == ["-", ">=", "0.95", "ERROR"]
    assert "machine:" in table and "cores" in table
    assert "| `training` | 2.250 | ≥ 1.5 | pass |" in (tmp_path / "bench" / "summary.md").read_text()
    saved = json.loads((tmp_path / "bench" / "summary.json").read_text())
    assert saved["quick"] is True and [r["name"] for r in saved["results"]] == ["training", "ethics-accuracy", "generation"]


def test_all_pass_exits_zero(monkeypatch, tmp_path, capsys):
    monkeypatch.setattr(cli, "BENCHMARKS", {"training": f"{__name__}:fast_training"})
    monkeypatch.setenv("OHLORA_HOME", str(tmp_path))
    assert cli.main(["bench", "all"]) == 0
    assert "pass" in capsys.readouterr().out


def test_every_registered_benchmark_has_a_target():
    assert set(cli.BENCHMARKS) == set(summary.TARGETS)
