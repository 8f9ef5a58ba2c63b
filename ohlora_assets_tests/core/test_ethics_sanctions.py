"""The sanction log: levels per category, several categories per turn, refusal while blocked, and
concurrent turns decided as if serial."""

import multiprocessing
import sqlite3
import unicodedata
from collections import defaultdict
from datetime import datetime, timedelta, timezone

from ohlora_assets.core.ethics.categories import BLOCKABLE, HATE, LOVE, PAEDRIP, POLITICS
from ohlora_assets.core.ethics.gate import MAX_BLOCK_DAYS
from ohlora_assets.core.ethics.sanctions import SanctionLog, SanctionLogError

NOW = datetime(2026, 1, 1, 12, 0, tzinfo=timezone.utc)
PROCESSES, EVENTS = 8, 20


def _rows(path, user: str) -> list[tuple]:
    """(category, level, days, created_at, blocked_until) of the user's rows, in insertion order."""
    with sqlite3.connect(path) as connection:
        return connection.execute(
            "SELECT category, level, block_days, created_at, blocked_until FROM sanctions WHERE user_id = ? ORDER BY id",
            (user,),
        ).fetchall()


def test_levels_rise_per_category_and_periods_follow_the_table(tmp_path):
    log = SanctionLog(tmp_path / "log.sqlite")
    days, moment = [], NOW
    for _ in range(6):
        turn = log.record_turn("u", [POLITICS], moment)
        days.append(turn.sanctions[0].days)
        moment = turn.blocked_until  # the next turn comes as the block ends
    assert days == [0, 3, 7, 30, 365, 365]
    turn = log.record_turn("u", [HATE], moment)
    assert [(s.level, s.days) for s in turn.sanctions] == [(1, 1)]  # other categories' levels do not count
    assert turn.blocked_until == moment + timedelta(days=1)
    assert [row[1] for row in _rows(tmp_path / "log.sqlite", "u") if row[0] == POLITICS] == [1, 2, 3, 4, 5, 6]
    assert _rows(tmp_path / "log.sqlite", "someone else") == []


def test_a_turn_with_several_categories_logs_each_and_adds_periods_up_to_the_cap(tmp_path):
    log = SanctionLog(tmp_path / "log.sqlite")
    turn = log.record_turn("u", [PAEDRIP, HATE], NOW)
    assert [(s.category, s.level, s.days) for s in turn.sanctions] == [(PAEDRIP, 1, 7), (HATE, 1, 1)]
    assert turn.refused_until is None and turn.blocked_until == NOW + timedelta(days=8)
    until = turn.blocked_until
    for _ in range(2):
        until = log.record_turn("u", [PAEDRIP, HATE], until).blocked_until
    capped = log.record_turn("u", [PAEDRIP, HATE, LOVE, POLITICS], until)  # 1461 + 1461 + ... days
    assert capped.blocked_until == until + timedelta(days=MAX_BLOCK_DAYS)
    assert len(_rows(tmp_path / "log.sqlite", "u")) == 2 + 2 + 2 + 4


def test_a_running_block_refuses_the_turn_and_logs_nothing_until_it_ends(tmp_path):
    log = SanctionLog(tmp_path / "log.sqlite")
    until = log.record_turn("u", [PAEDRIP], NOW).blocked_until
    refused = log.record_turn("u", [HATE], until - timedelta(seconds=1))
    assert refused.refused_until == until and refused.sanctions == [] and refused.blocked_until is None
    assert len(_rows(tmp_path / "log.sqlite", "u")) == 1
    assert log.record_turn("u", [], until).refused_until is None  # the block ends exactly then
    assert log.record_turn("v", [], NOW).refused_until is None  # per user


def test_a_warning_does_not_block(tmp_path):
    log = SanctionLog(tmp_path / "log.sqlite")
    turn = log.record_turn("u", [LOVE], NOW)
    assert turn.sanctions[0].warning and turn.blocked_until == NOW
    assert log.record_turn("u", [], NOW).refused_until is None


def _turns(path: str, worker: int) -> list[tuple[str, bool, int]]:
    log = SanctionLog(path)
    outcomes = []
    for event in range(EVENTS):
        categories = [BLOCKABLE[(worker + event) % 4]]
        if event % 5 == 0:  # the case the original CSV lost: several categories in one turn
            categories.append(BLOCKABLE[(worker + event + 1) % 4])
        user = f"user{event % 3}"
        turn = log.record_turn(user, categories, NOW)
        outcomes.append((user, turn.refused_until is not None, len(turn.sanctions)))
    return outcomes


def _starmap(context, function, arguments: list[tuple]) -> list:
    """`Pool.starmap` on PROCESSES workers, then a graceful close. The `with` block's terminate() can leave a worker
    blocked on the task queue's lock that a killed sibling held (a CPython Pool race): it hung a CI run."""
    pool = context.Pool(PROCESSES)
    try:
        return pool.starmap(function, arguments)
    finally:
        pool.close()
        pool.join()


