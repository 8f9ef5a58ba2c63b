"""Schemas of the three input CSVs, reporting every failure as a located DataIssue with a fix.

Two kinds of rule: pandera checks for each row's values (every check has a name, and the column a
user fixes and the fix are looked up by that name), and whole-file rules for what no single row
shows (core/file_rules.py: each task that trains has train rows, categories covered, duplicates after
normalization).
The reader (core/input_files.py) has already normalized every cell to NFC without invisible
characters, so "empty" and "the same" mean what a person sees.
"""

from __future__ import annotations

import difflib
import unicodedata
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import pandas as pd
import pandera.pandas as pa

from ohlora_assets.core.ethics.categories import ETHICS_CATEGORIES
from ohlora_assets.core.formats import (
    DATA_TYPES,
    EYES,
    MEMORY_PATTERN,
    MOUTH,
    POSE,
    eyes_mouth_pose_text,
)
from ohlora_assets.core.data_issues import DataIssue, DataValidationError
from ohlora_assets.core.file_rules import (
    Finding, conflicting_labels, dialogue_rules, ethics_rules, ml_qa_rules, prompt_notes, prompt_rules,
)
from ohlora_assets.core.input_files import DEFAULT_MAX_CELL_CHARS, CsvTable, read_csv_strict


DIALOGUE_COLUMNS = [
    "data_type", "input_data", "output_message", "memory", "summary", "eyes_mouth_pose", "eyes", "mouth", "pose",
]
ETHICS_COLUMNS = ["type", "user_prompt", "category"]
ML_QA_COLUMNS = ["data_type", "user_question", "rag_retrieved_data", "output_message"]


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


# What a person types into a cell to mean "nothing here yet": trained on, an adapter would learn to write it.
# (`...` and `?` are left alone: a persona may answer with them.)
PLACEHOLDERS = frozenset({"-", "--", "---", "–", "—", "n/a", "na", "none", "null", "nan", "nil", "tbd", "todo",
                          "미정", "해당 없음", "해당없음"})


def _no_placeholder(column: str, why: str = "trained on, the adapter would learn to write it", file: str = "") -> pa.Check:
    return _check(
        f"{file}{column}_not_placeholder",
        lambda series: ~series.str.strip().str.lower().isin(PLACEHOLDERS),
        f"{column} holds a placeholder, not text: {why}",
        "write the text, or leave the cell empty",
    )


def _filled(column: str) -> pa.Check:
    return _check(f"{column}_filled", _not_blank, f"{column} is empty (invisible characters do not count)",
                  f"write the {column}")


DIALOGUE_SCHEMA = pa.DataFrameSchema(
    {
        "data_type": pa.Column(str, _one_of("data_type_allowed", DATA_TYPES)),
        "input_data": pa.Column(str, _filled("input_data")),
        "output_message": pa.Column(str, _no_placeholder("output_message")),
        "memory": pa.Column(
            str,
            _check(
                "memory_format",
                lambda s: (s == "") | s.str.match(MEMORY_PATTERN.pattern),
                "memory must be empty or one '[key: value]' item",
                "write it as [key: value], e.g. [사용자 전공: 경영학과], or leave it empty",
            ),
        ),
        "summary": pa.Column(str, _no_placeholder("summary")),
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
        "rag_retrieved_data": pa.Column(str, [_filled("rag_retrieved_data"), _no_placeholder(
            "rag_retrieved_data", "the experiment would retrieve it as the concept", "ml_qa_")]),
        "output_message": pa.Column(str, _no_placeholder("output_message", file="ml_qa_")),
    },
    checks=[_needed_on(("train",), "output_message", " (the reference answer)")],
    name="ohlora_ml_qa",
)


@dataclass(frozen=True)
class InputSpec:
    """One kind of input CSV: its columns, its row schema and its whole-file rules."""

    columns: list[str]
    schema: pa.DataFrameSchema
    file_rules: Callable[[pd.DataFrame], list[Finding]]
    optional_columns: tuple[str, ...] = ()
    # Oddities that may be meant, reported as notes (the file loads): findings of the same shape.
    file_notes: Callable[[pd.DataFrame], list[Finding]] = lambda frame: []


DIALOGUE = InputSpec(DIALOGUE_COLUMNS, DIALOGUE_SCHEMA, dialogue_rules, file_notes=conflicting_labels)
ETHICS = InputSpec(ETHICS_COLUMNS, ETHICS_SCHEMA, ethics_rules, file_notes=prompt_notes)
#: Prompts kept out of every training file, all scored whatever their type: no split rules.
ETHICS_HELDOUT = InputSpec(ETHICS_COLUMNS, ETHICS_SCHEMA, prompt_rules, file_notes=prompt_notes)
#: `key_facts` (file_rules.split_key_facts) is optional and read as "" when the file lacks it.
ML_QA = InputSpec(ML_QA_COLUMNS, ML_QA_SCHEMA, ml_qa_rules, optional_columns=("key_facts",))


def _not_allowed(value: object, allowed: list[str]) -> str:
    return f"{value!r} is not one of {', '.join(repr(v) for v in allowed)}{_nearest_allowed(str(value), allowed)}"


def _nearest_allowed(value: str, allowed: list[str]) -> str:
    """The allowed value a person most likely meant, and how theirs differs: spaces, letter case or width
    (`Train`, `ｔｒａｉｎ`); an allowed value inside theirs, the longest (`패드립ㅋ`, `아주 작게요`), or theirs inside
    exactly one (`사랑`); a close spelling of a Latin word (`trian`). Close Hangul spellings are not guessed: one
    syllable apart is often the opposite (`아주 작게` / `아주 크게`)."""
    filled = [v for v in allowed if v]

    def folded(text: str) -> str:
        return "".join(unicodedata.normalize("NFKC", text).casefold().split())

    for differs_in, same in (("its spaces", lambda text: "".join(text.split())),
                             ("letter case, width or spaces", folded)):
        if near := [v for v in filled if same(value) == same(v)]:
            return f" (it differs from {near[0]!r} only in {differs_in})"
    inside = sorted((v for v in filled if folded(v) in folded(value)), key=len, reverse=True)
    around = [v for v in filled if folded(value) and folded(value) in folded(v)]
    if inside and (len(inside) == 1 or len(inside[0]) > len(inside[1])):
        meant = [inside[0]]
    elif len(around) == 1:
        meant = around
    else:
        meant = difflib.get_close_matches(value, filled, n=1, cutoff=0.6) if value.isascii() else []
    return f" (did you mean {meant[0]!r}?)" if meant else ""


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
