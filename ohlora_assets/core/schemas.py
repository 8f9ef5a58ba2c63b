"""Schemas of the three input CSVs, reporting every failure as a located DataIssue with a fix.

Two kinds of rule: pandera checks for each row's values (every check has a name, and the column a
user fixes and the fix are looked up by that name), and whole-file rules for what no single row
shows (each task that trains has train rows, categories covered, duplicates after normalization).
The reader (core/input_files.py) has already normalized every cell to NFC without invisible
characters, so "empty" and "the same" mean what a person sees.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import pandas as pd
import pandera.pandas as pa

from ohlora_assets.core.ethics.categories import ETHICS_CATEGORIES
from ohlora_assets.core.formats import (
    DATA_TYPES,
    EYES,
    FORMAT_MARKERS,
    MEMORY_PATTERN,
    MOUTH,
    POSE,
    RAG_MARKERS,
    TASK_FORMATS,
    eyes_mouth_pose_text,
    task_split,
)
from ohlora_assets.core.data_issues import DataIssue, DataValidationError
from ohlora_assets.core.input_files import DEFAULT_MAX_CELL_CHARS, CsvTable, read_csv_strict
from ohlora_assets.core.quality import normalize


DIALOGUE_COLUMNS = [
    "data_type", "input_data", "output_message", "memory", "summary", "eyes_mouth_pose", "eyes", "mouth", "pose",
]
ETHICS_COLUMNS = ["type", "user_prompt", "category"]
ML_QA_COLUMNS = ["data_type", "user_question", "rag_retrieved_data", "output_message"]


#: A whole-file rule's finding: (spreadsheet row or None, column or None, problem, fix).
Finding = tuple[int | None, str | None, str, str]


@dataclass(frozen=True)
class CheckTarget:
    """Where a user fixes what a named pandera check reports: the column (None: the failing one) and how."""

    column: str | None
    fix: str


CHECK_TARGETS: dict[str, CheckTarget] = {}


def _check(name: str, test: Callable, problem: str, fix: str, column: str | None = None) -> pa.Check:
    CHECK_TARGETS[name] = CheckTarget(column, fix)
    return pa.Check(test, name=name, error=problem)


def _one_of(name: str, values: tuple[str, ...]) -> pa.Check:
    CHECK_TARGETS[name] = CheckTarget(None, "use one of the allowed values, spelled exactly")
    return pa.Check.isin(values, name=name)


def _not_blank(series: pd.Series) -> pd.Series:
    return series.str.strip() != ""


def _needed_on(data_types: tuple[str, ...], column: str, why: str = "") -> pa.Check:
    label = "/".join(data_types)
    return _check(
        f"{label}_needs_{column}",
        lambda frame: ~frame["data_type"].isin(data_types) | _not_blank(frame[column]),
        f"a {label} row needs {column}{why}",
        f"fill in {column}, or mark the row as valid",
        column,
    )


def _emp_agrees(frame: pd.DataFrame) -> pd.Series:
    parts_given = (frame[["eyes", "mouth", "pose"]] != "").any(axis=1) | (frame["eyes_mouth_pose"] != "")
    expected = [eyes_mouth_pose_text(e, m, p) for e, m, p in zip(frame["eyes"], frame["mouth"], frame["pose"])]
    return ~parts_given | (frame["eyes_mouth_pose"] == pd.Series(expected, index=frame.index))


def _filled(column: str) -> pa.Check:
    return _check(f"{column}_filled", _not_blank, f"{column} is empty (invisible characters do not count)",
                  f"write the {column}")


DIALOGUE_SCHEMA = pa.DataFrameSchema(
    {
        "data_type": pa.Column(str, _one_of("data_type_allowed", DATA_TYPES)),
        "input_data": pa.Column(str, _filled("input_data")),
        "output_message": pa.Column(str),
        "memory": pa.Column(
            str,
            _check(
                "memory_format",
                lambda s: (s == "") | s.str.match(MEMORY_PATTERN.pattern),
                "memory must be empty or one '[key: value]' item",
                "write it as [key: value], e.g. [사용자 전공: 경영학과], or leave it empty",
            ),
        ),
        "summary": pa.Column(str),
        "eyes_mouth_pose": pa.Column(str),
        "eyes": pa.Column(str, _one_of("eyes_allowed", EYES + ("",))),
        "mouth": pa.Column(str, _one_of("mouth_allowed", MOUTH + ("",))),
        "pose": pa.Column(str, _one_of("pose_allowed", POSE + ("",))),
    },
    checks=[
        _check(
            "eyes_mouth_pose_agrees",
            _emp_agrees,
            "eyes_mouth_pose disagrees with the eyes/mouth/pose columns",
            "make it read (눈 <eyes>, 입 <mouth>, 고개 돌림 <pose>) with this row's values",
            "eyes_mouth_pose",
        ),
        _needed_on(("train", "train_msg"), "output_message"),
        _needed_on(("train",), "summary"),
        _needed_on(("train",), "eyes_mouth_pose"),
    ],
    strict=False,
    coerce=False,
    name="ohlora_dialogue_v4",
)

ETHICS_SCHEMA = pa.DataFrameSchema(
    {
        "type": pa.Column(str, _one_of("type_allowed", ("train", "test"))),
        "user_prompt": pa.Column(str, _filled("user_prompt")),
        "category": pa.Column(str, _one_of("category_allowed", ETHICS_CATEGORIES)),
    },
    name="ohlora_ethics",
)

ML_QA_SCHEMA = pa.DataFrameSchema(
    {
        "data_type": pa.Column(str, _one_of("ml_qa_data_type_allowed", ("train", "valid"))),
        "user_question": pa.Column(str, _filled("user_question")),
        "rag_retrieved_data": pa.Column(str, _filled("rag_retrieved_data")),
        "output_message": pa.Column(str),
    },
    checks=[_needed_on(("train",), "output_message", " (the reference answer)")],
    name="ohlora_ml_qa",
)


# --- whole-file rules ----------------------------------------------------------------------------


def _spacing_normalized(series: pd.Series) -> pd.Series:
    return series.str.split().str.join(" ")


def _duplicates(frame: pd.DataFrame, split: pd.Series, within: list[str], across: str) -> list[Finding]:
    """Rows repeating an earlier row of their split (on `within`), and non-train rows whose `across`
    text is also in train: both compared after NFC (done by the reader) and spacing normalization."""
    findings: list[Finding] = []
    keys = frame[within].apply(_spacing_normalized).assign(_split=split)
    first_row: dict[tuple, int] = {}
    for row, key in zip(frame.index, keys.itertuples(index=False, name=None)):
        if key in first_row:
            findings.append((row, within[0], f"repeats row {first_row[key]} of the same split ({key[-1]})",
                             "delete one of the two rows"))
        else:
            first_row[key] = row
    text = _spacing_normalized(frame[across])
    train_row = {t: r for r, t in zip(frame.index[split == "train"][::-1], text[split == "train"][::-1])}
    for row, value, part in zip(frame.index, text, split):
        if part != "train" and value in train_row:
            problem = f"the same {across} is in both train and {part} (train row {train_row[value]})"
            findings.append((row, across, problem,
                             "keep it in one split: an evaluation on training text measures memory"))
    return findings


def _dialogue_rules(frame: pd.DataFrame) -> list[Finding]:
    findings: list[Finding] = []
    types = set(frame["data_type"])
    if not types & {"train", "train_msg"}:
        findings.append((None, "data_type", "there are no train or train_msg rows: no adapter has anything to "
                         "learn from", "mark the training rows data_type=train"))
    elif "train" not in types:
        findings.append((None, "data_type", "there are no train rows: the summary, memory and eyes_mouth_pose "
                         "adapters have nothing to learn from", "mark full training rows data_type=train"))
    else:
        unchecked = [task for task in TASK_FORMATS if task_split(frame, task, "valid").empty]
        if unchecked:
            findings.append((None, "data_type", f"no validation prompts for {', '.join(unchecked)}: those adapters "
                             "could not be checked before they serve", "mark some rows data_type=valid (summary and "
                             "eyes_mouth_pose take valid rows that have an output_message)"))
    split = frame["data_type"].str.removesuffix("_msg")
    return findings + _markers_in_training_cells(frame) + _duplicates(
        frame, split, ["input_data", "output_message"], "input_data")


def _format_marks(rows: pd.DataFrame, columns: tuple[str, ...], marks: tuple[str, ...]) -> list[Finding]:
    """Cells holding a mark the prompt format writes around the text: trained on, an end mark teaches the model to
    stop there, and a start mark makes a prompt read as two."""
    findings: list[Finding] = []
    for column in columns:
        for row, text in rows[column].items():
            if found := [mark for mark in marks if mark in text]:
                findings.append((row, column, f"the cell contains {', '.join(found)}, a mark the prompt format "
                                 "writes: trained on, it would end or split an answer there",
                                 "delete the mark from the text"))
    return findings


def _markers_in_training_cells(frame: pd.DataFrame) -> list[Finding]:
    training = frame[frame["data_type"].str.startswith("train")]
    return _format_marks(training, ("input_data", "output_message", "summary", "memory"), FORMAT_MARKERS)


def _ethics_rules(frame: pd.DataFrame) -> list[Finding]:
    findings: list[Finding] = []
    train = frame[frame["type"] == "train"]
    if train.empty:
        findings.append((None, "type", "there are no train rows", "mark the training prompts type=train"))
    else:
        absent = [c for c in ETHICS_CATEGORIES if c not in set(train["category"])]
        if absent:
            findings.append((None, "category", f"no train rows for the categories {', '.join(absent)}: the model "
                             "could never predict them", "add train prompts of every category"))
    test = frame[frame["type"] == "test"]
    if test.empty:
        findings.append((None, "type", "there are no test rows: the accuracy could not be measured",
                         "mark some prompts of each category type=test"))
    elif absent := [c for c in ETHICS_CATEGORIES if c not in set(test["category"])]:
        findings.append((None, "category", f"no test rows for the categories {', '.join(absent)}: their recall "
                         "could not be measured, and the gate would refuse every model", "add test prompts of every "
                         "category"))
    return findings + _prompt_rules(frame)


def _prompt_rules(frame: pd.DataFrame) -> list[Finding]:
    """One category per prompt, and each prompt once per split (the rules a held-out file has too)."""
    findings: list[Finding] = []
    prompt = _spacing_normalized(frame["user_prompt"])
    categories = frame.groupby(prompt)["category"].agg(lambda c: dict(zip(c, c.index)))
    conflicting = pd.Series([len(categories[p]) > 1 for p in prompt], index=frame.index, dtype=bool)
    for row, text in zip(frame.index[conflicting], prompt[conflicting]):
        own = frame.at[row, "category"]
        others = ", ".join(f"'{c}' (row {r})" for c, r in categories[text].items() if c != own)
        findings.append((row, "category", f"the same prompt has other categories: {others}",
                         "give one prompt one category"))
    rest = frame[~conflicting]
    return findings + _duplicates(rest, rest["type"], ["user_prompt"], "user_prompt")


# Key facts are written `;`-separated; a list typed with a full-width semicolon (Korean IMEs) or one fact a line
# (Alt+Enter in a spreadsheet cell) means the same.
_KEY_FACT_SEPARATOR = re.compile(r"[;；\n]")


def split_key_facts(cell: str) -> list[str]:
    """The facts of a `key_facts` cell, each stripped, empty ones dropped."""
    return [fact.strip() for fact in _KEY_FACT_SEPARATOR.split(cell) if fact.strip()]


def _key_fact_rules(frame: pd.DataFrame) -> list[Finding]:
    """The experiment counts an answer correct when it holds every key fact of its question: a fact with no words
    would be in every answer, and one the row's own answer lacks (a list separated by commas, a typo) in none."""
    findings: list[Finding] = []
    for row, facts, answer in zip(frame.index, frame["key_facts"].map(split_key_facts), frame["output_message"]):
        if blank := [fact for fact in facts if not normalize(fact)]:
            findings.append((row, "key_facts", f"the fact {blank[0]!r} has no letters or digits: every answer would "
                             "count as holding it", "write the fact as the words a correct answer holds"))
        elif answer and (missing := [fact for fact in facts if normalize(fact) not in normalize(answer)]):
            findings.append((row, "key_facts", f"the row's own output_message does not hold the fact {missing[0]!r}: "
                             "graded by these facts, even that answer would count as wrong", "separate facts with ';' "
                             "and write each as the words the answer uses"))
    return findings


