"""An input file's bytes as UTF-8 text, or a DataValidationError saying what the file really is: a workbook,
a web page, UTF-16 or cp949 text, a file damaged into NUL bytes, a path that is a directory."""

from __future__ import annotations

import csv
import errno
import io
from pathlib import Path

from ohlora_assets.core.data_issues import file_issue

UTF8_BOM = b"\xef\xbb\xbf"


def read_input_bytes(path: str | Path) -> bytes:
    """The file's bytes, or a DataValidationError saying what the path really is."""
    try:
        return Path(path).read_bytes()
    except OSError as err:
        raise file_issue(str(path), *path_problem(err, Path(path))) from None


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
    b"pk\x03\x04": ("a zipped workbook (Excel .xlsx, LibreOffice .ods or Numbers)", ""),
    b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1": ("an old Excel workbook (.xls)", ""),
    b"\x1f\x8b": ("a gzip-compressed file", "decompress it (gunzip) and point the path at the file inside"),
    b"bzh": ("a bzip2-compressed file", "decompress it (bunzip2) and point the path at the file inside"),
    b"\xfd7zxz\x00": ("an xz-compressed file", "decompress it (unxz) and point the path at the file inside"),
    b"7z\xbc\xaf\x27\x1c": ("a 7-Zip archive", "extract it and point the path at the file inside"),
    b"(\xb5/\xfd": ("a zstd-compressed file", "decompress it (unzstd) and point the path at the file inside"),
    b"%pdf-": ("a PDF document", ""),
    (b"<!doctype html", b"<html"): ("a web page (HTML), as a browser saves a sign-in or preview page",
                                    "download the file itself, not the page that shows it"),
    b"version https://git-lfs.github.com/spec/": ("a Git LFS pointer: the file's content was never downloaded",
                                                  "run `git lfs pull` in the repository that holds it"),
}
# How each kind of text file is saved again as UTF-8.
_SAVE_AS_UTF8 = {"CSV": 'export it again as "CSV UTF-8"', "JSON": "save it again as UTF-8 JSON"}
_NUL_RUN = bytes(16)  # UTF-16 text has no run of zero bytes this long; a file cut short by a crash does


def decode_utf8(raw: bytes, name: str, kind: str = "CSV") -> str:
    """UTF-8 text (a leading BOM, as spreadsheets write it, is dropped); other formats are named.
    `kind` is CSV or JSON: how the fixes are worded, and whether a spreadsheet row is named beside the line."""
    export = _SAVE_AS_UTF8[kind]
    head = raw[:1024].removeprefix(UTF8_BOM).lstrip()[:64].lower()  # no copy of a large file
    for signature, (what, fix) in _OTHER_FORMATS.items():
        if head.startswith(signature):
            raise file_issue(name, f"this is {what}, not {kind} text", fix or export)
    bom = raw.startswith(UTF8_BOM)
    raw = raw.removeprefix(UTF8_BOM)
    damaged = raw.find(_NUL_RUN)
    if damaged >= 0:
        line, row = _line_and_row(raw, damaged, kind)
        raise file_issue(name, f"from {_where(line, row)} on, the file holds NUL bytes instead of text: it was "
                          "damaged or not fully written (a crash or a full disk while it was saved)",
                          "restore it from a backup, or export it again", row=row)
    if _looks_utf16(raw):
        raise file_issue(name, 'the file is UTF-16 text ("Unicode text" export), not UTF-8', export)
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as err:
        line, row = _line_and_row(raw, err.start, kind)
        where = _where(line, row)
        offset = err.start + (len(UTF8_BOM) if bom else 0)
        problem = f"the file is not valid UTF-8 (invalid byte on {where}, byte {offset} of the file)"
        if err.reason == "unexpected end of data" and err.end == len(raw):
            raise file_issue(name, f"the file ends in the middle of a character ({where}): it was cut short, still "
                             "being saved or copied", "wait until it is fully written (or copy it again)", row=row)
        line_start = max(raw.rfind(b"\n", 0, err.start), raw.rfind(b"\r", 0, err.start)) + 1
        line_end = min((i for i in (raw.find(b"\n", err.start), raw.find(b"\r", err.start)) if i >= 0), default=len(raw))
        if _decodes(raw, "cp949"):
            problem = f"the file is not valid UTF-8: it is cp949/EUC-KR (Windows Korean) text (from {where})"
        elif _decodes(raw[line_start:line_end], "cp949"):
            problem = (f"the file is UTF-8, but {where} is cp949/EUC-KR (Windows Korean) text: it was pasted from "
                       "another export")
        raise file_issue(name, problem, export, row=row) from None


def _line_and_row(raw: bytes, position: int, kind: str) -> tuple[int, int | None]:
    """(line, spreadsheet row) of byte `position`: lines end in LF, CRLF or CR alone (a Mac-format CSV).
    A JSON file has lines only: its row is None."""
    before = raw[:position]
    line = before.count(b"\n") + before.count(b"\r") - before.count(b"\r\n") + 1
    if kind != "CSV":
        return line, None
    return line, _row_of(before.decode("utf-8", errors="replace"), line)


def _where(line: int, row: int | None) -> str:
    return f"line {line}" + (f", spreadsheet row {row}" if row not in (None, line) else "")


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
