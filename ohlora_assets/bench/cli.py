"""`ohlora bench NAME`: one subcommand per benchmark, each with only its own options, and `all`.

A benchmark's `run(args)` prints its details and returns its figure (a speed-up ratio or an
accuracy). A figure below its target is a result, not a failure: the command prints the miss and
exits 0; it exits 1 only when a benchmark could not run. `--json` prints one JSON object on stdout
(the details go to stderr).
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import json
import sys
from dataclasses import asdict, dataclass, field
from typing import Callable

from ohlora_assets.resources import PROJECT_ROOT


def quick_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--quick", action="store_true", help="small budgets: a check that it runs, not a measurement")


def seeds(text: str) -> list[int]:
    try:
        return [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, e.g. 42,7,1; got {text!r}") from None


def ethics_accuracy_options(parser: argparse.ArgumentParser) -> None:
    quick_option(parser)
    parser.add_argument(
        "--train", metavar="CSV",
        help="training prompts (type,user_prompt,category; rows with type=train; default: the original author's "
        "../shared/upstream/ethics_train_test_dataset.csv beside the project when it is there, else OHLORA_ETHICS_CSV)",
    )
    parser.add_argument("--test", metavar="CSV", help="test prompts (rows with type=test; default: the --train file)")
    parser.add_argument(
        "--seeds", type=seeds, metavar="N[,N...]",
        help="train once per seed (split, data order, dropout); the figure is the mean accuracy (default: 42)",
    )
    parser.add_argument(
        "--also-train", metavar="CSV", default=str(PROJECT_ROOT / "data" / "ethics_dataset.csv"),
        help="every row of this CSV is trained on too, whatever its type: the gate learns from all the labelled "
        "prompts we have (default: data/ethics_dataset.csv, our own writing; '' to train on --train alone)",
    )
    parser.add_argument(
        "--heldout", metavar="CSV", default=str(PROJECT_ROOT / "data" / "ethics_heldout.csv"),
        help="prompts written apart from both training files, scored too: accuracy and recall per category "
        "(default: data/ethics_heldout.csv)",
    )


@dataclass(frozen=True)
class Benchmark:
    name: str
    run: str  # "module:function": prints details, returns the figure
    target: float
    figure: str
    help: str
    options: Callable[[argparse.ArgumentParser], None] = field(default=quick_option)


BENCHMARKS: dict[str, Benchmark] = {
    b.name: b
    for b in (
        Benchmark(
            "training", "ohlora_assets.bench.training:run", 1.5, "training speed-up ratio",
            "LoRA training throughput end to end: our trainer vs TRL's SFTTrainer (completion-only loss, grouped by length)",
        ),
        Benchmark(
            "ethics-accuracy", "ohlora_assets.bench.ethics_accuracy:over_seeds", 0.95, "ethics gate test accuracy",
            "train the ethics model on one CSV's train rows and score another's test rows",
            ethics_accuracy_options,
        ),
        Benchmark(
            "ethics-throughput", "ohlora_assets.bench.ethics_throughput:run", 10.0, "ethics scoring throughput ratio",
            "ethics scoring speed: batched with cached category embeddings vs two encodes per pair",
        ),
        Benchmark(
            "generation", "ohlora_assets.bench.generation:run", 4.0, "generation speed-up ratio",
            "answer generation speed: batched with a shared prompt cache vs one generate call per answer",
        ),
    )
}


class BenchInputError(ValueError):
    """An input of a benchmark that the user can fix (a file, a missing category): one line, an ERROR row."""


def load(target: str) -> Callable:
    module, function = target.split(":")
    return getattr(importlib.import_module(module), function)


def default_args(benchmark: Benchmark, quick: bool) -> argparse.Namespace:
    """The options a benchmark gets inside `ohlora bench all`: its defaults, and --quick."""
    parser = argparse.ArgumentParser(add_help=False)
    benchmark.options(parser)
    return parser.parse_args(["--quick"] if quick else [])


def run_benchmark(args: argparse.Namespace) -> int:
    from ohlora_assets.bench.summary import run_one

    benchmark = BENCHMARKS[args.benchmark]
    with contextlib.redirect_stdout(sys.stderr) if args.json else contextlib.nullcontext():
        outcome = run_one(benchmark, args)
    if args.json:
        print(json.dumps(asdict(outcome), indent=2))
    elif outcome.error is None and not outcome.passed:
        print(f"target missed: {benchmark.figure} {outcome.value:.3f} < {benchmark.target:g}")
    return 1 if outcome.error else 0


def run_all(args: argparse.Namespace) -> int:
    from ohlora_assets.bench.summary import run

    return run(args)


def json_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print the result as one JSON object (details on stderr)")


def register(commands: argparse._SubParsersAction) -> None:
    bench = commands.add_parser(
        "bench", help="measure speed and accuracy against the targets in README.md",
        description="Run a benchmark. A missed target is reported, not an error: the exit status is 1 only "
        "when a benchmark could not run.",
    )
    benchmarks = bench.add_subparsers(dest="benchmark", required=True, metavar="BENCHMARK")
    for benchmark in BENCHMARKS.values():
        parser = benchmarks.add_parser(
            benchmark.name, help=benchmark.help,
            description=f"{benchmark.help[0].upper()}{benchmark.help[1:]}. Target: {benchmark.figure} >= {benchmark.target:g}.",
        )
        benchmark.options(parser)
        json_option(parser)
        parser.set_defaults(handler=run_benchmark)
    every = benchmarks.add_parser(
        "all", help="every benchmark, then one table against the targets (also saved under OHLORA_HOME/bench)",
        description="Run every benchmark with its default options, then print one table against the targets "
        "and save it as OHLORA_HOME/bench/summary.md and summary.json.",
    )
    quick_option(every)
    json_option(every)
    every.set_defaults(handler=run_all)
