"""The `ohlora` command: chat, the ethics gate, model versions and the benchmarks.

Each command group lives in its own module with `register(subparsers)`, which adds its parsers and
sets `handler`: a function of the parsed arguments returning the exit status. Registering a group is
one line in `COMMAND_MODULES`. Registration imports no torch, so `ohlora --help` stays instant.

Exit status: 0 success, 1 failure, 2 a usage error (argparse's own).
"""

from __future__ import annotations

import argparse
import importlib
import sys
from importlib.metadata import PackageNotFoundError, version

COMMAND_MODULES = (
    "ohlora_assets.cli_ethics",
    "ohlora_assets.cli_chat",
    "ohlora_assets.cli_models",
    "ohlora_assets.bench.cli",
)

EXIT_OK, EXIT_FAILURE = 0, 1  # 2 is argparse's, for usage errors only
# The settings the commands read (chat, the gate, models, bench).
COMMAND_SETTINGS = ("OHLORA_HOME", "OHLORA_DEVICE", "OHLORA_TORCH_THREADS", "OHLORA_SMOKE", "OHLORA_TRUST_REMOTE_CODE")

DESCRIPTION = """Oh-LoRA from the command line: chat with the serving models, check a prompt with the ethics gate,
list, promote and roll back model versions, run the benchmarks.
Settings come from the same environment variables as the pipeline (OHLORA_HOME, OHLORA_DEVICE,
OHLORA_TORCH_THREADS, ...; see README.md), checked before any command runs."""


def _version() -> str:
    try:
        return version("ohlora-assets")
    except PackageNotFoundError:  # running from a source tree that was never installed
        return "unknown (not installed)"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ohlora", description=DESCRIPTION)
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module in COMMAND_MODULES:
        importlib.import_module(module).register(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:2] == ["ethics", "check"]:
        # The gate parses its own arguments (a prompt may start with `-`) and answers in JSON, usage errors too.
        from ohlora_assets.ethics_cli import main as ethics_check

        return ethics_check(argv[2:])
    from ohlora_assets.core.settings import SettingsError

    args = build_parser().parse_args(argv)
    try:
        from ohlora_assets.resources import check_settings

        # what the commands read, all at once before a command half-runs (not the training's base overrides,
        # whose folders may live on another machine); --home replaces OHLORA_HOME
        check_settings([v for v in COMMAND_SETTINGS if not (v == "OHLORA_HOME" and getattr(args, "home", None))])
        status = args.handler(args)
    except SettingsError as error:  # a mistyped environment variable: its name and the fix, not a traceback
        print(f"ohlora: {error}", file=sys.stderr)
        return EXIT_FAILURE
    # A handler's non-zero status is a failure whatever its number: 2 stays reserved for usage errors.
    return EXIT_OK if status == 0 else EXIT_FAILURE


if __name__ == "__main__":
    sys.exit(main())
