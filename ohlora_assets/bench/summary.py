"""`ohlora bench all`: every benchmark of `ohlora_assets.cli.BENCHMARKS`, then one summary table.

Each benchmark's `run(args)` prints its own details and returns its figure (a speed-up ratio or an
accuracy); this module runs them one after another (a benchmark that raises is reported as ERROR and
the others still run), then prints the figures against their targets with the machine they came
from, as plain text and as a Markdown table ready for README.md, and writes the same to
`<OHLORA_HOME>/bench/summary.{md,json}`. Exit status 0 only if every benchmark met its target.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import time
import traceback
from dataclasses import asdict, dataclass
from pathlib import Path

# name -> (target, what the figure is)
TARGETS: dict[str, tuple[float, str]] = {
    "training": (1.5, "training speed-up ratio"),
    "ethics-accuracy": (0.95, "ethics gate test accuracy"),
    "ethics-throughput": (10.0, "ethics scoring throughput ratio"),
    "generation": (4.0, "generation speed-up ratio"),
}


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
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
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


def run_one(name: str, target_ref: str, args: argparse.Namespace) -> Outcome:
    from ohlora_assets.cli import _load

    target = TARGETS.get(name, (None, ""))[0]
    started = time.monotonic()
    print(f"\n=== ohlora bench {name}{' --quick' if getattr(args, 'quick', False) else ''} ===", flush=True)
    try:
        value = float(_load(target_ref)(argparse.Namespace(**{**vars(args), "name": name})))
    except Exception as err:  # noqa: BLE001 - one broken benchmark must not hide the others
        traceback.print_exc()
        return Outcome(name, None, target, False, time.monotonic() - started, f"{type(err).__name__}: {err}")
    passed = target is None or value >= target
    return Outcome(name, value, target, passed, time.monotonic() - started)


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
    from ohlora_assets.cli import BENCHMARKS

    quick = bool(getattr(args, "quick", False))
    outcomes = [run_one(name, ref, args) for name, ref in BENCHMARKS.items()]
    where = machine()
    when = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")

    print(f"\n=== ohlora bench all: summary ({when}) ===")
    print(f"machine: {where}{'  [--quick]' if quick else ''}")
    print(table(outcomes))
    for o in outcomes:
        if o.error:
            print(f"  {o.name}: {o.error}")
    md = markdown(outcomes, where, quick, when)
    print("\nMarkdown for README.md:\n")
    print(md)

    out_dir = Path(os.environ.get("OHLORA_HOME", Path.cwd() / ".ohlora")) / "bench"
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / "summary.md").write_text(md + "\n", encoding="utf-8")
        (out_dir / "summary.json").write_text(
            json.dumps(
                {"when": when, "machine": where, "quick": quick, "results": [asdict(o) for o in outcomes]},
                indent=2,
            ),
            encoding="utf-8",
        )
        print(f"\nwritten: {out_dir / 'summary.md'}, {out_dir / 'summary.json'}")
    except OSError as err:
        print(f"\n(could not write {out_dir}: {err})")
    return 0 if all(o.passed and o.error is None for o in outcomes) else 1
