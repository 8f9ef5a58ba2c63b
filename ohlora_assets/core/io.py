"""File I/O shared by every stage: strict CSV reading, content hashes, atomic artifact writes."""

from __future__ import annotations

import contextlib
import csv
import hashlib
import io
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import pandas as pd

UTF8_BOM = b"\xef\xbb\xbf"


@dataclass(frozen=True)
class DataIssue:
    """One problem in an input file, located the way a spreadsheet user finds it.

    `row` is the spreadsheet row number (the header is row 1, the first record row 2);
    None means the problem concerns the whole file.
    """

    file: str
    row: int | None
    column: str | None
    message: str

    def __str__(self) -> str:
        where = self.file
        if self.row is not None:
            where += f", row {self.row}"
        if self.column is not None:
            where += f", column '{self.column}'"
        return f"{where}: {self.message}"


class DataValidationError(ValueError):
    """Raised with every issue found, not only the first."""

    def __init__(self, issues: list[DataIssue]):
        self.issues = issues
        shown = "\n".join(f"  - {issue}" for issue in issues[:50])
        more = f"\n  ... and {len(issues) - 50} more" if len(issues) > 50 else ""
        super().__init__(f"{len(issues)} problem(s) in input data:\n{shown}{more}")


def content_hash(path: str | Path) -> str:
    """SHA-256 of a file's bytes: the data version of a raw source."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def directory_hash(path: str | Path, suffixes: tuple[str, ...] = (".safetensors",)) -> str:
    """SHA-256 over the files with the given suffixes (the weights), in name order."""
    digest = hashlib.sha256()
    root = Path(path)
    for file in sorted(p for p in root.rglob("*") if p.is_file() and p.suffix in suffixes):
        digest.update(str(file.relative_to(root)).encode())
        digest.update(content_hash(file).encode())
    return digest.hexdigest()


def _line_of_offset(data: bytes, offset: int) -> int:
    return data.count(b"\n", 0, offset) + 1


def read_csv_strict(path: str | Path, required_columns: list[str]) -> pd.DataFrame:
    """Read a UTF-8 CSV as strings, or raise DataValidationError naming file, row and column.

    Rejected: a missing file, a BOM, bytes that are not UTF-8 (cp949 exports are the usual
    cause), malformed CSV, and missing columns. Empty cells become "" (never NaN) so that
    "empty" has one meaning downstream.
    """
    name = str(path)
    if not Path(path).is_file():
        raise DataValidationError([DataIssue(name, None, None, "file not found")])
    raw = Path(path).read_bytes()
    if raw.startswith(UTF8_BOM):
        raise DataValidationError(
            [DataIssue(name, 1, None, "file starts with a UTF-8 byte-order mark; save it as UTF-8 without BOM")]
        )
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as err:
        hint = ""
        with contextlib.suppress(UnicodeDecodeError):
            raw.decode("cp949")
            hint = " (it decodes as cp949/EUC-KR: re-save it as UTF-8)"
        raise DataValidationError(
            [DataIssue(name, _line_of_offset(raw, err.start), None, f"not valid UTF-8 at byte {err.start}{hint}")]
        ) from None
    try:
        frame = pd.read_csv(io.StringIO(text), dtype=str, keep_default_na=False, na_filter=False)
    except (pd.errors.ParserError, csv.Error) as err:
        raise DataValidationError([DataIssue(name, None, None, f"malformed CSV: {err}")]) from None

    missing = [column for column in required_columns if column not in frame.columns]
    if missing:
        # Extra columns are harmless on their own; beside a missing one they are likely its rename.
        extra = [c for c in frame.columns if c not in required_columns and not c.startswith("Unnamed")]
        rename_hint = f" (found instead: {', '.join(extra)})" if extra else ""
        raise DataValidationError(
            [DataIssue(name, 1, column, f"required column is missing{rename_hint}") for column in missing]
        )
    return frame


def spreadsheet_row(position: int) -> int:
    """0-based record position -> spreadsheet row number (header is row 1)."""
    return position + 2


@contextlib.contextmanager
def atomic_directory(target: str | Path) -> Iterator[Path]:
    """Yield a temporary directory beside `target`; on success it replaces `target` in one rename.

    On any exception the temporary directory is removed and `target` is left as it was, so a
    crashed or failed run never leaves a half-written model where a reader looks.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
    try:
        yield staging
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    retired = None
    if target.exists():
        retired = target.parent / f".{target.name}.old-{os.getpid()}"
        shutil.rmtree(retired, ignore_errors=True)
        os.replace(target, retired)
    os.replace(staging, target)
    if retired is not None:
        shutil.rmtree(retired, ignore_errors=True)


def atomic_write_bytes(target: str | Path, payload: bytes) -> None:
    """Write a file through a temporary sibling and one rename."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, staging = tempfile.mkstemp(prefix=f".{target.name}.tmp-", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(payload)
        os.replace(staging, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.remove(staging)
        raise
