"""Reading the CSV files a user edits without altering them silently (their bytes are decoded by
core/text_decoding.py; the JSON synonyms file is read by core/augment.py).

Every problem becomes a DataIssue located by file, row and column, with a plain fix; all of them are
collected before one DataValidationError is raised. The few changes made on the way in are the same
for every cell and reported as notes: Unicode is normalized to NFC, invisible characters (zero-width
space, word joiner, Hangul fillers, bidi marks) are removed, line breaks inside cells become "\\n".
Checks of emptiness and duplication downstream therefore see the text a person sees.
"""

from __future__ import annotations

import contextlib
import csv
import io
import re
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from ohlora_assets.core import hangul
from ohlora_assets.core.cell_text import (
    cell_problem,
    character_problem,
    clean_text,
    spreadsheet_error,
    unify_line_breaks,
)
from ohlora_assets.core.data_issues import DataIssue, DataValidationError, change_notes, file_issue
from ohlora_assets.core.text_decoding import decode_utf8, read_input_bytes

DEFAULT_MAX_CELL_CHARS = 5_000

# The lines git writes around the two sides of a merge conflict, inside a cell or as a row of their own. The
# `=======` between the sides counts only beside the others: alone, it is a divider a person may type in a cell.
_CONFLICT_EDGE = re.compile(r"^(?:<{7}|>{7})(?: .*)?$", re.MULTILINE)
_CONFLICT_MARKER = re.compile(r"^(?:<{7}|>{7})(?: .*)?$|^={7}$", re.MULTILINE)
# The line Excel reads as "cells are separated by X" (and hides) when it is the first line of a CSV; a spreadsheet
# that does not know it shows it as a cell and writes it back quoted or padded with the row's commas (`sep=,,,`).
_SEPARATOR_HINT = re.compile(r'"?sep=."?,*')
# A word of two or more question marks, bracketed or punctuated at most: what an "ANSI" save on a Windows
# without the Korean code page leaves of each Hangul word.
_QUESTION_MARK_WORD = re.compile(r"(?:^|(?<=[\s(\[]))\?{2,}(?=[\s)\].,!:~]|$)")
_HANGUL = re.compile(f"[{hangul.LETTERS}]")


@dataclass
class CsvTable:
    """A CSV read as strings: `frame` is indexed by spreadsheet row; `notes` are accepted oddities."""

    frame: pd.DataFrame
    notes: list[DataIssue] = field(default_factory=list)


def _quote_problem(record_text: str, header: list[str]) -> tuple[str | None, str]:
    """(column, problem) for the quote that broke the record starting `record_text`."""
    record_text = unify_line_breaks(record_text)  # lines are counted in any ending
    field_index, line, position, length = 0, 1, 0, len(record_text)
    while position < length:
        char = record_text[position]
        if char == '"':
            opened_line, position = line, position + 1
            while True:
                if position >= length:
                    column = header[field_index] if field_index < len(header) else None
                    return column, (f"a quote opens this cell (line {opened_line} of the record) and is never "
                                    "closed, so the rest of the file would become one cell")
                if record_text[position] == "\n":
                    line += 1
                if record_text[position] == '"':
                    if record_text[position + 1: position + 2] == '"':
                        position += 2
                        continue
                    after = record_text[position + 1: position + 2]
                    if after not in (",", "\n", "\r", ""):
                        column = header[field_index] if field_index < len(header) else None
                        lines_on = line - opened_line
                        where = f"{lines_on} line(s) further down" if lines_on else "on the same line"
                        return column, (f"the quote that opens this cell closes {where}, followed by more text "
                                        f"({record_text[position + 1: position + 11]!r}): a quote is unbalanced, "
                                        "and the text of other cells or rows would be swallowed into this one")
                    position += 1
                    break
                position += 1
        while position < length and record_text[position] not in ",\n":
            position += 1
        if position < length and record_text[position] == "\n":
            break
        field_index, position = field_index + 1, position + 1
    return None, "malformed quoting"


