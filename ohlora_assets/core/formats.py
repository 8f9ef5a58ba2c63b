"""The exact training-text formats of Oh-LoRA v4, and parsers for the structured answers.

A training example is a (prompt, completion) pair. The prompt ends with ANSWER_MARK and is
exactly what generation sees at inference; the completion starts with a space, ends with the
task's end mark, and is what the loss counts (the trainer appends the tokenizer's EOS).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

import pandas as pd

ANSWER_MARK = "### 답변:"

EYES = ("작게", "보통", "크게", "아주 크게")
MOUTH = ("보통", "크게", "아주 크게")
POSE = ("없음", "보통", "많이")
DATA_TYPES = ("train", "train_msg", "valid", "valid_msg")

MEMORY_PATTERN = re.compile(r"\A\[[^\[\]:\n]+: [^\[\]\n]+\]\Z")  # \Z: `$` would let a final line break through
EYES_MOUTH_POSE_PATTERN = re.compile(r"\A\(눈 (?P<eyes>[^,()\n]+), 입 (?P<mouth>[^,()\n]+), 고개 돌림 (?P<pose>[^,()\n]+)\)\Z")
TIME_TAG_PATTERN = re.compile(r"\(지금은 [월화수목금토일]요일 (?:오전|오후|저녁)\)\s*")
MEMORY_PREFIX_PATTERN = re.compile(r"^\s*\[[^\[\]]*\]\s*")
SUMMARY_WRAPPER_PATTERN = re.compile(r"^\(오로라 답변 요약\).*?\(사용자 질문\)\s*")


@dataclass(frozen=True)
class TaskFormat:
    """How one task turns a dialogue row into a (prompt, completion) pair."""

    name: str
    prompt_template: str  # str.format over the row's columns; ends with ANSWER_MARK
    answer_column: str
    end_mark: str
    train_types: tuple[str, ...]
    valid_types: tuple[str, ...]
    prompt_columns: tuple[str, ...]

    def prompt(self, row: dict[str, str]) -> str:
        return self.prompt_template.format(**row)

    def completion(self, answer: str) -> str:
        return f" {answer} {self.end_mark}"

    def strip_answer(self, generated: str) -> str:
        """The answer text of a generated completion: everything before the end mark, trimmed."""
        return generated.split(self.end_mark, 1)[0].strip()


TASK_FORMATS: dict[str, TaskFormat] = {
    name: TaskFormat(name, f"{prompt} {ANSWER_MARK}", name, end_mark, train_types, valid_types, prompt_columns)
    for name, prompt, end_mark, train_types, valid_types, prompt_columns in (
        # task (= its answer column), prompt up to the answer mark, end mark, train/valid data types, prompt columns
        ("output_message", "{input_data} (답변 시작)", "(답변 종료)", ("train", "train_msg"), ("valid", "valid_msg"), ("input_data",)),
        ("summary", "{input_data} (오로라 답변) {output_message} (요약 시작)", "(요약 종료)", ("train",), ("valid",), ("input_data", "output_message")),
        ("memory", "{input_data} (요약 시작)", "(요약 종료)", ("train",), ("valid", "valid_msg"), ("input_data",)),
        ("eyes_mouth_pose", "{output_message} (표정 출력 시작)", "(표정 출력 종료)", ("train",), ("valid",), ("output_message",)),
    )
}
TASKS = tuple(TASK_FORMATS)
# The RAG-concept experiment's input_data: the retrieved concept, then the question (the original author's layout).
RAG_INPUT = "(제공된 정보) {concept} (사용자 질문) {question}"
_MARK = re.compile(r"\([^(){}]*\)")
# The marks the prompt formats write around the user's text: in a training cell, an end mark teaches the model to
# stop mid-answer and a start mark or `### 답변:` makes a prompt read as two.
FORMAT_MARKERS = tuple(dict.fromkeys(
    mark
    for fmt in TASK_FORMATS.values()
    for mark in (*_MARK.findall(fmt.prompt_template), fmt.end_mark, ANSWER_MARK)
))
RAG_MARKERS = (*FORMAT_MARKERS, *_MARK.findall(RAG_INPUT))


def eyes_mouth_pose_text(eyes: str, mouth: str, pose: str) -> str:
    return f"(눈 {eyes}, 입 {mouth}, 고개 돌림 {pose})"


def parse_eyes_mouth_pose(text: str) -> tuple[str, str, str] | None:
    """(eyes, mouth, pose) when `text` is a well-formed answer with allowed values, else None."""
    match = EYES_MOUTH_POSE_PATTERN.match(text.strip())
    if not match:
        return None
    eyes, mouth, pose = match["eyes"], match["mouth"], match["pose"]
    if eyes not in EYES or mouth not in MOUTH or pose not in POSE:
        return None
    return eyes, mouth, pose


def is_valid_memory(text: str) -> bool:
    """A memory answer is empty or one `[key: value]` item."""
    return text.strip() == "" or bool(MEMORY_PATTERN.match(text.strip()))


# Tasks whose answers have a structure beyond "some text"; the quality report rates their format validity.
STRUCTURED_TASKS = ("memory", "eyes_mouth_pose")
# Per task, whether a (terminated) answer is well formed.
ANSWER_VALIDATORS: dict[str, Callable[[str], bool]] = {
    "output_message": lambda answer: answer != "",
    "summary": lambda answer: answer != "",
    "memory": is_valid_memory,
    "eyes_mouth_pose": lambda answer: parse_eyes_mouth_pose(answer) is not None,
}


def core_question(input_data: str) -> str:
    """The user's own words: input_data without time tag, memory prefix or summary wrapper."""
    text = SUMMARY_WRAPPER_PATTERN.sub("", input_data)
    # The time tag goes first so that a memory prefix behind it becomes a prefix too.
    text = TIME_TAG_PATTERN.sub("", text)
    return MEMORY_PREFIX_PATTERN.sub("", text).strip()