def _ml_qa_rules(frame: pd.DataFrame) -> list[Finding]:
    findings: list[Finding] = []
    if not (frame["data_type"] == "train").any():
        findings.append((None, "data_type", "there are no train rows: the RAG experiment trains on them",
                         "mark the training questions data_type=train"))
    if not (frame["data_type"] == "valid").any():
        findings.append((None, "data_type", "there are no valid rows: the RAG experiment grades its answers to "
                         "them", "mark some questions data_type=valid"))
    if "key_facts" in frame:
        findings += _key_fact_rules(frame)
    return findings + _format_marks(frame, ("user_question", "rag_retrieved_data", "output_message"), RAG_MARKERS) + (
        _duplicates(frame, frame["data_type"], ["user_question", "output_message"], "user_question"))


@dataclass(frozen=True)
class InputSpec:
    """One kind of input CSV: its columns, its row schema and its whole-file rules."""

    columns: list[str]
    schema: pa.DataFrameSchema
    file_rules: Callable[[pd.DataFrame], list[Finding]]
    optional_columns: tuple[str, ...] = ()
    # Oddities that may be meant, reported as notes (the file loads): findings of the same shape.
    file_notes: Callable[[pd.DataFrame], list[Finding]] = lambda frame: []


def _conflicting_labels(frame: pd.DataFrame) -> list[Finding]:
    """Training rows whose prompt for a structured task (memory: the input; eyes_mouth_pose: the message) is an
    earlier row's with another answer: the adapter learns both, and answers either."""
    findings: list[Finding] = []
    train = frame[frame["data_type"] == "train"]
    for prompt_column, answer_column in (("input_data", "memory"), ("output_message", "eyes_mouth_pose")):
        first: dict[str, tuple[int, str]] = {}
        for row, prompt, answer in zip(train.index, _spacing_normalized(train[prompt_column]), train[answer_column]):
            if prompt not in first:
                first[prompt] = (row, answer)
            elif first[prompt][1] != answer:
                findings.append((row, answer_column, f"the same {prompt_column} has another {answer_column} on row "
                                 f"{first[prompt][0]}: the {answer_column} adapter learns both",
                                 f"give one {prompt_column} one {answer_column}, unless both are meant"))
    return findings


