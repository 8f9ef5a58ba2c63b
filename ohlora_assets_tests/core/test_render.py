"""Markdown tables keep one row per record and one column per field whatever the text in a cell."""

import re

import pandas as pd

from ohlora_assets.core.quality import flagged_examples_markdown
from ohlora_assets.core.render import markdown_table

UNESCAPED_PIPE = re.compile(r"(?<!\\)\|")


def _cells(line: str) -> list[str]:
    return [cell.strip().replace("\\|", "|") for cell in UNESCAPED_PIPE.split(line)[1:-1]]


def test_pipes_and_line_breaks_in_cells_stay_inside_their_cell():
    records = [
        {"prompt": "ㅋㅋ | 진짜?", "answer": "첫 줄\r\n둘째 줄\n셋째 줄", "count": 3},
        {"prompt": "a|b|c", "answer": "old mac\rbreak", "count": 4},
    ]
    lines = markdown_table(records).splitlines()

    assert len(lines) == 2 + len(records)  # header, rule, one line per record
    assert [_cells(line) for line in lines[2:]] == [
        ["ㅋㅋ | 진짜?", "첫 줄 ⏎ 둘째 줄 ⏎ 셋째 줄", "3"],
        ["a|b|c", "old mac ⏎ break", "4"],
    ]


def test_floats_keep_their_significant_digits_and_integers_stay_integers():
    lines = markdown_table(pd.DataFrame({"epoch": [1, 2], "loss": [0.123456, 2.0]})).splitlines()
    assert [_cells(line) for line in lines[2:]] == [["1", "0.1235"], ["2", "2"]]


def test_flagged_answers_with_line_breaks_keep_one_row_each():
    flagged = pd.DataFrame(
        {
            "source_row": [2, 3],
            "prompt": ["오늘 뭐 해?", "로라야 | 안녕"],
            "answer": ["1. 산책\n2. 독서", "1) 안녕!\n반가워"],
            "retries": [0, 1],
            "copied_from_row": [None, None],
            "numbered_prefix": [True, True],
            "gave_up": [False, False],
        }
    )
    table = flagged_examples_markdown(flagged).split("\n\n", 1)[1].splitlines()
    assert len(table) == 4
    assert [_cells(line)[2] for line in table[2:]] == ["1. 산책 ⏎ 2. 독서", "1) 안녕! ⏎ 반가워"]