def _parse(text: str, name: str) -> tuple[list[str], list[int], list[list[str]], list[DataIssue]]:
    """(header, spreadsheet row of each record, records, issues): entirely empty records are left
    out; parsing stops at the first quoting error, located by the record it broke."""
    lines = io.StringIO(text, newline="").readlines()
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    header: list[str] = []
    rows: list[int] = []
    records: list[list[str]] = []
    issues: list[DataIssue] = []
    row = 0
    while True:
        start_line = reader.line_num + 1
        try:
            cells = next(reader)
        except StopIteration:
            return header, rows, records, issues
        except csv.Error as err:
            # A stray quote swallows the rest of the file into one cell: in a big file that passes the length limit
            # first, so the quotes are looked at before the length is blamed.
            column, problem = _quote_problem("".join(lines[start_line - 1:]), header)
            fix = _QUOTE_FIX
            if column is None and "field larger than field limit" in str(err):
                problem, fix = f"a cell is longer than {csv.field_size_limit():,} characters", (
                    "shorten it, or raise max_cell_chars in the dataset's run config")
            problem = f"{problem} (record starts on line {start_line})"
            return header, rows, records, issues + [DataIssue(name, row + 1, column, problem, fix)]
        row += 1
        if row == 1:
            header = [clean_text(h)[0].strip() for h in cells]
        elif any(cell.strip() for cell in cells):
            records.append(cells)
            rows.append(row)
            if reader.line_num > start_line:
                issues += _swallowed_rows(name, row, header, cells)


def _swallowed_rows(name: str, row: int, header: list[str], cells: list[str]) -> list[DataIssue]:
    """A multi-line cell whose lines parse as whole rows: an opening quote without its closing one ran on
    until a later quote happened to close it, and took the rows between with it. The cell's first line then
    holds the rest of its own row (the cells after it, commas included), which a cell written over several
    lines on purpose, a list say, does not."""
    issues = []
    for index, (column, cell) in enumerate(zip(header, cells)):
        first, *continued = unify_line_breaks(cell).split("\n")
        if not continued or _cell_count(first) != len(header) - index:
            continue
        lookalikes = sum(1 for line in continued if _cell_count(line) == len(header) > 1)
        if lookalikes:
            issues.append(DataIssue(
                name, row, column, f"this quoted cell runs over {len(continued) + 1} lines and {lookalikes} of them "
                f"read as rows of their own ({len(header)} cells): a quote is probably unbalanced, and those rows "
                "were swallowed into this cell", _QUOTE_FIX))
    return issues


def _cell_count(line: str) -> int:
    return len(next(csv.reader([line]), []))


@contextlib.contextmanager
def _csv_field_limit(max_cell_chars: int):
    """The csv module refuses a cell over its own limit (131,072 characters) before ours is checked: for a
    dataset configured for longer cells, lift it while this file is parsed."""
    default = csv.field_size_limit()
    csv.field_size_limit(max(default, max_cell_chars + 1))
    try:
        yield
    finally:
        csv.field_size_limit(default)


_QUOTE_FIX = 'close the quote, or write a quote that is part of the text as two quotes ("")'