DIALOGUE = InputSpec(DIALOGUE_COLUMNS, DIALOGUE_SCHEMA, _dialogue_rules, file_notes=_conflicting_labels)
ETHICS = InputSpec(ETHICS_COLUMNS, ETHICS_SCHEMA, _ethics_rules)
#: Prompts kept out of every training file, all scored whatever their type: no split rules.
ETHICS_HELDOUT = InputSpec(ETHICS_COLUMNS, ETHICS_SCHEMA, _prompt_rules)
#: `key_facts` (';'-separated) is optional and read as "" when the file lacks it.
ML_QA = InputSpec(ML_QA_COLUMNS, ML_QA_SCHEMA, _ml_qa_rules, optional_columns=("key_facts",))


def _not_allowed(value: object, allowed: list[str]) -> str:
    message = f"{value!r} is not one of {', '.join(repr(v) for v in allowed)}"
    near = [v for v in allowed if v and str(value).split() == v.split()]
    return message + (f" (it differs from {near[0]!r} only in its spaces)" if near else "")


def validate(frame: pd.DataFrame, spec: InputSpec, file: str) -> list[DataIssue]:
    """Every failure of `frame` (indexed by spreadsheet row) as a DataIssue, sorted by row then column."""
    issues: set[DataIssue] = set()
    try:
        spec.schema.validate(frame, lazy=True)
    except pa.errors.SchemaErrors as errors:
        for case in errors.failure_cases.itertuples(index=False):
            in_column = case.schema_context == "Column"
            checks = spec.schema.columns[case.column].checks if in_column else spec.schema.checks
            check = checks[int(case.check_number)]
            target = CHECK_TARGETS[check.name]
            row = int(case.index) if pd.notna(case.index) else None
            if "allowed_values" in check.statistics:
                message = _not_allowed(case.failure_case, check.statistics["allowed_values"])
            elif in_column and str(case.failure_case).strip():
                message = f"{check.error} (value {case.failure_case!r})"
            else:
                message = check.error
            issues.add(DataIssue(file, row, target.column or case.column, message, target.fix))
    for row, column, problem, fix in spec.file_rules(frame):
        issues.add(DataIssue(file, row, column, problem, fix))
    return sorted(issues, key=lambda i: (i.row or 0, i.column or "", i.message))


