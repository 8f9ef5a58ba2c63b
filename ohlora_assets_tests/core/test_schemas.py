"""Every kind of bad input is rejected with file, row and column, and every failure is reported."""

import csv
from pathlib import Path

import pandas as pd
import pytest

from ohlora_assets.core import schemas
from ohlora_assets.core.data_issues import DataValidationError
from ohlora_assets.core.file_rules import split_key_facts
from ohlora_assets_tests.conftest import sample_paths


def _write(frame: pd.DataFrame, path: Path, encoding: str = "utf-8") -> Path:
    # errors="replace": cp949 has no emoji, as in a real Excel export
    frame.to_csv(path, index=True, encoding=encoding, errors="replace", quoting=csv.QUOTE_MINIMAL)
    return path


@pytest.fixture
def dialogue() -> pd.DataFrame:
    return pd.read_csv(sample_paths().dialogue_csv, dtype=str, keep_default_na=False, index_col=0)


@pytest.fixture
def ethics() -> pd.DataFrame:
    return pd.read_csv(sample_paths().ethics_csv, dtype=str, keep_default_na=False)


def _first(frame: pd.DataFrame, data_type: str) -> int:
    return int(frame.index[frame["data_type"] == data_type][0])


def _issues(load, path: Path):
    with pytest.raises(DataValidationError) as caught:
        load(path)
    return caught.value.issues


def test_our_sample_data_is_valid():
    paths = sample_paths()
    assert len(schemas.load_dialogue(paths.dialogue_csv)) >= 300
    assert len(schemas.load_ethics(paths.ethics_csv)) >= 750
    assert len(schemas.load_ml_qa(paths.ml_qa_csv)) >= 60


def test_missing_file_is_named(tmp_path):
    [issue] = _issues(schemas.load_dialogue, tmp_path / "nope.csv")
    assert issue.file.endswith("nope.csv") and "not found" in issue.message


def test_cp949_file_is_rejected_with_its_line(dialogue, tmp_path):
    path = _write(dialogue, tmp_path / "cp949.csv", encoding="cp949")
    [issue] = _issues(schemas.load_dialogue, path)
    assert "not valid UTF-8" in issue.message and "cp949" in issue.message
    assert issue.row == 2  # the first record already holds Hangul


def test_bom_is_accepted_as_spreadsheets_write_it(dialogue, tmp_path):
    path = _write(dialogue, tmp_path / "bom.csv", encoding="utf-8-sig")
    assert schemas.load_dialogue(path).equals(schemas.load_dialogue(sample_paths().dialogue_csv))


def test_renamed_column_is_named_with_its_new_name(dialogue, tmp_path):
    path = _write(dialogue.rename(columns={"output_message": "answer"}), tmp_path / "renamed.csv")
    [issue] = _issues(schemas.load_dialogue, path)
    assert issue.column == "output_message" and "answer" in issue.message and issue.row == 1


def test_missing_columns_are_all_reported(dialogue, tmp_path):
    path = _write(dialogue.drop(columns=["eyes", "pose"]), tmp_path / "missing.csv")
    assert {i.column for i in _issues(schemas.load_dialogue, path)} == {"eyes", "pose"}


def test_every_dialogue_failure_is_reported_with_row_and_column(dialogue, tmp_path):
    bad = dialogue.copy()
    train = bad.index[bad["data_type"] == "train"]
    memory_row = int(train[1])
    bad.loc[train[0], "data_type"] = "training"
    bad.loc[memory_row, "memory"] = "좋아하는 음식은 떡볶이"
    bad.loc[train[2], "input_data"] = "   "
    bad.loc[train[3], "output_message"] = ""
    bad.loc[train[4], "eyes"] = "엄청 크게"
    bad.loc[train[5], "eyes_mouth_pose"] = "(눈 아주 크게, 입 크게, 고개 돌림 많이)"
    bad.loc[train[5], ["eyes", "mouth", "pose"]] = ["보통", "보통", "없음"]
    bad.loc[train[6], "pose"] = "옆으로"
    path = _write(bad, tmp_path / "bad.csv")

    found = {(i.row, i.column) for i in _issues(schemas.load_dialogue, path)}
    row = lambda index: int(index) + 2  # header is row 1
    expected = {
        (row(train[0]), "data_type"),
        (row(memory_row), "memory"),
        (row(train[2]), "input_data"),
        (row(train[3]), "output_message"),
        (row(train[4]), "eyes"),
        (row(train[4]), "eyes_mouth_pose"),  # the text no longer matches the columns either
        (row(train[5]), "eyes_mouth_pose"),
        (row(train[6]), "pose"),
        (row(train[6]), "eyes_mouth_pose"),
    }
    assert expected <= found
    assert all(r is not None for r, _ in found)