def read_csv_strict(
    path: str | Path,
    required_columns: list[str],
    optional_columns: tuple[str, ...] = (),
    max_cell_chars: int = DEFAULT_MAX_CELL_CHARS,
) -> CsvTable:
    """Read a UTF-8 CSV as strings indexed by spreadsheet row, or raise with every located issue.

    Rejected: unreadable paths, non-UTF-8 encodings, workbooks and other files that are not CSV
    (gzip, PDF, a saved web page, a Git LFS pointer), an empty or header-only file, unbalanced quotes,
    rows with too many or too few cells, duplicated column names, missing columns, control characters
    (NUL ...), text double-encoded through Windows-1252 or Latin-1, and cells longer than
    `max_cell_chars`. A first column without a name is the index a spreadsheet or pandas writes, and is dropped. Entirely empty rows
    are skipped, unknown columns ignored: both are noted.
    """
    name = str(path)
    text = decode_utf8(read_input_bytes(path), name)
    if not text.strip():
        raise file_issue(name, "the file is empty", "export the sheet again; the first line must be the column names")
    notes: list[DataIssue] = []
    hint = _first_line(text)
    if _SEPARATOR_HINT.fullmatch(hint.strip()):
        text = _without_first_line(text, hint)
        notes.append(DataIssue(name, None, None, f"the first line {hint.strip()!r} (Excel's separator hint) "
                               "was skipped: the column names are on the line after it", "none needed"))
    separator = _other_separator(_first_line(text), required_columns)
    if separator:
        raise file_issue(name, f"the cells are separated by {separator}, not commas",
                          'export it again as "CSV UTF-8 (comma delimited)"', row=1)
    with _csv_field_limit(max_cell_chars):
        header, rows, records, issues = _parse(text, name)
    if issues and not header:  # the header itself is broken: nothing below can be named
        raise DataValidationError(issues)
    if not any(header):
        raise file_issue(name, "the first line is empty: the column names must be on it",
                          "delete the empty line(s) above the column names", row=1)
    issues += _header_issues(name, header, required_columns, optional_columns, notes)
    if not issues and not records:
        raise file_issue(name, "the file has column names but no rows",
                          "add rows below the header, or point the path at the right file")

    known = set(required_columns) | set(optional_columns)
    keep = [i for i, column in enumerate(header) if column in known]
    kept_names = [header[i] for i in keep]
    first_change: dict[str, tuple[int | None, str | None]] = {}
    change_counts: dict[str, int] = {}
    table, kept_rows = [], []
    conflict = _CONFLICT_EDGE.search(text) is not None
    for row_number, cells in zip(rows, records):
        if header[0] == "" and len(cells) == len(header) and not any(cell.strip() for cell in cells[1:]):
            continue  # only the index column filled (numbers dragged down past the data): an empty row
        marker = conflict and next((m for cell in cells if (m := _CONFLICT_MARKER.search(cell))), None)
        if marker:
            issues.append(DataIssue(
                name, row_number, None, f"a git merge-conflict marker ({marker.group().strip()!r}): the file holds "
                "both sides of a conflict", "resolve the conflict: keep the right rows and delete the marker lines"))
            continue
        if len(cells) != len(header):
            issues.append(DataIssue(
                name, row_number, None, f"this row has {len(cells)} cells but the header names {len(header)} columns",
                "a cell that contains a comma must be in quotes; remove stray commas or add the missing cells"))
            continue
        values = []
        for i in keep:
            value, changes = clean_text(cells[i])
            for change in changes:
                first_change.setdefault(change, (row_number, header[i]))
                change_counts[change] = change_counts.get(change, 0) + 1
            problem = cell_problem(cells[i], value)
            if problem:
                issues.append(DataIssue(name, row_number, header[i], f"the cell contains {problem[0]}", problem[1]))
            if error := spreadsheet_error(value):
                issues.append(DataIssue(
                    name, row_number, header[i], f"the cell holds the spreadsheet error {error!r}: a formula "
                    "failed in the sheet, and the export wrote its error instead of text",
                    "fix the formula (or paste the values over it) and export again"))
            if len(value) > max_cell_chars:
                issues.append(DataIssue(
                    name, row_number, header[i], f"the cell has {len(value):,} characters; the limit is "
                    f"{max_cell_chars:,}", "shorten it, or raise max_cell_chars in the dataset's run config"))
            values.append(value)
        table.append(values)
        kept_rows.append(row_number)
    issues += _hangul_lost(name, kept_rows, kept_names, table)
    if issues:
        raise DataValidationError(issues)
    if not table:
        raise file_issue(name, "the file has column names but no rows",
                          "add rows below the header, or point the path at the right file")
    notes += change_notes(name, first_change, change_counts)
    skipped = rows[-1] - 1 - len(kept_rows)  # empty rows up to the last record read
    if skipped:
        notes.append(DataIssue(name, None, None, f"{skipped} entirely empty row(s) were skipped (an index number "
                               "alone counts as empty)", "none needed; delete them to silence this note"))
    frame = pd.DataFrame(table, columns=kept_names, index=pd.Index(kept_rows, name="row"), dtype=str)
    return CsvTable(frame, notes)


