"""The `ohlora` command: the ethics gate and the benchmarks.

Subcommands import their implementation lazily so that `ohlora --help` stays instant.
"""

from __future__ import annotations

import argparse
import importlib
import sys

# benchmark name -> "module:function"; each function takes the parsed args and returns its ratio.
BENCHMARKS = {
    "training": "ohlora_assets.bench.training:run",
    "ethics-accuracy": "ohlora_assets.bench.ethics_accuracy:run",
    "ethics-throughput": "ohlora_assets.bench.ethics_throughput:run",
    "generation": "ohlora_assets.bench.generation:run",
}


def _load(target: str):
    module, function = target.split(":")
    return getattr(importlib.import_module(module), function)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ohlora", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    bench = commands.add_parser("bench", help="run a benchmark; its last line is the ratio or accuracy")
    bench.add_argument("name", choices=[*BENCHMARKS, "all"])
    bench.add_argument("--train", help="ethics-accuracy: training CSV (type,user_prompt,category)")
    bench.add_argument("--test", help="ethics-accuracy: test CSV (defaults to --train's test rows)")
    bench.add_argument("--seed", type=int, help="ethics-accuracy: training seed (split, order, dropout; default 42)")
    bench.add_argument("--quick", action="store_true", help="smaller budgets, for a smoke run")

    ethics = commands.add_parser("ethics", help="the ethics gate")
    ethics_commands = ethics.add_subparsers(dest="ethics_command", required=True)
    check = ethics_commands.add_parser("check", help="score a prompt, decide, and log any sanction (JSON out)")
    check.add_argument("prompt")
    check.add_argument("--user", required=True, help="user id for the sanction log")
    check.add_argument("--answer", default="", help="the model's answer (love/politics block only on 미안/부담)")
    check.add_argument("--model", help="sentence-transformers directory (default: the materialized ethics model)")
    check.add_argument("--log", help="sanction log SQLite file (default: in the artifact folder)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "bench":
        if args.name == "all":
            return _load("ohlora_assets.bench.summary:run")(args)
        _load(BENCHMARKS[args.name])(args)
        return 0
    return _load("ohlora_assets.ethics_cli:check")(args)


if __name__ == "__main__":
    sys.exit(main())
