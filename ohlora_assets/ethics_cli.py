"""`ohlora ethics check --user ID [--answer A] [--model DIR] [--log FILE] [--] PROMPT`: the gate users run.

Prints one JSON object on stdout, whatever the input: either the decision (the normalized prompt, the
five scores, allow, warn, block, or refused while a block is active, the sanctions logged this turn
and the end of any block) or {"error": ...}; only `--help` answers in text, for a person. Exit status: 0 a
decision was given, 1 the gate could not decide (model or sanction log missing or unusable, or the answer
could not be written to stdout), 2 usage error.

Any argument that is not an option is the prompt, so prompts that start with `-` (`-_-`, `-.-`) need
no quoting beyond the shell's; `--` ends the options for a prompt that is spelled like one. A user id
that starts with `-` is given as `--user=-_-`.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sqlite3
import sys
from collections.abc import Sequence
from pathlib import Path

from ohlora_assets.core.device import limit_torch_threads

EXIT_DECIDED, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


class UsageError(Exception):
    """The command line cannot be understood; the message says why."""


class GateFailure(Exception):
    """The gate cannot decide: its model or sanction log is missing or unusable; the message names which."""


class _JsonErrorParser(argparse.ArgumentParser):
    def error(self, message: str):  # argparse would print usage to stderr and exit; we answer in JSON
        raise UsageError(message)


def _parser() -> argparse.ArgumentParser:
    parser = _JsonErrorParser(
        prog="ohlora ethics check",
        description="Score a prompt, decide, and log any sanction; one JSON object on stdout.",
        allow_abbrev=False,  # `--us` is a prompt, not --user
    )
    parser.add_argument("prompt", nargs="?", help="the user's prompt (put -- before one that looks like an option)")
    # Each option once: a second --user would otherwise silently log the turn under another id.
    parser.add_argument(
        "--user", required=True, action=_Once, help="user id for the sanction log (--user=ID if it starts with -)"
    )
    parser.add_argument(
        "--answer", default="", action=_Once, help="the model's answer (love/politics block only on 미안/부담)"
    )
    parser.add_argument(
        "--model", action=_Once, help="sentence-transformers directory (default: the serving ethics model)"
    )
    parser.add_argument("--log", action=_Once, help="sanction log SQLite file (default: in the artifact folder)")
    return parser


class _Once(argparse.Action):
    def __call__(self, parser, namespace, values, option_string=None):
        if getattr(namespace, f"_{self.dest}_given", False):
            raise UsageError(f"{option_string} is given more than once")
        setattr(namespace, f"_{self.dest}_given", True)
        setattr(namespace, self.dest, values)


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    """The options, and as the prompt the one argument that is not an option (even if it starts with -).

    Raises UsageError. The user id is the sanction log's key (`user_key`: NFC, stripped, non-empty, valid
    UTF-8; argv bytes that are not arrive as surrogate escapes, and two such ids must not share one entry).
    """
    args, rest = _parser().parse_known_args(list(argv))
    if args.prompt is None and len(rest) == 1:
        args.prompt = rest.pop()  # argparse took it for an unknown option: `-_-`
    if rest:
        raise UsageError(
            f"unrecognized arguments: {' '.join(rest)} (quote a prompt of several words; "
            "put -- before a prompt that looks like an option)"
        )
    if args.prompt is None:
        raise UsageError("a prompt is required")
    from ohlora_assets.core.ethics.sanctions import user_key

    try:
        args.user = user_key(args.user)  # the log's own rule for an id, said of the option
    except ValueError as error:
        raise UsageError(f"--{error}") from None
    return args


def _serving_model(store) -> Path:
    """The serving version of ethics_sbert_model (core/registry.py); GateFailure saying how to serve one when
    nothing does."""
    from ohlora_assets.core.model_training import ETHICS_MODEL
    from ohlora_assets.core.registry import NOTHING_SERVES, ModelRegistry, RegistryError

    registry = ModelRegistry(store.path("models"), ETHICS_MODEL)
    try:
        path = registry.serving_path()
    except RegistryError as error:
        raise GateFailure(str(error)) from error
    if path is None:
        raise GateFailure(f"no ethics model serves under {registry.root}: {NOTHING_SERVES.format(model=ETHICS_MODEL)}")
    return path


def decide(args: argparse.Namespace):
    """The gate's Decision for the parsed arguments; raises GateFailure naming the unusable folder or file."""
    from ohlora_assets.core.ethics.gate import check_turn
    from ohlora_assets.core.ethics.sanctions import SanctionLog
    from ohlora_assets.core.ethics.scoring import EthicsModelError, EthicsScorer
    from ohlora_assets.cli import COMMAND_SETTINGS
    from ohlora_assets.core.settings import SettingsError
    from ohlora_assets.resources import ArtifactStore, ModelProfile, check_settings

    try:
        check_settings(COMMAND_SETTINGS)
    except SettingsError as error:
        raise GateFailure(str(error)) from error
    limit_torch_threads()
    store = ArtifactStore.from_env()
    model_dir = Path(args.model) if args.model else _serving_model(store)
    log_path = Path(args.log) if args.log else store.path("ethics", "sanctions.sqlite")
    try:
        profile = ModelProfile.from_env()
        scorer = EthicsScorer.load(model_dir, device=profile.device, trust_remote_code=profile.trust_remote_code)
        return check_turn(scorer, SanctionLog(log_path), args.user, args.prompt, args.answer)
    except EthicsModelError as error:  # names the folder: missing, damaged, or giving non-finite scores
        raise GateFailure(str(error)) from error
    except (sqlite3.Error, OSError) as error:
        raise GateFailure(f"{log_path}: the sanction log cannot be used ({type(error).__name__}: {error})") from error


def _print_json(payload: dict) -> bool:
    """UTF-8 whatever the locale; an undecodable argument echoed in a message comes out as a JSON \\u escape.
    False when stdout is closed or full: the caller cannot be told, and the exit status says so."""
    text = json.dumps(payload, ensure_ascii=False, indent=2, allow_nan=False) + "\n"
    try:
        sys.stdout.flush()
        sys.stdout.buffer.write(text.encode("utf-8", "backslashreplace"))
        sys.stdout.buffer.flush()
    except (AttributeError, OSError, ValueError) as error:  # AttributeError: no stdout at all (`>&-`)
        with contextlib.suppress(AttributeError, OSError, ValueError):
            sys.stderr.write(f"ohlora ethics check: the answer could not be written to stdout ({error})\n")
        return False
    return True


def main(argv: Sequence[str] | None = None) -> int:
    """Run `ethics check` on `argv` (the arguments after `check`); always one JSON object on stdout."""
    try:
        args = parse_args(sys.argv[1:] if argv is None else argv)
    except UsageError as error:
        _print_json({"error": str(error), "usage": _parser().format_usage().strip()})
        return EXIT_USAGE
    try:
        decision = decide(args)
    except GateFailure as error:
        _print_json({"error": str(error)})
        return EXIT_FAILED
    except Exception as error:  # the gate answers in JSON, never with a traceback
        _print_json({"error": f"the gate failed: {type(error).__name__}: {error}"})
        return EXIT_FAILED
    return EXIT_DECIDED if _print_json(decision.to_json()) else EXIT_FAILED


if __name__ == "__main__":
    sys.exit(main())
