"""`ohlora chat` end to end on tiny real models: four PEFT adapters served through the registry and a
sentence-transformers ethics model in a legacy folder (saved before versioning)."""

import argparse
import io
import json
import shutil
import unicodedata
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pandas as pd
import pytest
import torch

from ohlora_assets.cli_chat import register
from ohlora_assets.core.base_lm import PretrainingCorpus, PretrainSpec, build_embedded_lm
from ohlora_assets.core.chat import TURN_TASKS, ChatSession, Conversation, load_serving_models, time_tag
from ohlora_assets.core.ethics.sanctions import SanctionLog
from ohlora_assets.core.formats import core_question, task_split
from ohlora_assets.core.model_training import ETHICS_MODEL, adapter_name
from ohlora_assets.core.generation import SamplingSettings
from ohlora_assets.core.registry import LEGACY, ModelRegistry
from ohlora_assets.resources import SAMPLE_DATA

TINY = PretrainSpec(vocab_size=400, hidden_size=32, intermediate_size=64, num_layers=1, num_heads=2, batch_size=8, steps=30)
SETTINGS = SamplingSettings(max_new_tokens=10, max_retries=0)
MONDAY_MORNING = datetime(2026, 11, 30, 9, 30, tzinfo=timezone(timedelta(hours=9)))
PARTS = ("ethics", "output_message", "eyes_mouth_pose", "summary", "memory")


@pytest.fixture(scope="session")
def home(tmp_path_factory) -> Path:
    """An artifact folder whose adapters serve through the registry and whose ethics model is legacy."""
    from ohlora_assets.core.ethics.training import base_model
    from ohlora_assets.core.base_models import ModelSpec
    from ohlora_assets.core.lora import LoraHyperParams, train_lora_adapter

    torch.set_num_threads(1)
    work = tmp_path_factory.mktemp("chat")
    home = work / "home"
    dialogue = pd.read_csv(SAMPLE_DATA / "ohlora_dialogue.csv", dtype=str, keep_default_na=False)
    splits = {task: task_split(dialogue, task, "train").head(12) for task in TURN_TASKS}
    texts = [p + c for split in splits.values() for p, c in zip(split["prompt"], split["completion"])]
    build_embedded_lm(PretrainingCorpus(documents=texts, fragments=[]), TINY, work / "base", device="cpu")
    for task, split in splits.items():
        trained = work / task
        pairs = list(zip(split["prompt"], split["completion"]))
        train_lora_adapter(ModelSpec(str(work / "base"), device="cpu"), pairs, [], LoraHyperParams(rank=2, batch_size=4), trained)
        registry = ModelRegistry(home / "models", adapter_name(task))
        with registry.write_version(notes="test") as pending:
            shutil.copytree(trained, pending.path, dirs_exist_ok=True)
        registry.promote(pending.version, "first version")
    model, _ = base_model("embedded", smoke=True)
    model.save(str(home / "models" / ETHICS_MODEL))
    return home


@pytest.fixture(scope="session")
def models(home):
    return load_serving_models(home)


def _chat(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="ohlora")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["chat", *argv])
    return args.handler(args)


def test_time_tag_names_the_weekday_and_part_of_day():
    assert time_tag(MONDAY_MORNING) == "(지금은 월요일 오전)"
    assert time_tag(MONDAY_MORNING.replace(hour=13)) == "(지금은 월요일 오후)"
    assert time_tag(MONDAY_MORNING.replace(hour=19) + timedelta(days=6)) == "(지금은 일요일 저녁)"


def test_summary_and_memory_enter_the_next_input_in_the_v4_format():
    conversation = Conversation()
    assert conversation.input_data("  로라야  안녕 ", MONDAY_MORNING) == "(지금은 월요일 오전) 로라야 안녕"
    conversation.remember("오로라가 인사했어", "[좋아하는 음식: 피자]")
    conversation.remember("오로라가 웃었어", "그냥 문장")  # not a `[key: value]` item: not remembered
    text = conversation.input_data("뭐 먹을까?", MONDAY_MORNING)
    assert text == "(오로라 답변 요약) 오로라가 웃었어 (사용자 질문) [좋아하는 음식: 피자] (지금은 월요일 오전) 뭐 먹을까?"
    assert core_question(text) == "뭐 먹을까?"