_LEADING_TAG = re.compile(rf"\s*(?:{TIME_TAG_PATTERN.pattern}|\[[^\[\]]*\]\s*)")


def question_start(input_data: str) -> int:
    """Where the user's own words begin: after the summary wrapper, time tag and memory prefix in front of them
    (the parts a v4 prompt's format gives, which augmentation must leave as written)."""
    wrapper = SUMMARY_WRAPPER_PATTERN.match(input_data)
    position = wrapper.end() if wrapper else 0
    while (tag := _LEADING_TAG.match(input_data, position)) and tag.end() > position:
        position = tag.end()
    return position


SPLIT_COLUMNS = ["source_row", "prompt", "completion", "has_label"]


def task_split(dialogue: pd.DataFrame, task: str, split: str, input_data: pd.Series | None = None) -> pd.DataFrame:
    """The (prompt, completion) table of one task and split ("train" or "valid").

    Train rows always carry an answer. Valid rows are prompts; their completion is filled when the
    row happens to carry a sample answer (for validation loss), else "" with has_label False.
    `input_data` optionally replaces the column (the augmented variant of an epoch).
    """
    fmt = TASK_FORMATS[task]
    types = fmt.train_types if split == "train" else fmt.valid_types
    rows = dialogue[dialogue["data_type"].isin(types)]
    if input_data is not None:
        rows = rows.assign(input_data=input_data.loc[rows.index])
    # A prompt built from an empty column is no prompt (e.g. valid_msg rows have no output_message).
    rows = rows[(rows[list(fmt.prompt_columns)].apply(lambda column: column.str.strip()) != "").all(axis=1)]
    answers = rows[fmt.answer_column]
    # An empty memory on a train row is a real label: "nothing worth remembering".
    has_label = pd.Series(split == "train", index=rows.index) if task == "memory" else answers.str.strip() != ""
    records = rows.to_dict("records")
    return pd.DataFrame(
        {
            "source_row": rows.index.astype(int),
            "prompt": [fmt.prompt(r) for r in records],
            "completion": [fmt.completion(a) if label else "" for a, label in zip(answers, has_label)],
            "has_label": has_label.to_numpy(),
        },
        columns=SPLIT_COLUMNS,
    ).reset_index(drop=True)


Pairs = list[tuple[str, str]]


def _pairs(frame: pd.DataFrame) -> Pairs:
    return list(zip(frame["prompt"], frame["completion"]))


def training_pairs(
    split: pd.DataFrame, augmented: pd.DataFrame | None = None, train_rows: int | None = None, valid_rows: int | None = None
):
    """(train examples: a list of pairs, or a function of the epoch; labelled validation pairs; train row count).

    `split` is a `<task>_split` table; `augmented` (epoch, source_row, prompt, completion) gives one
    synonym-swapped variant per epoch, and with more epochs than variants epoch k trains on variant k % E.
    `train_rows`/`valid_rows` keep only the first rows (the smoke budget).
    """
    train = split[split["split"] == "train"].head(train_rows)
    valid = split[(split["split"] == "valid") & split["has_label"]].head(valid_rows)
    if augmented is None:
        return _pairs(train), _pairs(valid), len(train)
    augmented = augmented[augmented["source_row"].isin(train["source_row"])]
    variants = [_pairs(augmented[augmented["epoch"] == e]) for e in sorted(augmented["epoch"].unique())]
    return (lambda epoch: variants[epoch % len(variants)]), _pairs(valid), len(variants[0])
