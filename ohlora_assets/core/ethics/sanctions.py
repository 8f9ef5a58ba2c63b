"""Per-user sanction log in SQLite (WAL), safe under concurrent turns.

The original rewrote a CSV per event, so when several categories fired in one turn (or two turns
raced) all but the last write were lost. Here one turn's "is this user blocked" check, level lookup
and inserts are one `BEGIN IMMEDIATE` transaction: turns queue on SQLite's write lock (busy timeout)
and are decided as if they came one after the other, so two racing offences of one user give one
block and one refusal, never two sanctions.

The log is created whole (schema written in a temporary file, then linked into place), so an existing
empty file is never a new log: it is a log that lost its sanctions, and is refused rather than restarted.
User ids are compared as a person reads them (NFC, without surrounding spaces), whichever caller logs.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import unicodedata
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterator

from ohlora_assets.core.ethics.gate import Sanction, sanctions_for, total_block

BUSY_TIMEOUT_MS = 60_000
# Datetimes the log can store and add a 1,461-day block to.
EARLIEST, LATEST = datetime(1970, 1, 2, tzinfo=timezone.utc), datetime(9000, 1, 1, tzinfo=timezone.utc)

_SCHEMA = (
    """
CREATE TABLE IF NOT EXISTS sanctions (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    user_id TEXT NOT NULL,
    category TEXT NOT NULL,
    level INTEGER NOT NULL,
    block_days REAL NOT NULL,
    created_at REAL NOT NULL,     -- unix seconds, UTC
    blocked_until REAL NOT NULL   -- end of the whole turn's block; = created_at for a warning
)""",
    "CREATE INDEX IF NOT EXISTS sanctions_user_category ON sanctions (user_id, category, level)",
    "CREATE INDEX IF NOT EXISTS sanctions_user_until ON sanctions (user_id, blocked_until)",
)


@dataclass(frozen=True)
class LoggedTurn:
    """What the log decided for one turn."""

    refused_until: datetime | None  # an earlier block still runs until then: nothing was logged
    sanctions: list[Sanction]  # logged this turn (none when refused or when nothing fired)
    blocked_until: datetime | None  # end of this turn's block (= now when it only warned)


class SanctionLogError(sqlite3.DatabaseError):
    """The log file exists but is not a usable log; the message names it."""


def user_key(user: object) -> str:
    """The id a user's sanctions are logged under: NFC, stripped; raises on an id that names nobody."""
    if not isinstance(user, str):
        raise TypeError(f"user must be a str, not {type(user).__name__}")
    key = unicodedata.normalize("NFC", user).strip()
    if not key:
        raise ValueError("user must not be empty: sanctions are logged per user id")
    try:
        key.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("user is not valid UTF-8 text") from None
    return key


def checked_moment(now: object) -> datetime:
    """`now` as the log stores it; raises on a naive datetime (whose zone is a guess) or one out of range."""
    if not isinstance(now, datetime):
        raise TypeError(f"now must be a datetime, not {type(now).__name__}")
    if now.tzinfo is None or now.utcoffset() is None:
        raise ValueError("now must be timezone-aware (datetime.now(timezone.utc)), not naive")
    if not EARLIEST <= now <= LATEST:
        raise ValueError(f"now must be between {EARLIEST:%Y-%m-%d} and {LATEST:%Y-%m-%d}, not {now.isoformat()}")
    return now


class SanctionLog:
    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if not self.path.exists():
            self._create()
        elif self.path.is_file() and self.path.stat().st_size == 0:
            raise SanctionLogError(
                f"{self.path}: the sanction log is an empty file, so every sanction it held is lost (it was "
                "truncated or overwritten); restore it from a backup, or delete it to start a new log"
            )
        with self._connect() as connection, self._immediate(connection):
            for statement in _SCHEMA:  # not executescript: it would commit our open transaction
                connection.execute(statement)

    def _create(self) -> None:
        """A new log with its schema, appearing at `path` in one link; a racing creator's log wins intact."""
        staging = self.path.with_name(f".{self.path.name}.new-{os.getpid()}-{uuid.uuid4().hex}")
        # Mode 0666 less the umask, as SQLite would create it; SQLite makes a new database of an empty file.
        os.close(os.open(staging, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666))
        try:
            connection = sqlite3.connect(staging, isolation_level=None)
            try:
                connection.execute("PRAGMA journal_mode = WAL")  # stored in the file: every opener uses it
                for statement in _SCHEMA:
                    connection.execute(statement)
            finally:
                connection.close()
            with contextlib.suppress(FileExistsError):
                os.link(staging, self.path)
        finally:
            for leftover in (staging, *(staging.with_name(staging.name + end) for end in ("-wal", "-shm"))):
                leftover.unlink(missing_ok=True)

    @contextlib.contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        # isolation_level=None: we issue BEGIN IMMEDIATE ourselves so the write lock is taken before reading levels.
        connection = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None)
        try:
            connection.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            connection.execute("PRAGMA journal_mode = WAL")
            connection.execute("PRAGMA synchronous = NORMAL")
            yield connection
        finally:
            connection.close()

    @staticmethod
    @contextlib.contextmanager
    def _immediate(connection: sqlite3.Connection) -> Iterator[None]:
        connection.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            connection.execute("ROLLBACK")
            raise
        connection.execute("COMMIT")

    def record_turn(self, user: str, categories: list[str], now: datetime) -> LoggedTurn:
        """Refuse the turn if the user's block is still running at `now`; otherwise log one sanction
        per category in `categories` (the turn's block candidates, possibly none). A warning refuses
        nothing, even a turn whose `now` came before it was logged (turns are timed before scoring)."""
        user, now = user_key(user), checked_moment(now)
        with self._connect() as connection, self._immediate(connection):
            (active,) = connection.execute(
                "SELECT MAX(blocked_until) FROM sanctions WHERE user_id = ? AND blocked_until > created_at", (user,)
            ).fetchone()
            if active is not None and active > now.timestamp():
                return LoggedTurn(datetime.fromtimestamp(active, tz=timezone.utc), [], None)
            if not categories:
                return LoggedTurn(None, [], None)
            levels = dict(
                connection.execute(
                    "SELECT category, MAX(level) FROM sanctions WHERE user_id = ? GROUP BY category", (user,)
                ).fetchall()
            )
            sanctions = sanctions_for(categories, levels)
            until = now + total_block(sanctions)
            connection.executemany(
                "INSERT INTO sanctions (user_id, category, level, block_days, created_at, blocked_until)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                [(user, s.category, s.level, s.days, now.timestamp(), until.timestamp()) for s in sanctions],
            )
        return LoggedTurn(None, sanctions, until)