def test_unknown_category_and_cross_split_duplicate(ethics, tmp_path):
    bad = ethics.copy()
    bad.loc[3, "category"] = "욕설"
    train_prompt = bad.loc[bad["type"] == "train", "user_prompt"].iloc[0]
    test_row = int(bad.index[bad["type"] == "test"][0])
    bad.loc[test_row, "user_prompt"] = f" {train_prompt} "  # padding does not hide a duplicate
    path = tmp_path / "ethics.csv"
    bad.to_csv(path, index=False)
    issues = _issues(schemas.load_ethics, path)
    assert (5, "category") in {(i.row, i.column) for i in issues}
    assert (test_row + 2, "user_prompt") in {(i.row, i.column) for i in issues}
    assert any("both train and test" in i.message for i in issues)


@pytest.mark.parametrize("blank", ["", "   ", "\u3000"])
def test_a_task_left_without_validation_prompts_is_refused(dialogue, tmp_path, blank):
    """Valid rows without an output_message give summary and eyes_mouth_pose no prompt: their adapters would
    train and then meet checks with nothing to check. Spaces (even ideographic ones) are no message."""
    bad = dialogue.copy()
    bad.loc[bad["data_type"] == "valid", "output_message"] = blank
    issues = _issues(schemas.load_dialogue, _write(bad, tmp_path / "no_valid.csv"))
    assert [(i.row, i.column) for i in issues] == [(None, "data_type")]
    assert issues[0].message.startswith("no validation prompts for summary, eyes_mouth_pose:")


def test_format_marks_in_a_training_cell_are_refused_with_row_and_column(dialogue, tmp_path):
    bad = dialogue.copy()
    train, valid = bad.index[bad["data_type"] == "train"], bad.index[bad["data_type"] == "valid"]
    bad.loc[train[0], "output_message"] = "좋아 (답변 종료) 그리고 더 말할게"
    bad.loc[train[1], "input_data"] = "안녕 ### 답변: 뭐해"
    bad.loc[valid[0], "output_message"] = "응 (답변 종료) 맞아"  # not trained on: a valid row may hold one
    issues = _issues(schemas.load_dialogue, _write(bad, tmp_path / "marks.csv"))
    expected = {(int(train[0]) + 2, "output_message"), (int(train[1]) + 2, "input_data")}
    assert {(i.row, i.column) for i in issues} == expected
    assert "contains (답변 종료), a mark the prompt format writes" in issues[0].message


@pytest.fixture
def ml_qa() -> pd.DataFrame:
    return pd.read_csv(sample_paths().ml_qa_csv, dtype=str, keep_default_na=False, index_col=0)


def test_an_ml_qa_file_without_valid_rows_is_refused_before_the_experiment_trains(ml_qa, tmp_path):
    issues = _issues(schemas.load_ml_qa, _write(ml_qa[ml_qa["data_type"] == "train"], tmp_path / "train_only.csv"))
    assert [(i.row, i.column) for i in issues] == [(None, "data_type")]
    assert issues[0].message.startswith("there are no valid rows")