_SEPARATORS = {";": "semicolons (;), as a spreadsheet in a European locale writes", "\t": "tabs", "|": "bars (|)"}


def _first_line(text: str) -> str:
    """The first line without its ending (LF, CRLF or CR alone)."""
    return io.StringIO(text, newline="").readline().rstrip("\r\n")


def _without_first_line(text: str, first_line: str) -> str:
    rest = text[len(first_line):]
    return rest[2:] if rest.startswith("\r\n") else rest[1:]


def _other_separator(first_line: str, required: list[str]) -> str | None:
    """How the header is separated when it holds every required column split on another separator than
    the comma, quoted (as LibreOffice writes with "quote all text cells") or not."""
    for separator, described in _SEPARATORS.items():
        names = next(csv.reader([first_line], delimiter=separator), [])
        if set(required) <= {clean_text(name)[0].strip() for name in names}:
            return described
    return None


def _hangul_lost(name: str, rows: list[int], columns: list[str], table: list[list[str]]) -> list[DataIssue]:
    """Cells whose words became question marks: saved as "ANSI" (Excel's plain "CSV (Comma delimited)", Notepad)
    on a Windows without the Korean code page, which writes every character it cannot encode as '?'. In a file
    without a single Hangul letter one such word tells; in a file with Hangul (rows pasted from such an export),
    a cell of two or more such words and no letter at all."""
    file_lost = not any(_HANGUL.search(value) for values in table for value in values)
    issues = []
    for row, values in zip(rows, table):
        for column, value in zip(columns, values):
            words = _QUESTION_MARK_WORD.findall(value)
            if file_lost and words:
                issues.append(DataIssue(name, row, column, "the cell has words made only of question marks and the "
                                        "file has no Hangul at all: the Hangul was replaced by '?' when the file was "
                                        "saved in a legacy encoding", 'export it again from the original as "CSV UTF-8"'))
            elif len(words) >= 2 and not any(char.isalpha() for char in value):
                issues.append(DataIssue(name, row, column, "the cell has only words made of question marks: its "
                                        "Hangul was replaced by '?' when it was saved in a legacy encoding (pasted "
                                        "from an \"ANSI\" export?)", "restore the text from the original"))
    return issues[:5] if file_lost else issues


def _header_issues(
    name: str, header: list[str], required: list[str], optional: tuple[str, ...], notes: list[DataIssue]
) -> list[DataIssue]:
    """Duplicated or missing column names (errors); unknown or unnamed columns (notes)."""
    issues = []
    known = set(required) | set(optional)
    # Only a column that is read must be unique; an ignored one may repeat (two `비고` columns, say).
    for column in sorted({c for c in header if c in known and header.count(c) > 1}):
        positions = ", ".join(str(i + 1) for i, c in enumerate(header) if c == column)
        issues.append(DataIssue(name, 1, column, f"the column name appears more than once (columns {positions})",
                                "delete the extra column or rename it"))
    problem = next(filter(None, map(character_problem, header)), None)
    if problem:
        issues.append(DataIssue(name, 1, None, f"the header contains {problem[0]}", problem[1]))
    unknown = list(dict.fromkeys(c for c in header if c and c not in known))
    missing = [c for c in required if c not in header]
    for column in missing:
        # Beside a missing column, an unknown one is likely its rename.
        found = f" (found instead: {', '.join(unknown)})" if unknown else ""
        issues.append(DataIssue(name, 1, column, f"required column is missing{found}",
                                f"add a column named '{column}' (names are case- and space-sensitive)"))
    for column in unknown:
        notes.append(DataIssue(name, 1, column, "unknown column: ignored",
                               f"check its spelling; the columns read are {', '.join(required + list(optional))}"))
    unnamed = [i + 1 for i, c in enumerate(header) if not c and i > 0]
    if unnamed:
        notes.append(DataIssue(name, 1, None, f"column(s) {unnamed} have no name: ignored", "name or delete them"))
    return issues
