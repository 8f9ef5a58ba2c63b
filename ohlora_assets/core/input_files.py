"""Reading the files a user edits (CSV, JSON) without altering them silently.

Every problem becomes a DataIssue located by file, row and column, with a plain fix; all of them are
collected before one DataValidationError is raised. The few changes made on the way in are the same
for every cell and reported as notes: Unicode is normalized to NFC, invisible characters (zero-width
space, word joiner, Hangul fillers, bidi marks) are removed, line breaks inside cells become "\\n".
Checks of emptiness and duplication downstream therefore see the text a person sees.
"""

from __future__ import annotations

import contextlib
import csv
import errno
import io
import re
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

UTF8_BOM = b"\xef\xbb\xbf"
DEFAULT_MAX_CELL_CHARS = 5_000

# Characters that render as nothing (soft hyphen, grapheme joiner, zero-width space and non-joiner, bidi and
# Mongolian marks, word joiner, Hangul fillers, BOM) and are dropped wherever they are.
_INVISIBLE = re.compile(
    "[\u00ad\u034f\u061c\u115f\u1160\u180b-\u180f\u200b\u200c\u200e\u200f\u202a-\u202e\u2060-\u2064"
    "\u2066-\u2069\u3164\ufeff\uffa0]"
)
# Zero-width joiner, variation selectors and tag characters: parts of emoji sequences (👩‍💻, ❤️, 1️⃣,
# subdivision flags), kept there and dropped anywhere else, where they render as nothing.
_EMOJI_PARTS = re.compile("[\u200d\ufe00-\ufe0f\U000e0020-\U000e007f]")
_BLACK_FLAG = "\U0001f3f4"
# Line and paragraph separators are line breaks; the braille blank renders as a space.
_AS_LINE_BREAK = str.maketrans({"\u2028": "\n", "\u2029": "\n"})
_BRAILLE_BLANK = "\u2800"
_ALLOWED_CONTROLS = {"\n", "\t"}
# A line that git writes around the two sides of a merge conflict, inside a cell or as a row of its own.
_CONFLICT_MARKER = re.compile(r"^(?:<{7}|>{7})(?: .*)?$|^={7}$", re.MULTILINE)
# What Excel and Google Sheets write into a cell whose formula failed.
SPREADSHEET_ERRORS = frozenset({
    "#NULL!", "#DIV/0!", "#VALUE!", "#REF!", "#NAME?", "#NUM!", "#N/A", "#ERROR!", "#SPILL!", "#CALC!",
    "#GETTING_DATA", "#FIELD!", "#BLOCKED!", "#CONNECT!", "#BUSY!", "#UNKNOWN!",
})


@dataclass(frozen=True)
class DataIssue:
    """One problem (or note) in an input file, located the way a spreadsheet user finds it.

    `row` is the spreadsheet row number (the header is row 1, the first record row 2), or the
    1-based group number of a JSON file (`unit="group"`); None means the whole file.
    """

    file: str
    row: int | None
    column: str | None
    message: str
    fix: str = ""
    unit: str = "row"

    def __str__(self) -> str:
        where = self.file
        if self.row is not None:
            where += f", {self.unit} {self.row}"
        if self.column is not None:
            where += f", column '{self.column}'"
        fix = f" (fix: {self.fix})" if self.fix else ""
        return f"{where}: {self.message}{fix}"


class DataValidationError(ValueError):
    """Raised with every issue found, not only the first."""

    def __init__(self, issues: list[DataIssue]):
        self.issues = issues
        shown = "\n".join(f"  - {issue}" for issue in issues[:50])
        more = f"\n  ... and {len(issues) - 50} more" if len(issues) > 50 else ""
        super().__init__(f"{len(issues)} problem(s) in input data:\n{shown}{more}")


@dataclass
class CsvTable:
    """A CSV read as strings: `frame` is indexed by spreadsheet row; `notes` are accepted oddities."""

    frame: pd.DataFrame
    notes: list[DataIssue] = field(default_factory=list)


def read_input_bytes(path: str | Path) -> bytes:
    """The file's bytes, or a DataValidationError saying what the path really is."""
    try:
        return Path(path).read_bytes()
    except OSError as err:
        raise _file_issue(str(path), *path_problem(err, Path(path))) from None


def path_problem(err: OSError, path: Path) -> tuple[str, str]:
    """(problem, fix) for a path that could not be read: a directory is not "not found"."""
    if isinstance(err, IsADirectoryError):
        return "this path is a directory, not a file", "point the path setting at the file inside it"
    if isinstance(err, FileNotFoundError):
        if path.is_symlink():
            return "this is a symbolic link to a file that does not exist", "re-create the link"
        return "file not found", "set the path in the `paths` resource or its environment variable"
    if isinstance(err, PermissionError):
        return "the file cannot be read (permission denied)", "make it readable: chmod a+r"
    if err.errno == errno.ELOOP:
        return "symbolic link loop: the link points back to itself", "re-create the link"
    return f"the file cannot be read: {err.strerror}", "check the disk and the path"


