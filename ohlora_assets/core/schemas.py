"""Pandera schemas of the three input CSVs, reporting every failure as a located DataIssue."""

from __future__ import annotations

from pathlib import Path

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
from ohlora_assets.core.io import DataIssue, DataValidationError, read_csv_strict, spreadsheet_row


DIALOGUE_COLUMNS = [
    "data_type", "input_data", "output_message", "memory", "summary", "eyes_mouth_pose", "eyes", "mouth", "pose",
]
ETHICS_COLUMNS = ["type", "user_prompt", "category"]
ML_QA_COLUMNS = ["data_type", "user_question", "rag_retrieved_data", "output_message"]


def _not_blank(series: pd.Series) -> pd.Series:
    return series.str.strip() != ""


def _is_train(frame: pd.DataFrame) -> pd.Series:
    return frame["data_type"] == "train"


def _emp_agrees(frame: pd.DataFrame) -> pd.Series:
    parts_given = (frame[["eyes", "mouth", "pose"]] != "").any(axis=1) | (frame["eyes_mouth_pose"] != "")
    expected = [eyes_mouth_pose_text(e, m, p) for e, m, p in zip(frame["eyes"], frame["mouth"], frame["pose"])]
    return ~parts_given | (frame["eyes_mouth_pose"] == pd.Series(expected, index=frame.index))


def _required_on_train(column: str, why: str = "") -> pa.Check:
    return pa.Check(
        lambda frame: ~_is_train(frame) | _not_blank(frame[column]),
        error=f"a train row needs {column}{why}",
    )


# Frame-wide checks report on every column; this maps each one to the column a user should fix.
_WIDE_CHECK_COLUMN = {
    "eyes_mouth_pose disagrees with the eyes/mouth/pose columns": "eyes_mouth_pose",
    "a train row needs output_message": "output_message",
    "a train_msg row needs output_message": "output_message",
    "a train row needs summary": "summary",
    "a train row needs eyes_mouth_pose": "eyes_mouth_pose",
    "the same prompt is in both train and test": "user_prompt",
    "a train row needs output_message (the reference answer)": "output_message",
}

DIALOGUE_SCHEMA = pa.DataFrameSchema(
    {
        "data_type": pa.Column(str, pa.Check.isin(DATA_TYPES)),
        "input_data": pa.Column(str, pa.Check(_not_blank, error="input_data is empty")),
        "output_message": pa.Column(str),
        "memory": pa.Column(
            str,
            pa.Check(
                lambda s: (s == "") | s.str.match(MEMORY_PATTERN.pattern),
                element_wise=False,
                error="memory must be empty or one '[key: value]' item",
            ),
        ),
        "summary": pa.Column(str),
        "eyes_mouth_pose": pa.Column(str),
        "eyes": pa.Column(str, pa.Check.isin(EYES + ("",))),
        "mouth": pa.Column(str, pa.Check.isin(MOUTH + ("",))),
        "pose": pa.Column(str, pa.Check.isin(POSE + ("",))),
    },
    checks=[
        pa.Check(_emp_agrees, error="eyes_mouth_pose disagrees with the eyes/mouth/pose columns"),
        _required_on_train("output_message"),
        pa.Check(
            lambda f: (f["data_type"] != "train_msg") | _not_blank(f["output_message"]),
            error="a train_msg row needs output_message",
        ),
        _required_on_train("summary"),
        _required_on_train("eyes_mouth_pose"),
    ],
    strict=False,
    coerce=False,
    name="ohlora_dialogue_v4",
)


def _cross_split_duplicates(frame: pd.DataFrame) -> pd.Series:
    normalized = frame["user_prompt"].str.strip()
    train = set(normalized[frame["type"] == "train"])
    return ~((frame["type"] == "test") & normalized.isin(train))


ETHICS_SCHEMA = pa.DataFrameSchema(
    {
        "type": pa.Column(str, pa.Check.isin(("train", "test"))),
        "user_prompt": pa.Column(str, pa.Check(_not_blank, error="user_prompt is empty")),
        "category": pa.Column(str, pa.Check.isin(ETHICS_CATEGORIES)),
    },
    checks=[pa.Check(_cross_split_duplicates, error="the same prompt is in both train and test")],
    name="ohlora_ethics",
)

ML_QA_SCHEMA = pa.DataFrameSchema(
    {
        "data_type": pa.Column(str, pa.Check.isin(("train", "valid"))),
        "user_question": pa.Column(str, pa.Check(_not_blank, error="user_question is empty")),
        "rag_retrieved_data": pa.Column(str, pa.Check(_not_blank, error="rag_retrieved_data is empty")),
        "output_message": pa.Column(str),
    },
    checks=[_required_on_train("output_message", " (the reference answer)")],
    name="ohlora_ml_qa",
)


def validate(frame: pd.DataFrame, schema: pa.DataFrameSchema, file: str) -> list[DataIssue]:
    """Every schema failure of `frame` as a DataIssue, sorted by row then column."""
    try:
        schema.validate(frame, lazy=True)
    except pa.errors.SchemaErrors as errors:
        issues: set[DataIssue] = set()
        for case in errors.failure_cases.itertuples(index=False):
            message = str(case.check)
            row = spreadsheet_row(int(case.index)) if pd.notna(case.index) else None
            if message in _WIDE_CHECK_COLUMN:
                issues.add(DataIssue(file, row, _WIDE_CHECK_COLUMN[message], message))
            elif message.startswith("isin("):
                allowed = ", ".join(repr(v) for v in schema.columns[case.column].checks[0].statistics["allowed_values"])
                issues.add(DataIssue(file, row, case.column, f"{case.failure_case!r} is not one of {allowed}"))
            else:
                issues.add(DataIssue(file, row, case.column, f"{message} (value {case.failure_case!r})"))
        return sorted(issues, key=lambda i: (i.row or 0, i.column or "", i.message))
    return []


def _load(path: str | Path, columns: list[str], schema: pa.DataFrameSchema) -> pd.DataFrame:
    frame = read_csv_strict(path, columns)
    frame.index = pd.RangeIndex(len(frame))  # position: maps to the spreadsheet row
    issues = validate(frame, schema, str(path))
    if issues:
        raise DataValidationError(issues)
    return frame


def load_dialogue(path: str | Path) -> pd.DataFrame:
    return _load(path, DIALOGUE_COLUMNS, DIALOGUE_SCHEMA)[DIALOGUE_COLUMNS]


def load_ethics(path: str | Path) -> pd.DataFrame:
    return _load(path, ETHICS_COLUMNS, ETHICS_SCHEMA)[ETHICS_COLUMNS]


def load_ml_qa(path: str | Path) -> pd.DataFrame:
    """ML Q&A rows; `key_facts` (';'-separated) is optional and read as "" when the file lacks it."""
    frame = _load(path, ML_QA_COLUMNS, ML_QA_SCHEMA)
    if "key_facts" not in frame.columns:
        frame["key_facts"] = ""
    return frame[ML_QA_COLUMNS + ["key_facts"]]