def test_key_facts_read_as_spreadsheets_list_them_and_a_fact_no_answer_can_hold_is_refused(ml_qa, tmp_path):
    valid = ml_qa.index[ml_qa["data_type"] == "valid"]
    own = ml_qa.loc[valid[0], "output_message"]
    facts = split_key_facts(ml_qa.loc[valid[0], "key_facts"])
    assert len(facts) >= 2, "the sample row should list two facts"
    listed = ml_qa.copy()
    listed.loc[valid[0], "key_facts"] = "；".join(facts)  # a Korean IME's full-width semicolon
    listed.loc[valid[1], "key_facts"] = "\n".join(split_key_facts(ml_qa.loc[valid[1], "key_facts"]))
    loaded = schemas.load_ml_qa(_write(listed, tmp_path / "listed.csv"))
    assert split_key_facts(loaded.loc[int(valid[0]) + 2, "key_facts"]) == facts

    bad = ml_qa.copy()
    bad.loc[valid[0], "key_facts"] = ", ".join(facts)  # one fact the answer never holds as written
    bad.loc[valid[1], "key_facts"] = "😊"  # no words: every answer would hold it
    issues = _issues(schemas.load_ml_qa, _write(bad, tmp_path / "bad_facts.csv"))
    assert [(i.row, i.column) for i in issues] == [(int(valid[0]) + 2, "key_facts"), (int(valid[1]) + 2, "key_facts")]
    assert "own output_message does not hold the fact" in issues[0].message and own
    assert "has no letters or digits" in issues[1].message


def test_format_marks_in_ml_qa_cells_are_refused(ml_qa, tmp_path):
    bad = ml_qa.copy()
    train = bad.index[bad["data_type"] == "train"]
    bad.loc[train[0], "output_message"] += " (답변 종료) 그리고"
    bad.loc[train[1], "rag_retrieved_data"] += " (사용자 질문) 뭐야?"  # the RAG input's own mark
    issues = _issues(schemas.load_ml_qa, _write(bad, tmp_path / "marks.csv"))
    assert {(i.row, i.column) for i in issues} == {
        (int(train[0]) + 2, "output_message"), (int(train[1]) + 2, "rag_retrieved_data"),
    }


def test_an_ethics_category_without_test_prompts_is_refused(ethics, tmp_path):
    bad = ethics[~((ethics["type"] == "test") & (ethics["category"] == "정치"))]
    path = tmp_path / "ethics.csv"
    bad.to_csv(path, index=False)
    (issue,) = _issues(schemas.load_ethics, path)
    assert issue.column == "category" and issue.message.startswith("no test rows for the categories 정치:")


def test_rows_keep_their_spreadsheet_numbers_through_the_splits(dialogue, tmp_path):
    """Splits and reports name a row as a spreadsheet shows it, empty rows above it included."""
    from ohlora_assets.core.formats import task_split

    path = _write(dialogue, tmp_path / "dialogue.csv")
    header, rest = path.read_text(encoding="utf-8").split("\n", 1)
    path.write_text(header + "\n" + "," * len(dialogue.columns) + "\n" + rest, encoding="utf-8")  # row 2 is empty
    loaded = schemas.load_dialogue(path)
    first_valid = _first(dialogue.reset_index(drop=True), "valid")  # its position among the data rows
    source_row = task_split(loaded, "summary", "valid")["source_row"].iloc[0]
    assert source_row == first_valid + 3  # header row 1, the empty row 2
    assert loaded.loc[source_row, "input_data"] == dialogue["input_data"].iloc[first_valid]


def test_a_structured_label_given_twice_for_one_prompt_is_noted_and_the_file_loads(dialogue, tmp_path):
    bad = dialogue.copy()
    train = bad.index[bad["data_type"] == "train"]
    bad.loc[train[5], "input_data"] = bad.loc[train[0], "input_data"]
    bad.loc[train[0], "memory"] = "[사용자 전공: 경영학과]"
    bad.loc[train[5], "memory"] = "[사용자 전공: 물리학과]"
    table = schemas.load(schemas.DIALOGUE, _write(bad, tmp_path / "twice.csv"))
    (note,) = [n for n in table.notes if n.column == "memory"]
    assert note.row == int(train[5]) + 2
    first = int(train[0]) + 2
    assert note.message == f"the same input_data has another memory on row {first}: the memory adapter learns both"


def test_error_message_lists_every_issue(dialogue, tmp_path):
    bad = dialogue.copy()
    rows = bad.index[bad["data_type"] == "train"][:3]
    bad.loc[rows, "eyes"] = "??"
    path = _write(bad, tmp_path / "three.csv")
    with pytest.raises(DataValidationError) as caught:
        schemas.load_dialogue(path)
    text = str(caught.value)
    assert text.count("column 'eyes'") == 3 and str(path) in text