# Files that are not CSV at all, by how they begin (lower-cased, after a BOM and leading blanks): a
# signature or a tuple of them, as `bytes.startswith` takes.
_OTHER_FORMATS = {
    b"pk\x03\x04": ("an Excel workbook (.xlsx) with a .csv name", ""),
    b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1": ("an old Excel workbook (.xls) with a .csv name", ""),
    b"\x1f\x8b": ("a gzip-compressed file", "decompress it (gunzip) and point the path at the .csv inside"),
    b"%pdf-": ("a PDF document", ""),
    (b"<!doctype html", b"<html"): ("a web page (HTML), as a browser saves a sign-in or preview page",
                                    "download the sheet itself: File > Download > Comma-separated values (.csv)"),
    b"version https://git-lfs.github.com/spec/": ("a Git LFS pointer: the file's content was never downloaded",
                                                  "run `git lfs pull` in the repository that holds it"),
}


def decode_utf8(raw: bytes, name: str) -> str:
    """UTF-8 text (a leading BOM, as spreadsheets write it, is dropped); other formats are named."""
    export = 'export it again as "CSV UTF-8"'
    head = raw[:1024].removeprefix(UTF8_BOM).lstrip()[:64].lower()  # no copy of a large file
    for signature, (what, fix) in _OTHER_FORMATS.items():
        if head.startswith(signature):
            raise _file_issue(name, f"this is {what}, not CSV text", fix or export)
    if _looks_utf16(raw):
        raise _file_issue(name, 'the file is UTF-16 text ("Unicode text" export), not UTF-8', export)
    bom = raw.startswith(UTF8_BOM)
    raw = raw.removeprefix(UTF8_BOM)
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as err:
        line = raw.count(b"\n", 0, err.start) + 1
        row = _row_of(raw[: err.start].decode("utf-8", errors="replace"), line)
        where = f"line {line}" + (f", spreadsheet row {row}" if row != line else "")
        offset = err.start + (len(UTF8_BOM) if bom else 0)
        problem = f"the file is not valid UTF-8 (invalid byte on {where}, byte {offset} of the file)"
        line_start, line_end = raw.rfind(b"\n", 0, err.start) + 1, raw.find(b"\n", err.start)
        if _decodes(raw, "cp949"):
            problem = f"the file is not valid UTF-8: it is cp949/EUC-KR (Windows Korean) text (from {where})"
        elif _decodes(raw[line_start: len(raw) if line_end < 0 else line_end], "cp949"):
            problem = (f"the file is UTF-8, but {where} is cp949/EUC-KR (Windows Korean) text: it was pasted from "
                       "another export")
        raise _file_issue(name, problem, export, row=row) from None


