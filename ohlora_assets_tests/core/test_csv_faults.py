"""Files written the way users' real files go wrong: each gets a located error or a correct, noted acceptance."""

import bz2
import gzip
import lzma
import os
import unicodedata
from pathlib import Path

import pandas as pd
import pytest

from ohlora_assets.core import schemas
from ohlora_assets.core.data_issues import DataValidationError
from ohlora_assets_tests.conftest import sample_paths

HEADER = "type,user_prompt,category\n"


@pytest.fixture(scope="module")
def ethics_lines() -> list[str]:
    """The sample ethics file's records, one per line, with "\\n" endings."""
    return Path(sample_paths().ethics_csv).read_text(encoding="utf-8").replace("\r\n", "\n").splitlines(True)[1:]


def _file(tmp_path: Path, body: str | bytes, name: str = "ethics.csv") -> Path:
    path = tmp_path / name
    path.write_bytes(body if isinstance(body, bytes) else body.encode("utf-8"))
    return path


def _issues(path: Path, spec=schemas.ETHICS, **limits):
    with pytest.raises(DataValidationError) as caught:
        schemas.load(spec, path, **limits)
    return caught.value.issues


def _with_row(lines: list[str], row: str, at: int = 5) -> str:
    """The file with `row` as record `at` (spreadsheet row at + 2)."""
    return HEADER + "".join(lines[:at]) + row + "".join(lines[at:])


