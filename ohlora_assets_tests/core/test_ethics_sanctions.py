"""The sanction log: levels per category, several categories per turn, and concurrent writers."""

import multiprocessing
from collections import defaultdict
from datetime import datetime, timedelta, timezone

from ohlora_assets.core.ethics.gate import MAX_BLOCK_DAYS
from ohlora_assets.core.ethics.sanctions import SanctionLog
from ohlora_assets.core.ethics.categories import BLOCKABLE, HATE, LOVE, PAEDRIP, POLITICS

NOW = datetime(2026, 1, 1, 12, 0, tzinfo=timezone.utc)
PROCESSES, EVENTS = 8, 50


def test_levels_rise_per_category_and_periods_follow_the_table(tmp_path):
    log = SanctionLog(tmp_path / "log.sqlite")
    days = [log.record("u", [POLITICS], NOW)[0][0].days for _ in range(6)]
    assert days == [0, 3, 7, 30, 365, 365]
    (first_hate,), until = log.record("u", [HATE], NOW)
    assert (first_hate.level, first_hate.days) == (1, 1)  # other categories' levels do not count
    assert until == NOW + timedelta(days=1)
    assert [row["level"] for row in log.history("u") if row["category"] == POLITICS] == [1, 2, 3, 4, 5, 6]
    assert log.history("someone else") == []


def test_a_turn_with_several_categories_logs_each_and_adds_periods_up_to_the_cap(tmp_path):
    log = SanctionLog(tmp_path / "log.sqlite")
    sanctions, until = log.record("u", [PAEDRIP, HATE], NOW)
    assert [(s.category, s.level, s.days) for s in sanctions] == [(PAEDRIP, 1, 7), (HATE, 1, 1)]
    assert until == NOW + timedelta(days=8)
    assert log.blocked_until("u", NOW) == until
    assert log.blocked_until("u", until) is None  # the block ends exactly then
    for _ in range(2):
        log.record("u", [PAEDRIP, HATE], NOW)
    _, until = log.record("u", [PAEDRIP, HATE, LOVE, POLITICS], NOW)  # 1461 + 1461 + ... capped
    assert until == NOW + timedelta(days=MAX_BLOCK_DAYS)
    assert len(log.history("u")) == 2 + 2 + 2 + 4


def test_a_warning_does_not_block(tmp_path):
    log = SanctionLog(tmp_path / "log.sqlite")
    (warning,), until = log.record("u", [LOVE], NOW)
    assert warning.warning and until == NOW
    assert log.blocked_until("u", NOW) is None


def _writer(path: str, worker: int) -> None:
    log = SanctionLog(path)
    for event in range(EVENTS):
        categories = [BLOCKABLE[(worker + event) % 4]]
        if event % 10 == 0:  # the case the original CSV lost: several categories in one turn
            categories.append(BLOCKABLE[(worker + event + 1) % 4])
        log.record(f"user{event % 3}", categories, NOW)


def _expected_rows() -> int:
    return sum(2 if event % 10 == 0 else 1 for _ in range(PROCESSES) for event in range(EVENTS))


def test_eight_concurrent_writers_lose_nothing_and_levels_stay_consistent(tmp_path):
    path = str(tmp_path / "log.sqlite")
    SanctionLog(path)
    context = multiprocessing.get_context("fork")  # children only use sqlite3; fork keeps the test fast
    workers = [context.Process(target=_writer, args=(path, worker)) for worker in range(PROCESSES)]
    for process in workers:
        process.start()
    for process in workers:
        process.join(timeout=120)
    assert [process.exitcode for process in workers] == [0] * PROCESSES

    rows = SanctionLog(path).history()
    assert len(rows) == _expected_rows() == 440
    levels = defaultdict(list)
    for row in rows:
        levels[(row["user_id"], row["category"])].append(row["level"])
    # Each (user, category) got levels 1..n exactly once, in insertion order: no lost or duplicated level.
    for key, seen in levels.items():
        assert seen == list(range(1, len(seen) + 1)), key
