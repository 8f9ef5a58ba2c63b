"""Per-user sanction log in SQLite (WAL), safe under concurrent writers.

The original rewrote a CSV per event, so when several categories fired in one turn (or two turns
raced) all but the last write were lost. Here the level lookup and the inserts of one turn are one
`BEGIN IMMEDIATE` transaction: writers queue on SQLite's lock (busy timeout), none overwrites another.
"""

from __future__ import annotations

import contextlib
import sqlite3
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

    def blocked_until(self, user: str, now: datetime) -> datetime | None:
        """End of the user's active block, or None when they may chat."""
        with self._connect() as connection:
            (until,) = connection.execute(
                "SELECT MAX(blocked_until) FROM sanctions WHERE user_id = ?", (user,)
            ).fetchone()
        if until is None or until <= now.timestamp():
            return None
        return datetime.fromtimestamp(until, tz=timezone.utc)

    def record(self, user: str, categories: list[str], now: datetime) -> tuple[list[Sanction], datetime]:
        """Log one turn's sanctions (one row per category) and return them with the block's end."""
        with self._connect() as connection, self._immediate(connection):
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
        return sanctions, until

    def history(self, user: str | None = None) -> list[dict]:
        """Rows in insertion order, for tests and audits."""
        query = "SELECT user_id, category, level, block_days, created_at, blocked_until FROM sanctions"
        params: tuple = ()
        if user is not None:
            query += " WHERE user_id = ?"
            params = (user,)
        with self._connect() as connection:
            connection.row_factory = sqlite3.Row
            return [dict(row) for row in connection.execute(query + " ORDER BY id", params)]