def load(spec: InputSpec, path: str | Path, max_cell_chars: int = DEFAULT_MAX_CELL_CHARS) -> CsvTable:
    """The validated table (indexed by spreadsheet row, the header being row 1; the spec's columns) and the notes."""
    table = read_csv_strict(path, spec.columns, spec.optional_columns, max_cell_chars)
    present = [column for column in spec.optional_columns if column in table.frame.columns]
    issues = validate(table.frame[spec.columns + present], spec, str(path))
    if issues:
        raise DataValidationError(issues)
    frame = table.frame.copy()  # indexed by spreadsheet row: splits and reports name the row a person finds
    for column in spec.optional_columns:
        if column not in frame.columns:
            frame[column] = ""
    notes = [DataIssue(str(path), row, column, problem, fix) for row, column, problem, fix in spec.file_notes(frame)]
    return CsvTable(frame[spec.columns + list(spec.optional_columns)], table.notes + notes)


def load_dialogue(path: str | Path) -> pd.DataFrame:
    return load(DIALOGUE, path).frame


def load_ethics(path: str | Path) -> pd.DataFrame:
    return load(ETHICS, path).frame


def load_ethics_heldout(path: str | Path) -> pd.DataFrame:
    return load(ETHICS_HELDOUT, path).frame


def load_ml_qa(path: str | Path) -> pd.DataFrame:
    return load(ML_QA, path).frame
