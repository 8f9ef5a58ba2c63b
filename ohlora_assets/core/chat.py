"""One Oh-LoRA turn with the serving models, as the original product ran it ("serve" in the lifecycle).

A turn: the ethics gate on the user's message (a user under an active block is refused before anything is
generated), the `output_message` answer, `eyes_mouth_pose` for that answer, the turn's `summary` and a
`memory` item; the ethics decision is taken with the answer, because love and politics prompts are only
sanctioned when the answer already declined. The summary and the latest memory item carry into the next
turn's input in the v4 input format (core/formats.py, DESIGN.md "Formats"):

    (오로라 답변 요약) {summary} (사용자 질문) [key: value] (지금은 X요일 오전|오후|저녁) {text}

the order of the parts in the v4 training data. The original picked the memory item to prefix by S-BERT
similarity to the question; we prefix the latest one.

Models are resolved through the registry (core/registry.py): each asset's serving version, else the legacy
folder of a model saved before versioning.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

from ohlora_assets.core.cell_text import clean_text
from ohlora_assets.core.formats import FORMAT_MARKERS, MEMORY_PATTERN, TASK_FORMATS, parse_eyes_mouth_pose
from ohlora_assets.core.generation import SamplingSettings
from ohlora_assets.core.model_training import ETHICS_MODEL, adapter_name
from ohlora_assets.core.registry import NOTHING_SERVES, ModelRegistry, RegistryError

# Generation order within a turn: each later prompt may use an earlier answer.
TURN_TASKS = ("output_message", "eyes_mouth_pose", "summary", "memory")
WEEKDAYS = "월화수목금토일"


class ChatError(RuntimeError):
    """A model the chat needs is not served, not present as a legacy folder, or cannot be loaded."""


def time_tag(moment: datetime) -> str:
    """`(지금은 X요일 오전|오후|저녁)` in the moment's own time zone (the user's clock)."""
    part = "오전" if moment.hour < 12 else "오후" if moment.hour < 18 else "저녁"
    return f"(지금은 {WEEKDAYS[moment.weekday()]}요일 {part})"


# The marks of the task formats and of the conversation's own input (the summary and the question it frames).
PROMPT_MARKS = (*FORMAT_MARKERS, "(오로라 답변 요약)", "(사용자 질문)")


def prompt_text(text: str) -> str:
    """Text for a prompt as the adapters were trained to read it: cleaned as the input files' cells are (NFC, no
    invisible characters), without the marks the prompt format writes (a user typing `(답변 종료)` or `### 답변:`, or
    a summary that generated one, would end or split the prompt there), on one line."""
    cleaned, before = " ".join(clean_text(text)[0].split()), None
    while cleaned != before:  # a mark split by another (`(답변 (답변 종료)종료)`) is whole once that one goes
        before = cleaned
        for mark in PROMPT_MARKS:
            cleaned = " ".join(cleaned.replace(mark, " ").split())
    return cleaned


@dataclass
class Conversation:
    """What one turn leaves for the next: the last summary and the memory items, oldest first."""

    summary: str = ""
    memories: list[str] = field(default_factory=list)

    def input_data(self, text: str, moment: datetime) -> str:
        parts = []
        if self.summary:
            parts.append(f"(오로라 답변 요약) {self.summary} (사용자 질문)")
        if self.memories:
            parts.append(self.memories[-1])
        parts += [time_tag(moment), prompt_text(text)]
        return " ".join(parts)

    def remember(self, summary: str, memory: str) -> None:
        self.summary = prompt_text(summary)
        if MEMORY_PATTERN.match(memory) and memory not in self.memories:
            self.memories.append(memory)


def resolve_serving(home: str | Path, name: str) -> tuple[Path, str]:
    """(directory to load, version label) of a model asset: the serving version, else its legacy folder."""
    registry = ModelRegistry(Path(home) / "models", name)
    try:
        path = registry.serving_path()
    except RegistryError as error:  # a damaged pointer or a missing version: named, not a traceback
        raise ChatError(str(error)) from error
    if path is None:
        raise ChatError(f"no {name} serves under {registry.root}: {NOTHING_SERVES.format(model=name)}")
    return path, registry.serving_label()


@dataclass
class ServingModels:
    adapters: dict[str, tuple[Any, Any]]  # task -> (model, tokenizer)
    scorer: Any  # core.ethics.scoring.EthicsScorer
    versions: dict[str, str]  # asset name -> version id or "legacy"
    load_s: float = 0.0


def load_serving_models(home: str | Path, device: str = "cpu", trust_remote_code: bool = False) -> ServingModels:
    """The four serving adapters (LoRA merged into the base for speed) and the serving ethics model."""
    from ohlora_assets.core.ethics.scoring import EthicsModelError, EthicsScorer
    from ohlora_assets.core.generation import merged_for_inference
    from ohlora_assets.core.lora import load_adapter

    started = time.perf_counter()
    versions: dict[str, str] = {}
    adapters = {}
    for task in TURN_TASKS:
        path, versions[adapter_name(task)] = resolve_serving(home, adapter_name(task))
        model, tokenizer = load_adapter(path, device, trust_remote_code)
        adapters[task] = (merged_for_inference(model), tokenizer)
    path, versions[ETHICS_MODEL] = resolve_serving(home, ETHICS_MODEL)
    try:
        scorer = EthicsScorer.load(path, device=device, trust_remote_code=trust_remote_code)
    except EthicsModelError as error:
        raise ChatError(str(error)) from error
    return ServingModels(adapters, scorer, versions, time.perf_counter() - started)


def _now() -> datetime:
    return datetime.now(timezone.utc).astimezone()


class ChatSession:
    """The conversation of one user with the serving models; `turn` answers one message as a JSON-ready dict."""

    def __init__(self, models: ServingModels, sanctions, user: str,
                 settings: SamplingSettings = SamplingSettings(), clock: Callable[[], datetime] = _now):
        self.models = models
        self.sanctions = sanctions  # core.ethics.sanctions.SanctionLog
        self.user = user
        self.settings = settings
        self.clock = clock
        self.conversation = Conversation()
        self.turns = 0

    def _generate(self, task: str, row: dict[str, str]) -> tuple[str, bool]:
        from dataclasses import replace

        from ohlora_assets.core.generation import generate_answers

        model, tokenizer = self.models.adapters[task]
        prompt = TASK_FORMATS[task].prompt(row)
        # A seed per turn: the same message later in a conversation need not get the same answer.
        run = generate_answers(model, tokenizer, [prompt], task, 1, replace(self.settings, seed=self.turns))
        answer = run.answers[0]
        return answer.answer, answer.gave_up

    def turn(self, text: str) -> dict[str, Any]:
        from ohlora_assets.core.ethics.gate import check_turn

        started = time.perf_counter()
        moment = self.clock()
        self.turns += 1
        input_data = self.conversation.input_data(text, moment)
        result: dict[str, Any] = {
            "user": self.user,
            "message": text,
            "input_data": input_data,
            "versions": dict(self.models.versions),
        }
        timings: dict[str, float] = {}
        # A turn with no block candidates logs nothing: it only asks whether a block is running.
        if self.sanctions.record_turn(self.user, [], moment).refused_until is not None:
            tick = time.perf_counter()
            decision = check_turn(self.models.scorer, self.sanctions, self.user, text, "", moment)
            timings["ethics"] = time.perf_counter() - tick
            return {**result, "refused": True, "ethics": decision.to_json(),
                    "timings_s": {**timings, "total": time.perf_counter() - started}}

        row = {"input_data": input_data}
        gave_up = {}
        for task in TURN_TASKS:
            tick = time.perf_counter()
            row[TASK_FORMATS[task].answer_column], gave_up[task] = self._generate(task, row)
            timings[task] = time.perf_counter() - tick
        tick = time.perf_counter()
        decision = check_turn(self.models.scorer, self.sanctions, self.user, text, row["output_message"], moment)
        timings["ethics"] = time.perf_counter() - tick
        memory = row["memory"] if not gave_up["memory"] else ""
        summary = row["summary"] if not gave_up["summary"] else ""
        self.conversation.remember(summary, memory)
        parsed = parse_eyes_mouth_pose(row["eyes_mouth_pose"])
        return {
            **result,
            "refused": False,
            "ethics": decision.to_json(),
            "output_message": row["output_message"],
            "eyes_mouth_pose": row["eyes_mouth_pose"],
            "eyes_mouth_pose_parsed": dict(zip(("eyes", "mouth", "pose"), parsed)) if parsed else None,
            "summary": summary,
            "memory": memory,
            "gave_up": gave_up,
            "timings_s": {**timings, "total": time.perf_counter() - started},
        }
