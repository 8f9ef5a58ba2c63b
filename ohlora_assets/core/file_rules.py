"""The whole-file rules of the input CSVs: what no single row shows (each task that trains has train and
validation rows, categories covered, duplicates after normalization, prompt-format marks in the text, key facts a
correct answer can hold). Each finding names the spreadsheet row and column, with the fix; core/schemas.py runs
them after the row schemas.
"""

from __future__ import annotations

import re

import pandas as pd

from ohlora_assets.core.ethics.categories import ETHICS_CATEGORIES
from ohlora_assets.core.ethics.normalize import normalize_prompt
from ohlora_assets.core.formats import FORMAT_MARKERS, RAG_MARKERS, TASK_FORMATS, task_split
from ohlora_assets.core.quality import normalize

#: A whole-file rule's finding: (spreadsheet row or None, column or None, problem, fix).
Finding = tuple[int | None, str | None, str, str]


def _spacing_normalized(series: pd.Series) -> pd.Series:
    return series.str.split().str.join(" ")


# The fixes of the two kinds of duplicate, by which `prompt_notes` tells them apart.
SAME_SPLIT_FIX = "delete one of the two rows"
ACROSS_SPLITS_FIX = "keep it in one split: an evaluation on training text measures memory"


def _duplicates(frame: pd.DataFrame, split: pd.Series, within: list[str], across: str) -> list[Finding]:
    """Rows repeating an earlier row of their split (on `within`), and non-train rows whose `across`
    text is also in train: both compared after NFC (done by the reader) and spacing normalization."""
    findings: list[Finding] = []
    keys = frame[within].apply(_spacing_normalized).assign(_split=split)
    first_row: dict[tuple, int] = {}
    for row, key in zip(frame.index, keys.itertuples(index=False, name=None)):
        if key in first_row:
            findings.append((row, within[0], f"repeats row {first_row[key]} of the same split ({key[-1]})",
                             SAME_SPLIT_FIX))
        else:
            first_row[key] = row
    text = _spacing_normalized(frame[across])
    train_row = {t: r for r, t in zip(frame.index[split == "train"][::-1], text[split == "train"][::-1])}
    for row, value, part in zip(frame.index, text, split):
        if part != "train" and value in train_row:
            problem = f"the same {across} is in both train and {part} (train row {train_row[value]})"
            findings.append((row, across, problem, ACROSS_SPLITS_FIX))
    return findings


def dialogue_rules(frame: pd.DataFrame) -> list[Finding]:
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


def ethics_rules(frame: pd.DataFrame) -> list[Finding]:
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
    return findings + prompt_rules(frame)


def _readable_prompts(frame: pd.DataFrame) -> tuple[pd.Series, list[Finding], pd.DataFrame]:
    """(the text the model reads of each prompt, the rows it reads as nothing or with two categories, the rest
    with `user_prompt` as the model reads it). `normalize_prompt` drops emoji and joins spaced or spelled-out
    syllables: two prompts it reads alike are one prompt to it, trained with one of their categories."""
    reads = frame["user_prompt"].map(normalize_prompt)
    findings: list[Finding] = [
        (row, "user_prompt", "the model reads nothing of this prompt (emoji, symbols or invisible characters only): "
         "it would be trained or scored as an empty text", "write it in words, or delete the row")
        for row in frame.index[(reads == "") & (frame["user_prompt"].str.strip() != "")]  # blank: the row rules say
    ]
    readable = frame[reads != ""].assign(user_prompt=reads[reads != ""])
    categories = readable.groupby("user_prompt")["category"].agg(lambda c: dict(zip(c, c.index)))
    conflicting = readable["user_prompt"].map(lambda p: len(categories[p]) > 1).astype(bool)
    for row, text in zip(readable.index[conflicting], readable["user_prompt"][conflicting]):
        own = frame.at[row, "category"]
        others = ", ".join(f"'{c}' (row {r})" for c, r in categories[text].items() if c != own)
        as_read = "" if text == " ".join(frame.at[row, "user_prompt"].lower().split()) else f" (the model reads it as {text!r})"
        findings.append((row, "category", f"the same prompt has other categories: {others}{as_read}",
                         "give one prompt one category"))
    return reads, findings, readable[~conflicting]


def prompt_rules(frame: pd.DataFrame) -> list[Finding]:
    """One category per prompt as the model reads it, something it reads in each, and each prompt once per split
    as typed (the rules a held-out file has too)."""
    _, findings, rest = _readable_prompts(frame)
    typed = frame.loc[rest.index]
    return findings + _duplicates(typed, typed["type"], ["user_prompt"], "user_prompt")


_NOTE_FIXES = {
    SAME_SPLIT_FIX: "nothing needed: it trains once; reword one to teach a second phrasing",
    ACROSS_SPLITS_FIX: "nothing, if it tests the gate's normalization; else keep it in one split",
}


def prompt_notes(frame: pd.DataFrame) -> list[Finding]:
    """Prompts typed differently that the model reads alike (`사💗랑💗해` and `사랑해`): a test prompt that is a
    training prompt to the model measures the normalization, which may be meant; a second one in a split trains
    once. (Notes are read once the rules passed: no duplicate as typed is left.)"""
    reads, _, rest = _readable_prompts(frame)
    notes = [(row, column, f"{problem}, as the model reads it ({reads[row]!r})", _NOTE_FIXES[fix])
             for row, column, problem, fix in _duplicates(rest, rest["type"], ["user_prompt"], "user_prompt")]
    return sorted(notes, key=lambda note: note[0])


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


def ml_qa_rules(frame: pd.DataFrame) -> list[Finding]:
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


def conflicting_labels(frame: pd.DataFrame) -> list[Finding]:
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
