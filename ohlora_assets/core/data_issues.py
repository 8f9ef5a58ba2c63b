"""What is wrong with an input file, located the way a spreadsheet user finds it: file, row, column, and a fix.

Every reader collects its DataIssues before raising one DataValidationError with all of them; notes are
DataIssues too, for oddities that were accepted (and the changes made on the way in).
"""

from __future__ import annotations

from dataclasses import dataclass


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


ISSUES_SHOWN_PER_KIND = 5


def by_kind(issues: list[DataIssue]) -> list[tuple[list[DataIssue], list[DataIssue]]]:
    """(the first ISSUES_SHOWN_PER_KIND, the rest) per kind of issue (file, column and fix): a wrong column in a big
    file is thousands of issues that would bury the one cause, and a page or a log of megabytes."""
    kinds: dict[tuple, list[DataIssue]] = {}
    for issue in issues:
        kinds.setdefault((issue.file, issue.column, issue.fix), []).append(issue)
    return [(found[:ISSUES_SHOWN_PER_KIND], found[ISSUES_SHOWN_PER_KIND:]) for found in kinds.values()]


def more_rows(rest: list[DataIssue]) -> str:
    """`12 more (40-388)`: how many issues a bounded table or log leaves out, and their rows."""
    rows = [i.row for i in rest if i.row is not None]
    return f"{len(rest)} more" + (f" ({min(rows)}-{max(rows)})" if rows else "")


def file_issue(name: str, problem: str, fix: str, row: int | None = None) -> DataValidationError:
    """The error for a problem of the whole file (or of one row of it), before any cell is read."""
    return DataValidationError([DataIssue(name, row, None, problem, fix)])


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
