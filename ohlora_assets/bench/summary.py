"""`ohlora bench all`: every benchmark of `ohlora_assets.bench.cli.BENCHMARKS` (looked up when it runs), then one summary table.

Each benchmark's `run(args)` prints its own details and returns its figure (a speed-up ratio or an
accuracy); this module runs them one after another with their default options (a benchmark that
raises is reported as ERROR and the others still run), then prints the figures against their targets
with the machine they came from, as plain text and as a Markdown table ready for README.md, and
writes the same to `<OHLORA_HOME>/bench/summary.{md,json}`. Exit status 0 when every benchmark ran,
whether or not it met its target (the table says which missed); 1 when one could not run.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import platform
import sys
import time
import traceback
from dataclasses import asdict, dataclass
from pathlib import Path

from ohlora_assets.bench import cli
from ohlora_assets.bench.cli import Benchmark, BenchInputError, default_args, load
from ohlora_assets.core.settings import SettingsError
from ohlora_assets.core.device import usable_cores
from ohlora_assets.resources import ArtifactStore

@dataclass
class Outcome:
    name: str
    value: float | None
    target: float | None
    passed: bool
    seconds: float
    error: str | None = None

    @property
    def status(self) -> str:
        if self.error is not None:
            return "ERROR"
        if self.target is None:
            return "n/a"
        return "pass" if self.passed else "FAIL"


def machine() -> str:
    """One line naming the machine: CPU model and cores, memory, accelerator."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    cores = usable_cores()
    memory = ""
    try:
        kib = int(next(l for l in Path("/proc/meminfo").read_text().splitlines() if l.startswith("MemTotal")).split()[1])
        memory = f", {kib / 1024 / 1024:.0f} GiB RAM"
    except (OSError, StopIteration, ValueError):
        pass
    accelerator = "no GPU"
    try:
        import torch

        if torch.cuda.is_available():
            accelerator = f"GPU {torch.cuda.get_device_name(0)}"
        accelerator += f", torch {torch.__version__}"
    except Exception:  # noqa: BLE001 - describing the machine must never fail the benchmark
        pass
    return f"{cpu}, {cores} cores{memory}, {accelerator}, {platform.system()} {platform.release()}"


def run_one(benchmark: Benchmark, args: argparse.Namespace) -> Outcome:
    started = time.monotonic()
    print(f"\n=== ohlora bench {benchmark.name}{' --quick' if getattr(args, 'quick', False) else ''} ===", flush=True)
    try:
        value = float(load(benchmark.run)(args))
    except (BenchInputError, SettingsError) as err:  # the user's to fix: the file or setting named, no traceback
        print(f"ohlora bench {benchmark.name}: {err}", file=sys.stderr)
        return Outcome(benchmark.name, None, benchmark.target, False, time.monotonic() - started, str(err))
    except Exception as err:  # noqa: BLE001 - one broken benchmark must not hide the others
        traceback.print_exc()
        return Outcome(benchmark.name, None, benchmark.target, False, time.monotonic() - started, f"{type(err).__name__}: {err}")
    return Outcome(benchmark.name, value, benchmark.target, value >= benchmark.target, time.monotonic() - started)


def _value(outcome: Outcome) -> str:
    return "-" if outcome.value is None else f"{outcome.value:.3f}"


def table(outcomes: list[Outcome]) -> str:
    rows = [("benchmark", "value", "target", "result", "time")]
    rows += [
        (o.name, _value(o), "-" if o.target is None else f">= {o.target:g}", o.status, f"{o.seconds:.0f}s")
        for o in outcomes
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row)).rstrip() for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def markdown(outcomes: list[Outcome], where: str, quick: bool, when: str) -> str:
    lines = [
        f"Measured {when} on {where}{' (--quick budgets)' if quick else ''}:",
        "",
        "| benchmark | value | target | result |",
        "| --- | ---: | ---: | --- |",
    ]
    for o in outcomes:
        target = "-" if o.target is None else f"≥ {o.target:g}"
        lines.append(f"| `{o.name}` | {_value(o)} | {target} | {o.status} |")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    quick = bool(args.quick)
    with contextlib.redirect_stdout(sys.stderr) if args.json else contextlib.nullcontext():
        outcomes = [run_one(benchmark, default_args(benchmark, quick)) for benchmark in cli.BENCHMARKS.values()]
        where = machine()
        when = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
        summary = {"when": when, "machine": where, "quick": quick, "results": [asdict(o) for o in outcomes]}

        print(f"\n=== ohlora bench all: summary ({when}) ===")
        print(f"machine: {where}{'  [--quick]' if quick else ''}")
        print(table(outcomes))
        for o in outcomes:
            if o.error:
                print(f"  {o.name}: could not run: {o.error}")
            elif not o.passed:
                print(f"  {o.name}: target missed ({_value(o)} < {o.target:g})")
        md = markdown(outcomes, where, quick, when)
        print("\nMarkdown for README.md:\n")
        print(md)

        out_dir = ArtifactStore.from_env().path("bench")
        try:
            out_dir.mkdir(parents=True, exist_ok=True)
            (out_dir / "summary.md").write_text(md + "\n", encoding="utf-8")
            (out_dir / "summary.json").write_text(json.dumps(summary, indent=2), encoding="utf-8")
            print(f"\nwritten: {out_dir / 'summary.md'}, {out_dir / 'summary.json'}")
        except OSError as err:
            print(f"\n(could not write {out_dir}: {err})")
    if args.json:
        print(json.dumps(summary, indent=2))
    return 1 if any(o.error for o in outcomes) else 0