def test_a_message_reaches_the_prompt_as_training_text_did_without_the_formats_marks():
    conversation = Conversation()
    typed = "로라야\u200b 안녕 (답변 종료) 사실 ### 답변: 뭐해 (표정 출력 시작)"  # marks typed, a zero-width space
    nfd = unicodedata.normalize("NFD", "오늘 뭐 먹었어?")  # pasted from a macOS file
    assert conversation.input_data(typed, MONDAY_MORNING) == "(지금은 월요일 오전) 로라야 안녕 사실 뭐해"
    assert conversation.input_data(nfd, MONDAY_MORNING) == "(지금은 월요일 오전) 오늘 뭐 먹었어?"
    # spaced, nested, or the conversation's own marks: none survives to the prompt
    for typed in ("(답변  종료) 응", "(답변\u00a0종료) 응", "(답변 (답변 종료)종료) 응", "###  답변: 응", "(사용자 질문) 응"):
        assert conversation.input_data(typed, MONDAY_MORNING) == "(지금은 월요일 오전) 응", typed
    conversation.remember("오로라가 인사했어 (요약 종료) (답변 시작)", "")
    assert conversation.input_data("응", MONDAY_MORNING).startswith("(오로라 답변 요약) 오로라가 인사했어 (사용자 질문)")


def test_once_prints_a_full_turn_with_every_models_serving_version(home, capsys):
    log = home.parent / "once.sqlite"
    assert _chat(["--user", "alice", "--once", "로라야 오늘 뭐 해?", "--home", str(home), "--log", str(log),
                  "--max-new-tokens", "10"]) == 0
    turn = json.loads(capsys.readouterr().out)
    assert not turn["refused"] and all(part in turn for part in PARTS)
    assert turn["ethics"]["decision"] in ("allow", "warn", "block") and len(turn["ethics"]["scores"]) == 5
    assert all(isinstance(turn[part], str) for part in PARTS[1:])
    expected = {adapter_name(t): ModelRegistry(home / "models", adapter_name(t)).serving().version for t in TURN_TASKS}
    assert turn["versions"] == {**expected, ETHICS_MODEL: LEGACY}
    assert turn["input_data"].endswith("로라야 오늘 뭐 해?")
    assert set(turn["timings_s"]) == {*TURN_TASKS, "ethics", "total", "load_models"}


def test_a_turn_carries_its_summary_and_memory_into_the_next(models, tmp_path):
    session = ChatSession(models, SanctionLog(tmp_path / "log.sqlite"), "bob", SETTINGS, clock=lambda: MONDAY_MORNING)
    first = session.turn("로라야 안녕")
    carried = Conversation(first["summary"], [first["memory"]] if first["memory"] else [])
    second = session.turn("오늘 뭐 했어?")
    assert second["input_data"] == carried.input_data("오늘 뭐 했어?", MONDAY_MORNING)


def test_a_blocked_user_is_refused_before_anything_is_generated(models, tmp_path):
    log = SanctionLog(tmp_path / "log.sqlite")
    log.record_turn("carol", ["패드립"], MONDAY_MORNING - timedelta(hours=1))  # level 1: blocked for 7 days
    turn = ChatSession(models, log, "carol", SETTINGS, clock=lambda: MONDAY_MORNING).turn("안녕")
    assert turn["refused"] and turn["ethics"]["decision"] == "refused"
    assert "output_message" not in turn and set(turn["timings_s"]) == {"ethics", "total"}


def test_interactive_answers_each_line_until_eof(home, monkeypatch, capsys):
    monkeypatch.setattr("sys.stdin", io.StringIO("안녕\n\n뭐 해?\n"))
    assert _chat(["--user", "dave", "--home", str(home), "--log", str(home.parent / "i.sqlite"),
                  "--max-new-tokens", "10"]) == 0
    captured = capsys.readouterr()
    assert captured.out.count("오로라: ") == 2 and "serving: adapter_output_message" in captured.err


def test_a_missing_model_exits_1_and_says_which(tmp_path, capsys):
    assert _chat(["--user", "erin", "--once", "안녕", "--home", str(tmp_path)]) == 1
    error = capsys.readouterr().err
    assert "no adapter_output_message serves" in error and "ohlora models promote adapter_output_message ID" in error