def _looks_utf16(raw: bytes) -> bool:
    """A byte-order mark, or without one a zero byte beside every ASCII letter of the header."""
    head = raw[:64]
    zeros = max(head[0::2].count(0), head[1::2].count(0))
    return raw.startswith((b"\xff\xfe", b"\xfe\xff")) or (len(head) >= 8 and zeros >= len(head) // 4)


def _decodes(raw: bytes, encoding: str) -> bool:
    try:
        raw.decode(encoding)
        return True
    except UnicodeDecodeError:
        return False


def _row_of(prefix: str, line: int) -> int:
    """The spreadsheet row (header = 1) of the record that the text after `prefix` belongs to: `line`
    unless a cell above spans lines."""
    try:
        # One character after the prefix, so that a prefix ending a line counts the record that follows.
        return sum(1 for _ in csv.reader(io.StringIO(prefix + "x", newline="")))
    except csv.Error:
        return line


def _file_issue(name: str, problem: str, fix: str, row: int | None = None) -> DataValidationError:
    return DataValidationError([DataIssue(name, row, None, problem, fix)])


def _is_emoji(char: str) -> bool:
    return bool(char) and unicodedata.category(char) in ("So", "Sk")


def _in_emoji_sequence(text: str, position: int) -> bool:
    """Whether the joiner, selector or tag at `position` belongs to the emoji sequence around it."""
    char, before = text[position], text[position - 1] if position else ""
    after = text[position + 1: position + 2]
    if char == "\u200d":  # joins two emoji, the first possibly with its selector
        return (_is_emoji(before) or before == "\ufe0f") and _is_emoji(after)
    if "\U000e0020" <= char <= "\U000e007f":  # a run of tags after a black flag
        return before == _BLACK_FLAG or "\U000e0020" <= before <= "\U000e007f"
    # A variation selector styles a symbol, digit or punctuation (keycaps); after a letter or space it does nothing.
    return bool(before) and not before.isspace() and not unicodedata.category(before).startswith(("L", "M"))


def _drop_invisible(text: str) -> str:
    text = _INVISIBLE.sub("", text)
    return _EMOJI_PARTS.sub(lambda m: m.group() if _in_emoji_sequence(m.string, m.start()) else "", text)


def _newlines(text: str) -> str:
    """`text` with CRLF and CR line breaks as "\\n", as the csv module counts lines."""
    return text.replace("\r\n", "\n").replace("\r", "\n") if "\r" in text else text


def clean_text(text: str) -> tuple[str, set[str]]:
    """`text` in NFC without invisible characters and with "\\n" line breaks; what changed."""
    changes = set()
    text = _newlines(text).translate(_AS_LINE_BREAK)
    nfc = unicodedata.normalize("NFC", text)
    if nfc != text:
        changes.add("nfc")
    visible = _drop_invisible(nfc).replace(_BRAILLE_BLANK, " ")
    if visible != nfc:
        changes.add("invisible")
    return visible, changes


def character_problem(text: str) -> tuple[str, str] | None:
    """(what, fix) for the first character in `text` that must not be there: a control character (tab and
    line break allowed), or U+FFFD, which a program writes where it could not decode a character."""
    for position, char in enumerate(text, 1):
        if unicodedata.category(char) == "Cc" and char not in _ALLOWED_CONTROLS:
            kind = "a NUL byte" if char == "\0" else "a control character"
            fix = "delete that character (it is invisible in most editors)"
            return f"{kind} (U+{ord(char):04X}) at character {position}", fix
        if char == "\ufffd":
            return (f"the replacement character \ufffd (U+FFFD) at character {position}: the text was damaged by an "
                    "earlier conversion between encodings", "restore the text from the original and save it as UTF-8")
    return None


def _single_byte_readings() -> dict[str, int]:
    """Character -> byte, as Latin-1 (every byte as the code point of its value, which is also what Windows,
    and so Excel, does with the five bytes Windows-1252 leaves undefined) and as Windows-1252 reads 0x80-0x9F.
    No character is both: Windows-1252's are outside U+0000-U+00FF."""
    table = {chr(byte): byte for byte in range(256)}
    for byte in range(0x80, 0xA0):
        with contextlib.suppress(UnicodeDecodeError):
            table[bytes([byte]).decode("cp1252")] = byte
    return table


_SINGLE_BYTE_READINGS = _single_byte_readings()


def double_encoding_problem(text: str) -> tuple[str, str] | None:
    """(what, fix) when `text` is UTF-8 that a program read as Windows-1252 or Latin-1 and saved again:
    `로라야` becomes `ë¡œë¼ì•¼`, which is valid text and would otherwise pass every later check. Read
    from the cell as it is in the file, before `clean_text` drops the soft hyphens such text holds."""
    if text.isascii():
        return None
    try:
        original = bytes(_SINGLE_BYTE_READINGS[char] for char in text).decode("utf-8")
    except (KeyError, UnicodeDecodeError):  # a character outside Windows-1252, or bytes that are not UTF-8
        return None
    shown = text if len(text) <= 24 else text[:24] + "..."
    was = original if len(original) <= 16 else original[:16] + "..."
    return (f"text that was UTF-8 read as Windows-1252 or Latin-1 and saved again ({shown!r} was {was!r})",
            'export the sheet again from the original file as "CSV UTF-8"; when a spreadsheet opens a CSV, '
            "import it as UTF-8 (Data > From Text/CSV) instead of opening it directly")


def cell_problem(typed: str, cleaned: str) -> tuple[str, str] | None:
    """(what, fix) for a cell or word: `typed` as the file holds it, `cleaned` as `clean_text` returns it."""
    return double_encoding_problem(typed) or character_problem(cleaned)


_CHANGE_NOTES = {
    "nfc": ("cells were in decomposed Unicode (NFD, as macOS writes Hangul) and were normalized to NFC",
            "none needed; save as NFC to silence this note"),
    "invisible": ("cells held invisible characters (zero-width space, word joiner, Hangul filler, ...): removed",
                  "none needed; delete them in the file to silence this note"),
}


def change_notes(name: str, first_change: dict[str, tuple[int | None, str | None]], counts: dict[str, int],
                 unit: str = "row") -> list[DataIssue]:
    """One note per kind of change made by clean_text, located at its first occurrence."""
    notes = []
    for change, count in counts.items():
        message, fix = _CHANGE_NOTES[change]
        row, column = first_change[change]
        notes.append(DataIssue(name, row, column, f"{count} {message}", fix, unit))
    return notes


def _quote_problem(record_text: str, header: list[str]) -> tuple[str | None, str]:
    """(column, problem) for the quote that broke the record starting `record_text`."""
    record_text = _newlines(record_text)  # lines are counted in any ending
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
            if "field larger than field limit" in str(err):
                column, problem, fix = None, f"a cell is longer than {csv.field_size_limit():,} characters", (
                    "shorten it, or raise max_cell_chars in the dataset's run config")
            else:
                column, problem = _quote_problem("".join(lines[start_line - 1:]), header)
                fix = _QUOTE_FIX
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
    until a later quote happened to close it, and took the rows between with it."""
    issues = []
    for column, cell in zip(header, cells):
        continued = _newlines(cell).split("\n")[1:]
        lookalikes = sum(1 for line in continued if len(next(csv.reader([line]), [])) == len(header) > 1)
        if lookalikes:
            issues.append(DataIssue(
                name, row, column, f"this quoted cell runs over {len(continued) + 1} lines and {lookalikes} of them "
                f"read as rows of their own ({len(header)} cells): a quote is probably unbalanced, and those rows "
                "were swallowed into this cell", _QUOTE_FIX))
    return issues


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
        raise _file_issue(name, "the file is empty", "export the sheet again; the first line must be the column names")
    with _csv_field_limit(max_cell_chars):
        header, rows, records, issues = _parse(text, name)
    if issues and not header:  # the header itself is broken: nothing below can be named
        raise DataValidationError(issues)
    if not any(header):
        raise _file_issue(name, "the first line is empty: the column names must be on it",
                          "delete the empty line(s) above the column names", row=1)
    separator = _other_separator(header, required_columns)
    if separator:
        raise _file_issue(name, f"the cells are separated by {separator}, not commas",
                          'export it again as "CSV UTF-8 (comma delimited)"', row=1)
    notes: list[DataIssue] = []
    issues += _header_issues(name, header, required_columns, optional_columns, notes)
    if not issues and not records:
        raise _file_issue(name, "the file has column names but no rows",
                          "add rows below the header, or point the path at the right file")

    known = set(required_columns) | set(optional_columns)
    keep = [i for i, column in enumerate(header) if column in known]
    kept_names = [header[i] for i in keep]
    first_change: dict[str, tuple[int | None, str | None]] = {}
    change_counts: dict[str, int] = {}
    table = []
    for row_number, cells in zip(rows, records):
        marker = next((m for cell in cells if (m := _CONFLICT_MARKER.search(cell))), None)
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
            if value.strip().upper() in SPREADSHEET_ERRORS:
                issues.append(DataIssue(
                    name, row_number, header[i], f"the cell holds the spreadsheet error {value.strip()!r}: a formula "
                    "failed in the sheet, and the export wrote its error instead of text",
                    "fix the formula (or paste the values over it) and export again"))
            if len(value) > max_cell_chars:
                issues.append(DataIssue(
                    name, row_number, header[i], f"the cell has {len(value):,} characters; the limit is "
                    f"{max_cell_chars:,}", "shorten it, or raise max_cell_chars in the dataset's run config"))
            values.append(value)
        table.append(values)
    if issues:
        raise DataValidationError(issues)
    notes += change_notes(name, first_change, change_counts)
    skipped = rows[-1] - 1 - len(records)  # empty rows between the first and the last record
    if skipped:
        notes.append(DataIssue(name, None, None, f"{skipped} entirely empty row(s) were skipped",
                               "none needed; delete them to silence this note"))
    frame = pd.DataFrame(table, columns=kept_names, index=pd.Index(rows, name="row"), dtype=str)
    return CsvTable(frame, notes)


_SEPARATORS = {";": "semicolons (;), as a spreadsheet in a European locale writes", "\t": "tabs", "|": "bars (|)"}


def _other_separator(header: list[str], required: list[str]) -> str | None:
    """How the header is separated when its first name holds every required column split on another separator."""
    for separator, described in _SEPARATORS.items():
        if set(required) <= {name.strip() for name in header[0].split(separator)}:
            return described
    return None


def _header_issues(
    name: str, header: list[str], required: list[str], optional: tuple[str, ...], notes: list[DataIssue]
) -> list[DataIssue]:
    """Duplicated or missing column names (errors); unknown or unnamed columns (notes)."""
    issues = []
    for column in sorted({c for c in header if c and header.count(c) > 1}):
        positions = ", ".join(str(i + 1) for i, c in enumerate(header) if c == column)
        issues.append(DataIssue(name, 1, column, f"the column name appears more than once (columns {positions})",
                                "delete the extra column or rename it"))
    problem = next(filter(None, map(character_problem, header)), None)
    if problem:
        issues.append(DataIssue(name, 1, None, f"the header contains {problem[0]}", problem[1]))
    known = set(required) | set(optional)
    unknown = [c for c in header if c and c not in known]
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