@pytest.mark.parametrize(
    "body, expected",
    [
        (b"", "the file is empty"),
        (b"\xef\xbb\xbf \n", "the file is empty"),
        (HEADER.encode(), "column names but no rows"),
        (b"PK\x03\x04\x14\x00\x06\x00", "zipped workbook (Excel .xlsx"),
        (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1\x00", "old Excel workbook (.xls)"),
        ("type,user_prompt\n".encode("utf-16"), "UTF-16"),
        ("type,user_prompt,category\ntrain,안녕,일반\n".encode("utf-16-le"), "UTF-16"),  # no byte-order mark
        ("type,user_prompt,category\ntrain,안녕,일반\n".encode("cp949"), "cp949/EUC-KR"),
        (gzip.compress(HEADER.encode() + "train,안녕,일반\n".encode()), "gzip-compressed"),
        (bz2.compress(HEADER.encode() + "train,안녕,일반\n".encode()), "bzip2-compressed"),
        (lzma.compress(HEADER.encode() + "train,안녕,일반\n".encode()), "xz-compressed"),
        (b"7z\xbc\xaf\x27\x1c\x00\x04", "7-Zip archive"),
        # cut inside the last character's bytes: UTF-8 still being written, not another encoding
        ((HEADER + "train,안녕,일반").encode()[:-1], "the file ends in the middle of a character (line 2)"),
        (b"\n  <!DOCTYPE html>\n<html><body>Sign in to continue</body></html>", "web page (HTML)"),
        (b"version https://git-lfs.github.com/spec/v1\noid sha256:4d7a\nsize 5234\n", "Git LFS pointer"),
        (b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n", "PDF document"),
    ],
)
def test_whole_file_problems_are_named(tmp_path, body, expected):
    [issue] = _issues(_file(tmp_path, body))
    assert expected in issue.message and issue.fix and issue.column is None


def test_a_header_only_file_with_the_wrong_columns_names_them_not_the_missing_rows(tmp_path):
    issues = _issues(_file(tmp_path, "prompt,label\n"))
    assert [(i.row, i.column) for i in issues] == [(1, "type"), (1, "user_prompt"), (1, "category")]
    assert all("required column is missing (found instead: prompt, label)" in i.message for i in issues)


def test_paths_that_are_not_readable_files_say_what_they_are(tmp_path):
    directory = tmp_path / "folder.csv"
    directory.mkdir()
    loop = tmp_path / "loop.csv"
    os.symlink(loop, loop)
    dangling = tmp_path / "dangling.csv"
    os.symlink(tmp_path / "gone.csv", dangling)
    messages = {p.name: _issues(p)[0].message for p in (directory, loop, dangling, tmp_path / "missing.csv")}
    assert "directory" in messages["folder.csv"]
    assert "symbolic link loop" in messages["loop.csv"]
    assert "link to a file that does not exist" in messages["dangling.csv"]
    assert messages["missing.csv"] == "file not found"
    if os.geteuid() != 0:  # root reads everything
        locked = _file(tmp_path, HEADER + "train,안녕,일반\n", "locked.csv")
        locked.chmod(0)
        assert "permission denied" in _issues(locked)[0].message


@pytest.mark.parametrize("separator, named", [(";", "semicolons"), ("\t", "tabs")])
def test_a_file_separated_by_something_else_than_commas_says_so(tmp_path, ethics_lines, separator, named):
    body = (HEADER + "".join(ethics_lines)).replace(",", separator)
    [issue] = _issues(_file(tmp_path, body))
    assert issue.row == 1 and f"separated by {named}" in issue.message and "comma delimited" in issue.fix


def test_an_empty_line_above_the_header_is_named(tmp_path, ethics_lines):
    [issue] = _issues(_file(tmp_path, "\n" + HEADER + "".join(ethics_lines)))
    assert issue.row == 1 and "first line is empty" in issue.message


def test_bom_is_accepted_and_changes_nothing(tmp_path, ethics_lines):
    plain = schemas.load(schemas.ETHICS, _file(tmp_path, HEADER + "".join(ethics_lines)))
    with_bom = b"\xef\xbb\xbf" + (HEADER + "".join(ethics_lines)).encode()
    bom = schemas.load(schemas.ETHICS, _file(tmp_path, with_bom, "bom.csv"))
    assert bom.frame.equals(plain.frame) and bom.notes == []


def test_unterminated_quote_is_located_not_swallowed(tmp_path, ethics_lines):
    body = _with_row(ethics_lines, 'train,"로라야 안녕,일반\n')
    [issue] = _issues(_file(tmp_path, body))
    assert (issue.row, issue.column) == (7, "user_prompt") and "unbalanced" in issue.message
    # a quote still open at the end of the file
    [issue] = _issues(_file(tmp_path, HEADER + "".join(ethics_lines) + 'test,"로라야,일반\n'))
    assert issue.row == len(ethics_lines) + 2 and "never closed" in issue.message


def test_a_stray_quote_in_a_big_file_is_named_not_blamed_on_the_cell_length(tmp_path, ethics_lines):
    """Past ~128K characters after it, the swallowed rest outgrows the csv module's cell limit first."""
    unquoted = [line for line in ethics_lines if '"' not in line] * 10  # ~400K characters, no quote to close it
    [issue] = _issues(_file(tmp_path, _with_row(unquoted, 'train,"로라야 안녕,일반\n')))
    assert (issue.row, issue.column) == (7, "user_prompt")
    assert "a quote opens this cell (line 1 of the record) and is never closed" in issue.message


def test_a_stray_quote_closed_rows_later_is_caught_not_swallowing_them(tmp_path, ethics_lines):
    # The opening quote of row 7 is closed by the inch mark of row 10: three records, no cell-count error.
    swallowed = 'train,"55인치 TV 추천해줘,일반\ntrain,둘째 줄,정치\ntrain,셋째 줄,패드립\ntrain,모니터 27",일반\n'
    [issue] = _issues(_file(tmp_path, _with_row(ethics_lines, swallowed)))
    assert (issue.row, issue.column) == (7, "user_prompt") and "2 of them read as rows" in issue.message
    # a real multi-line cell is not one
    table = schemas.load(schemas.ETHICS, _file(tmp_path, _with_row(ethics_lines, 'train,"첫 줄, 그리고\n둘째 줄",일반\n'),
                                               "multiline.csv"))
    assert table.frame["user_prompt"].iloc[5] == "첫 줄, 그리고\n둘째 줄"


def test_a_quote_error_in_the_header_is_the_one_issue(tmp_path, ethics_lines):
    [issue] = _issues(_file(tmp_path, '"type,user_prompt,category\n' + "".join(ethics_lines)))
    assert issue.row == 1 and "quote" in issue.message


def test_an_unbalanced_quote_counts_lines_in_a_file_with_old_mac_line_endings(tmp_path, ethics_lines):
    body = _with_row(ethics_lines, 'train,"로라야 안녕,일반\n').replace("\n", "\r")
    [issue] = _issues(_file(tmp_path, body))
    assert issue.row == 7 and "line(s) further down" in issue.message


def test_text_after_a_closing_quote_is_located(tmp_path, ethics_lines):
    [issue] = _issues(_file(tmp_path, _with_row(ethics_lines, 'train,"로라" 안녕,일반\n')))
    assert (issue.row, issue.column) == (7, "user_prompt") and "followed by more text" in issue.message


def test_rows_with_too_many_or_too_few_cells_are_located(tmp_path, ethics_lines):
    body = _with_row(ethics_lines, "train,로라야, 안녕,일반\n", 3)
    body = body.replace(ethics_lines[10], "train,로라야 안녕\n")
    found = {(i.row, i.message.split(" but")[0]) for i in _issues(_file(tmp_path, body))}
    assert found == {(5, "this row has 4 cells"), (13, "this row has 2 cells")}


def test_duplicated_column_is_an_error_and_unknown_column_a_note(tmp_path, ethics_lines):
    doubled = "type,user_prompt,category,category\n" + "".join(l.rstrip("\n") + ",일반\n" for l in ethics_lines)
    [issue] = _issues(_file(tmp_path, doubled))
    assert (issue.row, issue.column) == (1, "category") and "columns 3, 4" in issue.message

    extra = "type,user_prompt,category,memo\n" + "".join(l.rstrip("\n") + ",메모\n" for l in ethics_lines)
    table = schemas.load(schemas.ETHICS, _file(tmp_path, extra, "extra.csv"))
    assert list(table.frame.columns) == ["type", "user_prompt", "category"]
    [note] = table.notes
    assert (note.row, note.column) == (1, "memo") and "unknown column" in note.message


@pytest.mark.parametrize("char, named", [("\x00", "NUL byte (U+0000)"), ("\x07", "control character (U+0007)")])
def test_control_characters_are_located_not_truncated(tmp_path, ethics_lines, char, named):
    [issue] = _issues(_file(tmp_path, _with_row(ethics_lines, f"train,로라{char}야 안녕,일반\n")))
    assert (issue.row, issue.column) == (7, "user_prompt") and named in issue.message


def test_line_breaks_in_cells_come_back_as_newline(tmp_path, ethics_lines):
    crlf = (HEADER + "".join(ethics_lines) + 'train,"첫 줄\r\n둘째 줄\r셋째 줄",일반\n').replace("\n", "\r\n")
    crlf = crlf.replace("\r\r\n", "\r\n")
    frame = schemas.load(schemas.ETHICS, _file(tmp_path, crlf)).frame
    assert frame["user_prompt"].iloc[-1] == "첫 줄\n둘째 줄\n셋째 줄"
    assert not frame["user_prompt"].str.contains("\r").any()


def test_nfd_hangul_is_normalized_with_one_note(tmp_path, ethics_lines):
    nfd = unicodedata.normalize("NFD", HEADER + "".join(ethics_lines))
    table = schemas.load(schemas.ETHICS, _file(tmp_path, nfd))
    reference = schemas.load(schemas.ETHICS, _file(tmp_path, HEADER + "".join(ethics_lines), "nfc.csv"))
    assert table.frame.equals(reference.frame)
    [note] = table.notes
    assert "NFD" in note.message and "normalized to NFC" in note.message


def test_invisible_characters_are_removed_before_emptiness_and_duplicate_checks(tmp_path, ethics_lines):
    prompt = ethics_lines[0].split(",")[1]
    body = _with_row(ethics_lines, "train,\u200b\u2060\u3164,일반\n")  # renders as an empty cell
    body += f"test,{prompt[:1]}\u200b{prompt[1:]},일반\n"  # renders as a train prompt
    issues = _issues(_file(tmp_path, body))
    assert {(i.row, i.column) for i in issues} == {(7, "user_prompt"), (len(ethics_lines) + 3, "user_prompt")}
    assert any("empty" in i.message for i in issues) and any("both train and test" in i.message for i in issues)
    # emoji sequences keep their joiner, selectors and tags
    emoji = ["👩\u200d💻", "❤\ufe0f", "1\ufe0f\u20e3", "🏴\U000e0067\U000e0062\U000e0073\U000e0063\U000e0074\U000e007f"]
    path = _file(tmp_path, _with_row(ethics_lines, f"train,개발자 {' '.join(emoji)} 멋져,일반\n"), "emoji.csv")
    assert schemas.load(schemas.ETHICS, path).frame["user_prompt"].iloc[5] == f"개발자 {' '.join(emoji)} 멋져"


@pytest.mark.parametrize(
    "hidden",
    ["\u200d", "\ufe0f", "\u034f", "\u061c", "\u180e", "\U000e0041", "\u17b4", "\u206a", "\U000e0001",
     "\U000e0100", "\U0001d173", "\ufff9"],
    ids=["joiner between letters", "selector after a letter", "grapheme joiner", "arabic mark", "mongolian", "tag",
         "khmer inherent vowel", "deprecated format", "language tag", "ideographic selector", "musical format",
         "annotation anchor"],
)
def test_characters_that_render_as_nothing_do_not_defeat_the_leak_check(tmp_path, ethics_lines, hidden):
    prompt = ethics_lines[0].split(",")[1]
    [issue] = _issues(_file(tmp_path, HEADER + "".join(ethics_lines) + f"test,{prompt[:1]}{hidden}{prompt[1:]},일반\n"))
    assert issue.row == len(ethics_lines) + 2 and "both train and test" in issue.message


@pytest.mark.parametrize("hidden", ["\u17b4\u17b5", "\u206f", "\U000e0001\U000e0100"])
def test_a_cell_of_characters_that_render_as_nothing_is_empty(tmp_path, ethics_lines, hidden):
    [issue] = _issues(_file(tmp_path, _with_row(ethics_lines, f"train,{hidden},일반\n")))
    assert (issue.row, issue.column) == (7, "user_prompt") and "empty" in issue.message


def test_decomposed_syllables_split_by_an_invisible_character_are_composed(tmp_path, ethics_lines):
    """A zero-width space between a decomposed initial and its vowel (NFD text, then edited) must not keep them
    apart: the cell reads, and is compared, as the syllable a person sees."""
    prompt = "새로운 대학원 얘기"
    nfd = unicodedata.normalize("NFD", prompt)
    broken = nfd[:1] + "\u200b" + nfd[1:]
    frame = schemas.load(schemas.ETHICS, _file(tmp_path, _with_row(ethics_lines, f"train,{broken},일반\n"))).frame
    assert frame["user_prompt"].iloc[5] == prompt


def test_blank_looking_and_line_separator_characters_read_as_a_person_sees_them(tmp_path, ethics_lines):
    [issue] = _issues(_file(tmp_path, _with_row(ethics_lines, "train,\u2800 \u2800,일반\n")))  # braille blanks
    assert (issue.row, issue.column) == (7, "user_prompt") and "empty" in issue.message
    path = _file(tmp_path, _with_row(ethics_lines, "train,첫 줄\u2028둘째 줄,일반\n"), "separator.csv")
    assert schemas.load(schemas.ETHICS, path).frame["user_prompt"].iloc[5] == "첫 줄\n둘째 줄"


def test_text_damaged_by_an_earlier_conversion_is_located(tmp_path, ethics_lines):
    [issue] = _issues(_file(tmp_path, _with_row(ethics_lines, "train,로라야 \ufffd\ufffd 안녕,일반\n")))
    assert (issue.row, issue.column) == (7, "user_prompt") and "U+FFFD" in issue.message and "original" in issue.fix


def test_a_merge_conflict_left_in_the_file_is_named(tmp_path, ethics_lines):
    conflict = "<<<<<<< HEAD\ntrain,로라야 안녕,일반\n=======\ntrain,로라야 반가워,일반\n>>>>>>> feature/prompts\n"
    issues = _issues(_file(tmp_path, _with_row(ethics_lines, conflict)))
    assert [i.row for i in issues] == [7, 9, 11] and all("merge-conflict marker" in i.message for i in issues)
    # inside a quoted multi-line cell, as a conflict in a long answer leaves it
    inside = 'train,"로라야\n<<<<<<< HEAD\n안녕\n=======\n반가워\n>>>>>>> main",일반\n'
    [issue] = _issues(_file(tmp_path, _with_row(ethics_lines, inside), "inside.csv"))
    assert issue.row == 7 and "'<<<<<<< HEAD'" in issue.message


# Excel and Google Sheets write `#...`, LibreOffice `Err:5xx`; Google Sheets writes `Loading...` for a cell
# still waiting on IMPORTRANGE or GOOGLETRANSLATE when the file is downloaded.
@pytest.mark.parametrize("error", ["#REF!", "#N/A", " #value! ", "#NAME?", "Err:502", "Loading..."])
def test_a_failed_formula_exported_as_its_error_is_located(tmp_path, ethics_lines, error):
    [issue] = _issues(_file(tmp_path, _with_row(ethics_lines, f"train,{error},일반\n")))
    assert (issue.row, issue.column) == (7, "user_prompt") and "spreadsheet error" in issue.message
    # text that only mentions one is text
    path = _file(tmp_path, _with_row(ethics_lines, f"train,엑셀에서 {error.strip()} 오류 나면 어떻게 해?,일반\n"), "ok.csv")
    assert len(schemas.load(schemas.ETHICS, path).frame) == len(ethics_lines) + 1


def test_one_cp949_row_in_a_utf8_file_is_named(tmp_path, ethics_lines):
    body = (HEADER + "".join(ethics_lines[:4])).encode() + "train,안녕 로라,일반\n".encode("cp949")
    [issue] = _issues(_file(tmp_path, body + "".join(ethics_lines[4:]).encode()))
    assert issue.row == 6 and "line 6 is cp949/EUC-KR" in issue.message and "pasted" in issue.message


def test_an_invalid_byte_is_located_by_spreadsheet_row_after_a_multi_line_cell(tmp_path, ethics_lines):
    body = HEADER.encode() + 'train,"첫 줄\n둘째 줄\n셋째 줄",일반\n'.encode() + "".join(ethics_lines[:3]).encode()
    body += b"train,caf\xe9,\xff\n"  # no encoding reads this line: the byte is named
    [issue] = _issues(_file(tmp_path, b"\xef\xbb\xbf" + body))
    assert issue.row == 6 and "line 8, spreadsheet row 6" in issue.message
    assert f"byte {3 + body.index(b'caf') + 3} of the file" in issue.message


def test_cell_length_limit_is_configurable(tmp_path, ethics_lines):
    path = _file(tmp_path, _with_row(ethics_lines, "train," + "가" * 100_000 + ",일반\n"))
    [issue] = _issues(path)
    assert (issue.row, issue.column) == (7, "user_prompt") and "100,000 characters" in issue.message
    assert len(schemas.load(schemas.ETHICS, path, max_cell_chars=200_000).frame) == len(ethics_lines) + 1
    huge = _file(tmp_path, _with_row(ethics_lines, 'train,"' + "가" * 200_000 + '",일반\n'), "huge.csv")
    [issue] = _issues(huge)
    assert issue.row == 7 and "longer than" in issue.message
    # past the csv module's own limit (131,072), a configured limit still holds
    assert len(schemas.load(schemas.ETHICS, huge, max_cell_chars=250_000).frame) == len(ethics_lines) + 1


def test_ethics_semantics(tmp_path, ethics_lines):
    only_general = [l for l in ethics_lines if not l.startswith("train") or l.rstrip().endswith(",일반")]
    [issue] = _issues(_file(tmp_path, HEADER + "".join(only_general)))
    assert "정치" in issue.message and issue.column == "category" and issue.row is None

    [issue] = _issues(_file(tmp_path, HEADER + "".join(l for l in ethics_lines if l.startswith("train"))))
    assert "no test rows" in issue.message

    [issue] = _issues(_file(tmp_path, HEADER + "".join(l for l in ethics_lines if l.startswith("test"))))
    assert "no train rows" in issue.message

    kind, prompt, category = ethics_lines[0].rstrip("\n").split(",")
    other = "정치" if category != "정치" else "일반"
    spaced = prompt.replace(" ", "  ", 1) + " "
    issues = _issues(_file(tmp_path, HEADER + "".join(ethics_lines) + f"test,{spaced},{other}\n"))
    assert {(i.row, i.column) for i in issues} == {(2, "category"), (len(ethics_lines) + 2, "category")}
    assert all("other categories" in i.message for i in issues)

    # three rows, two categories: each row names the other category only
    issues = _issues(_file(tmp_path, HEADER + "".join(ethics_lines) + f"test,{spaced},{other}\ntrain,{spaced} ,{category}\n"))
    messages = {i.row: i.message for i in issues}
    assert f"'{other}' (row {len(ethics_lines) + 2})" in messages[2] and f"'{category}'" not in messages[2]
    assert f"'{category}' (row {len(ethics_lines) + 3})" in messages[len(ethics_lines) + 2]

    nfd = unicodedata.normalize("NFD", prompt)
    [issue] = _issues(_file(tmp_path, HEADER + "".join(ethics_lines) + f"train,{nfd},{category}\n"))
    assert issue.row == len(ethics_lines) + 2 and "repeats row 2" in issue.message


def test_ethics_prompts_are_judged_as_the_model_reads_them(tmp_path, ethics_lines):
    """The gate drops emoji and joins spelled-out letters: a prompt of emoji only would train as an empty text, and
    two prompts it reads alike are one prompt to it, whose second category would be lost without a word."""
    end = len(ethics_lines) + 2  # the spreadsheet row of the first appended record
    issues = _issues(_file(tmp_path, HEADER + "".join(ethics_lines) + "train,🖕🖕,혐오/기타\ntest,\u200b🙂,일반\n"))
    assert [(i.row, i.column) for i in issues] == [(end, "user_prompt"), (end + 1, "user_prompt")]
    assert all(i.message.startswith("the model reads nothing of this prompt") for i in issues)

    issues = _issues(_file(tmp_path, HEADER + "".join(ethics_lines)
                           + "train,너네 엄마 뭐하셔,일반\ntrain,ㄴㅓㄴㅔ ㅇㅓㅁㅁㅏ ㅁㅝㅎㅏㅅㅕ,패드립\n"))
    messages = {i.row: i.message for i in issues}
    assert set(messages) == {end, end + 1}
    assert messages[end + 1] == (f"the same prompt has other categories: '일반' (row {end}) "
                                 "(the model reads it as '너네 엄마 뭐하셔')")

    # the same category: the file loads, and a note says what the model reads (a test of the normalization may be meant)
    loaded = schemas.load(schemas.ETHICS, _file(tmp_path, HEADER + "".join(ethics_lines)
                                                + "train,로라야 오늘 진짜 사랑해,사랑 고백/만남\n"
                                                + "test,로라야 오늘 진짜 사💗랑💗해,사랑 고백/만남\n"))
    [note] = [n for n in loaded.notes if n.row == end + 1]
    assert note.message == (f"the same user_prompt is in both train and test (train row {end}), as the model reads it "
                            "('로라야 오늘 진짜 사랑해')")
    assert note.fix == "nothing, if it tests the gate's normalization; else keep it in one split"


def test_dialogue_without_train_rows_is_rejected(tmp_path):
    lines = Path(sample_paths().dialogue_csv).read_text(encoding="utf-8").splitlines(True)
    no_train = [lines[0]] + [l for l in lines[1:] if ",train," not in l]
    issues = _issues(_file(tmp_path, "".join(no_train), "dialogue.csv"), schemas.DIALOGUE)
    assert any("no adapter" not in i.message and "summary, memory" in i.message for i in issues)
    none_at_all = [lines[0]] + [l for l in lines[1:] if ",train" not in l]
    issues = _issues(_file(tmp_path, "".join(none_at_all), "dialogue.csv"), schemas.DIALOGUE)
    assert [i.message for i in issues if i.row is None] == [
        "there are no train or train_msg rows: no adapter has anything to learn from"
    ]


def test_dialogue_duplicates_within_and_across_splits(tmp_path):
    frame = pd.read_csv(sample_paths().dialogue_csv, dtype=str, keep_default_na=False, index_col=0)
    train = frame[frame["data_type"] == "train"].iloc[[0]]
    valid = frame[frame["data_type"] == "valid"].iloc[[0]].assign(input_data=" " + train["input_data"].iloc[0])
    path = tmp_path / "dialogue.csv"
    pd.concat([frame, train, valid], ignore_index=True).to_csv(path)
    issues = {(i.row, i.column): i.message for i in _issues(path, schemas.DIALOGUE)}
    first = int(frame.index[frame["data_type"] == "train"][0]) + 2
    assert issues[(len(frame) + 2, "input_data")] == f"repeats row {first} of the same split (train)"
    assert "both train and valid" in issues[(len(frame) + 3, "input_data")]
    assert len(issues) == 2


def test_every_check_has_a_name_with_a_fix():
    schemas_ = (schemas.DIALOGUE_SCHEMA, schemas.ETHICS_SCHEMA, schemas.ML_QA_SCHEMA)
    checks = [c for s in schemas_ for c in [*s.checks, *(c for col in s.columns.values() for c in col.checks)]]
    assert checks and all(c.name in schemas.CHECK_TARGETS and schemas.CHECK_TARGETS[c.name].fix for c in checks)


def test_a_value_that_differs_only_in_spacing_says_so(tmp_path, ethics_lines):
    [issue] = _issues(_file(tmp_path, _with_row(ethics_lines, "train,로라야 만나줘,사랑  고백/만남\n")))
    assert (issue.row, issue.column) == (7, "category")
    assert "differs from '사랑 고백/만남' only in its spaces" in issue.message


@pytest.mark.parametrize("row, column, hint", [
    ("train,로라야 만나줘,사랑 고백 / 만남\n", "category", "differs from '사랑 고백/만남' only in its spaces"),
    ("Train,로라야 만나줘,사랑 고백/만남\n", "type", "differs from 'train' only in letter case, width or spaces"),
    ("ｔｅｓｔ,로라야 만나줘,사랑 고백/만남\n", "type", "differs from 'test' only in letter case, width or spaces"),
    ("trian,로라야 만나줘,사랑 고백/만남\n", "type", "did you mean 'train'?"),
    ("train,선거 누구 찍을 거야,정치 이야기\n", "category", "did you mean '정치'?"),
    ("train,로라야 만나줘,패드립ㅋ\n", "category", "did you mean '패드립'?"),
    ("train,로라야 만나줘,사랑\n", "category", "did you mean '사랑 고백/만남'?"),
    ("train,너 진짜 별로야,혐오 발언\n", "category", None),  # no allowed value in it, nor it in one
    ("train,로라야 만나줘,연애\n", "category", None),
])
def test_a_value_near_an_allowed_one_names_the_one_meant(tmp_path, ethics_lines, row, column, hint):
    [issue] = _issues(_file(tmp_path, _with_row(ethics_lines, row)))
    assert (issue.row, issue.column) == (7, column) and "is not one of" in issue.message
    assert (hint in issue.message) if hint else "(" not in issue.message.split("'혐오/기타'")[-1]


def test_a_hangul_value_one_syllable_from_an_allowed_one_is_not_taken_for_it():
    """`아주 작게` (very small) is one syllable from `아주 크게` (very big): the hint names `작게`, inside it."""
    eyes = ["작게", "보통", "크게", "아주 크게", ""]
    assert schemas._not_allowed("아주 작게", eyes).endswith("(did you mean '작게'?)")
    assert schemas._not_allowed("아주 크게요", eyes).endswith("(did you mean '아주 크게'?)")  # the longest inside
    assert schemas._not_allowed("크게 작게", eyes).endswith("''")  # two alike: no guess


def _read_as_windows_1252(text: str) -> str:
    """What Excel in a Western locale shows for a UTF-8 file it opens as Windows-1252: the five bytes that
    code page leaves undefined come through as C1 control characters."""
    return "".join(
        bytes([b]).decode("cp1252", errors="ignore") or chr(b) for b in text.encode("utf-8")
    )


def test_utf8_read_as_windows_1252_and_saved_again_is_located_with_the_original_text(tmp_path, ethics_lines):
    garbled = _read_as_windows_1252("로라야 안녕")  # 'ë¡œë\x9d¼ì•¼ ì•ˆë…•': no character is invalid on its own
    [issue] = _issues(_file(tmp_path, _with_row(ethics_lines, f"train,{garbled},일반\n")))
    assert (issue.row, issue.column) == (7, "user_prompt")
    assert "UTF-8 read as Windows-1252" in issue.message and "was '로라야 안녕'" in issue.message
    assert "CSV UTF-8" in issue.fix


def test_a_whole_file_double_encoded_through_latin_1_is_located_cell_by_cell(tmp_path, ethics_lines):
    body = HEADER + "".join(ethics_lines[:3])
    issues = _issues(_file(tmp_path, body.encode("utf-8").decode("latin-1")))
    # Every Korean cell, the categories included, and nothing reported as a mere control character.
    assert {(i.row, i.column) for i in issues} == {(r, c) for r in (2, 3, 4) for c in ("user_prompt", "category")}
    assert all("Latin-1 and saved again" in i.message for i in issues)


@pytest.mark.parametrize("text", ["café au lait 먹고 싶다", "naïve한 질문", "°C 단위로 말해 줘", "€5 커피"])
def test_text_with_latin_letters_and_symbols_is_not_taken_for_double_encoding(tmp_path, ethics_lines, text):
    path = _file(tmp_path, _with_row(ethics_lines, f"train,{text},일반\n"))
    assert schemas.load(schemas.ETHICS, path).frame["user_prompt"].iloc[5] == text


def test_a_cell_written_over_lines_on_purpose_is_not_taken_for_swallowed_rows(tmp_path, ethics_lines):
    # The second line has as many commas as a row: the first holds none of its row's other cells.
    listed = 'train,"오늘 먹은 거\n짜장면, 짬뽕, 탕수육",일반\n'
    frame = schemas.load(schemas.ETHICS, _file(tmp_path, _with_row(ethics_lines, listed))).frame
    assert frame["user_prompt"].iloc[5] == "오늘 먹은 거\n짜장면, 짬뽕, 탕수육"
    qa = ("data_type,user_question,rag_retrieved_data,output_message\n"
          'train,활성화 함수 종류?,"활성화 함수:\nReLU, Sigmoid, Tanh, GELU",ReLU 등이 있어!\n'
          "valid,ReLU가 뭐야?,ReLU : 음수를 0으로 바꾸는 활성화 함수,음수를 0으로 바꿔!\n")
    frame = schemas.load(schemas.ML_QA, _file(tmp_path, qa, "qa.csv")).frame
    assert frame["rag_retrieved_data"].iloc[0] == "활성화 함수:\nReLU, Sigmoid, Tanh, GELU"
    # a divider line typed in a cell is not half of a merge conflict
    divided = 'train,"공지\n=======\n내용",일반\n'
    frame = schemas.load(schemas.ETHICS, _file(tmp_path, _with_row(ethics_lines, divided), "divider.csv")).frame
    assert frame["user_prompt"].iloc[5] == "공지\n=======\n내용"


def test_hangul_saved_as_question_marks_is_named(tmp_path):
    # An "ANSI" save on a Windows without the Korean code page: every Hangul letter became '?'.
    qa = "data_type,user_question,rag_retrieved_data,output_message\ntrain,??? ???,Overfitting (???) : ?? ???,??? ??!\n"
    issues = _issues(_file(tmp_path, qa, "qa.csv"), schemas.ML_QA)
    assert {(i.row, i.column) for i in issues} == {(2, "user_question"), (2, "rag_retrieved_data"), (2, "output_message")}
    assert all("replaced by '?'" in i.message and "UTF-8" in i.fix for i in issues)
    # question marks in a file that has its Hangul are punctuation
    fine = ("data_type,user_question,rag_retrieved_data,output_message\ntrain,뭐라고 ???,과적합 (??),응 ??\n"
            "valid,과적합이 뭐야?,과적합 (??),외워 버리는 거야\n")
    assert schemas.load(schemas.ML_QA, _file(tmp_path, fine, "fine.csv")).frame["user_question"].iloc[0] == "뭐라고 ???"


@pytest.mark.parametrize("separator", [";", "\t"])
def test_a_quoted_header_with_another_separator_names_the_separator(tmp_path, ethics_lines, separator):
    # LibreOffice with "quote all text cells", or Excel in a European locale
    rows = ['"type"', '"user_prompt"', '"category"'], ['"train"', '"안녕"', '"일반"']
    [issue] = _issues(_file(tmp_path, "\n".join(separator.join(row) for row in rows) + "\n"))
    assert issue.row == 1 and "separated by" in issue.message and "quote" not in issue.message


def test_excels_separator_hint_line_is_skipped_with_a_note(tmp_path, ethics_lines):
    body = HEADER + "".join(ethics_lines)
    table = schemas.load(schemas.ETHICS, _file(tmp_path, "sep=,\r\n" + body))
    assert table.frame.equals(schemas.load(schemas.ETHICS, _file(tmp_path, body, "plain.csv")).frame)
    assert any("separator hint" in note.message for note in table.notes)
    # a hint for another separator: the file is named for what it is
    [issue] = _issues(_file(tmp_path, "sep=;\n" + body.replace(",", ";"), "semicolons.csv"))
    assert "semicolons" in issue.message


def test_a_file_damaged_into_nul_bytes_is_named_not_called_utf16(tmp_path, ethics_lines):
    [issue] = _issues(_file(tmp_path, bytes(4096)))
    assert "NUL bytes" in issue.message and "UTF-16" not in issue.message
    # the rows after a crash while saving: zero bytes where the end of the file should be
    [issue] = _issues(_file(tmp_path, (HEADER + "".join(ethics_lines[:10])).encode() + bytes(1000), "cut.csv"))
    assert issue.row == 12 and "line 12" in issue.message and "not fully written" in issue.message


def test_a_mac_csv_with_one_cp949_line_is_located_by_its_line(tmp_path, ethics_lines):
    # "CSV (Macintosh)": lines end in CR alone
    body = (HEADER + "".join(ethics_lines[:4])).replace("\n", "\r").encode() + "train,안녕 로라,일반\r".encode("cp949")
    [issue] = _issues(_file(tmp_path, body + "".join(ethics_lines[4:]).replace("\n", "\r").encode()))
    assert issue.row == 6 and "line 6 is cp949/EUC-KR" in issue.message


def test_a_workbook_of_any_spreadsheet_is_named_a_workbook(tmp_path):
    import zipfile

    path = tmp_path / "prompts.ods"
    with zipfile.ZipFile(path, "w") as workbook:
        workbook.writestr("mimetype", "application/vnd.oasis.opendocument.spreadsheet")
    [issue] = _issues(path)
    assert "zipped workbook" in issue.message and "LibreOffice .ods" in issue.message and "CSV UTF-8" in issue.fix


def test_held_out_prompts_are_checked_row_by_row(tmp_path):
    body = "type,user_prompt,category\ntest,,일반\ntest,안녕,일반\ntest,안녕,정치\ntest,하이,일반 \n"
    with pytest.raises(DataValidationError) as caught:
        schemas.load_ethics_heldout(_file(tmp_path, body, "heldout.csv"))
    located = {(i.row, i.column) for i in caught.value.issues}
    assert {(2, "user_prompt"), (3, "category"), (4, "category"), (5, "category")} <= located
    assert any("only in its spaces" in i.message for i in caught.value.issues if i.row == 5)
    # a file of test rows alone is what a held-out file is: no split rules
    assert len(schemas.load_ethics_heldout(_file(tmp_path, "type,user_prompt,category\ntest,안녕,일반\n", "ok.csv"))) == 1


@pytest.mark.parametrize("hint", ["sep=,,,", '"sep=,"', '"sep=,",,'])
def test_a_separator_hint_a_spreadsheet_wrote_back_is_still_skipped(tmp_path, ethics_lines, hint):
    """LibreOffice and Google Sheets show Excel's `sep=,` line as a cell and save it padded or quoted."""
    loaded = schemas.load(schemas.ETHICS, _file(tmp_path, f"{hint}\r\n" + HEADER + "".join(ethics_lines)))
    assert len(loaded.frame) == len(ethics_lines)
    assert [n.message for n in loaded.notes] == [
        f"the first line {hint!r} (Excel's separator hint) was skipped: the column names are on the line after it"]


def test_rows_holding_only_the_index_number_are_empty_rows(tmp_path, ethics_lines):
    """The unnamed index column filled down past the data reads as empty rows, as a person sees them."""
    indexed = ",".join(["", HEADER]) + "".join(f"{i},{line}" for i, line in enumerate(ethics_lines))
    tail = "".join(f"{len(ethics_lines) + i},,,\n" for i in range(3))
    loaded = schemas.load(schemas.ETHICS, _file(tmp_path, indexed + tail))
    assert len(loaded.frame) == len(ethics_lines) and loaded.frame.index[-1] == len(ethics_lines) + 1
    assert any(n.message.startswith("3 entirely empty row(s) were skipped") for n in loaded.notes)
    [issue] = _issues(_file(tmp_path, ",".join(["", HEADER]) + tail, "only_numbers.csv"))
    assert issue.message == "the file has column names but no rows"


def test_an_ignored_column_may_repeat_a_read_one_may_not(tmp_path, ethics_lines):
    body = "".join(line.rstrip("\n") + ",메모,\n" for line in ethics_lines)
    loaded = schemas.load(schemas.ETHICS, _file(tmp_path, HEADER.rstrip("\n") + ",비고,비고\n" + body))
    assert [n.message for n in loaded.notes if n.column == "비고"] == ["unknown column: ignored"]
    [issue] = _issues(_file(tmp_path, HEADER.rstrip("\n") + ",category\n" + body.replace(",메모,", ",일반"),
                            "twice.csv"))
    assert (issue.column, issue.message) == ("category", "the column name appears more than once (columns 3, 4)")


def test_rows_whose_hangul_became_question_marks_are_named_in_a_file_that_has_hangul(tmp_path, ethics_lines):
    """Rows pasted from an "ANSI" export into a good file: the category column still has Hangul."""
    [issue] = _issues(_file(tmp_path, _with_row(ethics_lines, "train,?? ??? ?? ???,혐오/기타\n")))
    assert (issue.row, issue.column) == (7, "user_prompt")
    assert issue.message.startswith("the cell has only words made of question marks")
    # a real question mark or two stays a message
    loaded = schemas.load(schemas.ETHICS, _file(tmp_path, _with_row(ethics_lines, "train,?? 뭐라고??,일반\n"), "ok.csv"))
    assert loaded.frame["user_prompt"].iloc[5] == "?? 뭐라고??"


def test_placeholders_typed_for_text_yet_to_write_are_named(tmp_path):
    """`-`, `N/A`, `TBD`: a train row "has" its summary, and the adapter would learn to answer with the dash."""
    frame = pd.read_csv(sample_paths().dialogue_csv, dtype=str, keep_default_na=False, index_col=0)
    train = frame.index[frame["data_type"] == "train"]
    frame.loc[train[0], "summary"], frame.loc[train[1], "output_message"] = " N/A", "-"
    frame.loc[train[2], "output_message"] = "..."  # a persona may answer so
    path = tmp_path / "dialogue.csv"
    frame.to_csv(path)
    issues = {(i.row, i.column): i.message for i in _issues(path, schemas.DIALOGUE)}
    assert issues == {
        (int(train[0]) + 2, "summary"): "summary holds a placeholder, not text: trained on, the adapter would learn "
                                         "to write it (value ' N/A')",
        (int(train[1]) + 2, "output_message"): "output_message holds a placeholder, not text: trained on, the adapter "
                                                "would learn to write it (value '-')",
    }
