"""`ohlora ethics ...`: the ethics gate's commands (their implementation is ohlora_assets/ethics_cli.py)."""

from __future__ import annotations

import argparse


def register(commands: argparse._SubParsersAction) -> None:
    ethics = commands.add_parser("ethics", help="the ethics gate: score a prompt and apply sanctions")
    ethics_commands = ethics.add_subparsers(dest="ethics_command", required=True, metavar="COMMAND")
    check = ethics_commands.add_parser(
        "check", help="score a prompt, decide (allow, warn, block) and log any sanction; prints JSON",
        description="Score a user's prompt against the five ethics categories, decide whether to allow, warn "
        "or block, and record any sanction for that user. Prints one JSON object.",
    )
    check.add_argument("prompt", help="the user's message")
    check.add_argument("--user", required=True, help="user id the sanction log is kept under")
    check.add_argument(
        "--answer", default="",
        help="Oh-LoRA's answer to the prompt: a love or politics prompt is sanctioned only when the answer "
        "declined it (contains 미안 or 부담)",
    )
    check.add_argument("--model", metavar="DIR", help="sentence-transformers model (default: the serving ethics model)")
    check.add_argument("--log", metavar="FILE", help="sanction log, SQLite (default: OHLORA_HOME/ethics/sanctions.sqlite)")
    # Listed for `ohlora ethics --help`; cli.main hands `ethics check ...` to ethics_cli.main before parsing.
