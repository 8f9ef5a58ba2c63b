"""Per-user sanction log in SQLite (WAL), safe under concurrent turns.

The original rewrote a CSV per event, so when several categories fired in one turn (or two turns
raced) all but the last write were lost. Here one turn's "is this user blocked" check, level lookup
and inserts are one `BEGIN IMMEDIATE` transaction: turns queue on SQLite's write lock (busy timeout)
and are decided as if they came one after the other, so two racing offences of one user give one
block and one refusal, never two sanctions.
"""

from __future__ import annotations

import contextlib
import sqlite3
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterator

from ohlora_assets.core.ethics.gate import Sanction, sanctions_for, total_block

BUSY_TIMEOUT_MS = 60_000

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


class SanctionLog:
    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self._connect() as connection, self._immediate(connection):
            for statement in _SCHEMA:  # not executescript: it would commit our open transaction
                connection.execute(statement)

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
        per category in `categories` (the turn's block candidates, possibly none)."""
        with self._connect() as connection, self._immediate(connection):
            (active,) = connection.execute(
                "SELECT MAX(blocked_until) FROM sanctions WHERE user_id = ?", (user,)
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
