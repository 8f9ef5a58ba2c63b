"""`ohlora chat --user ID [--once "문장"]`: talk to Oh-LoRA with the serving models (core/chat.py).

Interactive by default: one message per line on stdin until EOF, each answered as `오로라: ...` with the
expression. `--once TEXT` answers one message and prints the whole turn as JSON: the ethics decision, the
four generated parts, each model's serving version, and timings. Exit codes: 0 answered (a refusal is an
answer), 1 a model is missing, 2 usage.
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import sys
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add `chat` to the `ohlora` parser; it sets `handler` (args -> exit code)."""
    chat = subparsers.add_parser("chat", help="talk to Oh-LoRA with the serving models")
    chat.add_argument("--user", required=True, help="user id for the sanction log")
    chat.add_argument("--once", metavar="TEXT", help="answer one message and print the turn as JSON")
    chat.add_argument("--home", help="artifact folder (default: the pipeline's, OHLORA_HOME)")
    chat.add_argument("--log", help="sanction log SQLite file (default: <home>/ethics/sanctions.sqlite)")
    chat.add_argument("--device", type=_device_name,
                      help="cpu | cuda | cuda:N | auto (default: OHLORA_DEVICE, else auto: the GPU when there is one)")
    chat.add_argument("--max-new-tokens", type=int, default=80, help="per generated part")
    chat.set_defaults(handler=run)


def _device_name(value: str) -> str:
    from ohlora_assets.core.device import check_device_name

    try:
        return check_device_name(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r}: expected auto, cpu, cuda or cuda:N") from None


def _line(turn: dict) -> str:
    if turn["refused"]:
        return f"(차단 중: {turn['ethics']['blocked_until']}까지 대화할 수 없어요)"
    # The original showed "(읽씹)" (read, no reply) when no well-formed answer came.
    answer = "(읽씹)" if turn["gave_up"]["output_message"] else turn["output_message"]
    line = f"오로라: {answer}  {turn['eyes_mouth_pose']}"
    if turn["ethics"]["decision"] in ("warn", "block"):
        until = turn["ethics"]["blocked_until"]
        line += f"\n(경고: {', '.join(turn['ethics']['candidates'])})" + (f" 차단: {until}까지" if until else "")
    return line


def run(args: argparse.Namespace) -> int:
    from ohlora_assets.cli_models import artifact_home
    from ohlora_assets.core.chat import ChatError, ChatSession, load_serving_models
    from ohlora_assets.core.device import limit_torch_threads
    from ohlora_assets.core.ethics.sanctions import SanctionLog
    from ohlora_assets.core.generation import SamplingSettings
    from ohlora_assets.resources import ModelProfile

    from transformers.utils import logging as hf_logging

    limit_torch_threads()
    hf_logging.disable_progress_bar()  # "Loading weights" bars would interleave with the conversation
    home = artifact_home(args.home)
    try:
        profile = ModelProfile.from_env()
        models = load_serving_models(home, args.device or profile.device, profile.trust_remote_code)
    except ChatError as error:
        print(json.dumps({"error": str(error)}, ensure_ascii=False), file=sys.stderr)
        return 1
    log_path = Path(args.log) if args.log else home / "ethics" / "sanctions.sqlite"
    try:
        log = SanctionLog(log_path)
    except (sqlite3.Error, OSError) as error:
        print(json.dumps({"error": f"{log_path}: the sanction log cannot be used ({error})"}, ensure_ascii=False),
              file=sys.stderr)
        return 1
    session = ChatSession(models, log, args.user, SamplingSettings(max_new_tokens=args.max_new_tokens))
    if args.once is not None:
        turn = session.turn(args.once)
        turn["timings_s"]["load_models"] = models.load_s
        print(json.dumps(turn, ensure_ascii=False, indent=2))
        return 0
    versions = ", ".join(f"{name} {version}" for name, version in models.versions.items())
    print(f"(serving: {versions}; end with Ctrl-D)", file=sys.stderr)
    for message in sys.stdin:
        if message.strip():
            print(_line(session.turn(message.strip())), flush=True)
    return 0