def test_eight_concurrent_writers_lose_nothing_and_decide_as_if_serial(tmp_path):
    path = str(tmp_path / "log.sqlite")
    SanctionLog(path)
    context = multiprocessing.get_context("fork")  # children only use sqlite3; fork keeps the test fast
    outcomes = [o for worker in _starmap(context, _turns, [(path, w) for w in range(PROCESSES)]) for o in worker]
    assert len(outcomes) == PROCESSES * EVENTS  # every turn answered

    logged = defaultdict(int)
    for user, refused, sanctions in outcomes:
        assert refused == (sanctions == 0)  # every turn here has candidates: it is sanctioned or refused
        logged[user] += sanctions
    for user in ("user0", "user1", "user2"):
        rows = _rows(path, user)
        assert len(rows) == logged[user]  # no sanction lost
        # One after the other at one moment: warnings until the first block, then only refusals. So the
        # rows that block (blocked_until after now) are one turn's, and the last ones.
        blocking = [row for row in rows if row[4] > NOW.timestamp()]
        assert blocking and rows[-len(blocking):] == blocking and len({row[4] for row in blocking}) == 1
        levels = defaultdict(list)
        for category, level, *_ in rows:
            levels[category].append(level)
        for category, seen in levels.items():  # levels 1..n, each once: no level lost or repeated
            assert seen == list(range(1, len(seen) + 1)), (user, category)


def test_a_warning_refuses_no_turn_even_one_timed_before_it_was_logged(tmp_path):
    # Turns are timed before scoring: a turn timed just before a warning may reach the log after it.
    log = SanctionLog(tmp_path / "log.sqlite")
    warned = log.record_turn("u", [LOVE], NOW)
    assert warned.sanctions[0].warning and warned.blocked_until == NOW
    earlier = log.record_turn("u", [LOVE], NOW - timedelta(milliseconds=50))
    assert earlier.refused_until is None and earlier.sanctions[0].level == 2  # logged, and escalated
    assert log.record_turn("u", [], NOW - timedelta(milliseconds=10)).refused_until is not None  # level 2 blocks


def test_an_emptied_log_is_refused_and_a_new_one_appears_whole(tmp_path):
    path = tmp_path / "log.sqlite"
    SanctionLog(path).record_turn("u", [HATE], NOW)
    path.write_bytes(b"")
    try:
        SanctionLog(path)
        raise AssertionError("an emptied log was accepted as a new one")
    except SanctionLogError as error:
        assert str(path) in str(error) and "empty file" in str(error)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["log.sqlite"]  # no staging file left behind


def _open_and_log(path, user, barrier) -> int:
    barrier.wait()
    return len(SanctionLog(path).record_turn(user, [HATE], NOW).sanctions)


def test_processes_creating_one_new_log_at_once_share_it(tmp_path):
    path = tmp_path / "new" / "log.sqlite"
    context = multiprocessing.get_context("spawn")
    with context.Manager() as manager:
        barrier = manager.Barrier(PROCESSES)
        logged = _starmap(context, _open_and_log, [(path, f"user{i}", barrier) for i in range(PROCESSES)])
    assert logged == [1] * PROCESSES
    assert sum(len(_rows(path, f"user{i}")) for i in range(PROCESSES)) == PROCESSES
    assert sorted(p.name for p in path.parent.iterdir() if not p.name.endswith(("-wal", "-shm"))) == ["log.sqlite"]


def test_one_person_is_one_user_however_the_id_is_spelled(tmp_path):
    log = SanctionLog(tmp_path / "log.sqlite")
    log.record_turn(" 김로라 ", [PAEDRIP], NOW)
    nfd = unicodedata.normalize("NFD", "김로라")
    assert log.record_turn(nfd, [], NOW + timedelta(days=1)).refused_until is not None
    assert len(_rows(tmp_path / "log.sqlite", "김로라")) == 1


def test_arguments_that_name_no_user_or_moment_are_errors_before_anything_is_logged(tmp_path):
    import pytest

    log = SanctionLog(tmp_path / "log.sqlite")
    for user, now, error in [
        ("", NOW, ValueError), ("  ", NOW, ValueError), (None, NOW, TypeError), ("a\ud800", NOW, ValueError),
        ("u", datetime(2026, 1, 1), ValueError),  # naive: its zone would be a guess
        ("u", datetime(9999, 12, 31, tzinfo=timezone.utc), ValueError), ("u", "2026-01-01", TypeError),
    ]:
        with pytest.raises(error):
            log.record_turn(user, [HATE], now)
    with sqlite3.connect(tmp_path / "log.sqlite") as connection:
        assert connection.execute("SELECT COUNT(*) FROM sanctions").fetchone() == (0,)
