"""The original product's policy: block candidates, the `일반` veto, levels and periods, refusal while blocked."""

import multiprocessing
import sqlite3
from datetime import datetime, timedelta, timezone

import pytest

from ohlora_assets.core.ethics.gate import BLOCK_DAYS, block_candidates, block_days, check_turn, sanctions_for, total_block
from ohlora_assets.core.ethics.sanctions import SanctionLog
from ohlora_assets.core.ethics.categories import GENERAL, HATE, LOVE, PAEDRIP, POLITICS

NOW = datetime(2026, 3, 1, 9, 0, tzinfo=timezone.utc)


def scores(**high: float) -> dict[str, float]:
    keys = {"love": LOVE, "politics": POLITICS, "paedrip": PAEDRIP, "hate": HATE, "general": GENERAL}
    values = {category: 0.0 for category in keys.values()}
    values.update({keys[name]: value for name, value in high.items()})
    return values


@pytest.mark.parametrize(
    "given, answer, expected",
    [
        (scores(love=0.99), "", []),  # love only when the answer declined
        (scores(love=0.99), "미안하지만 그건 어려워", [LOVE]),
        (scores(love=0.97), "미안", []),  # below 0.98
        (scores(politics=0.95), "그건 부담스러워", [POLITICS]),
        (scores(politics=0.96), "좋아!", []),
        (scores(paedrip=0.9), "", [PAEDRIP]),
        (scores(hate=0.89999), "", []),
        (scores(paedrip=0.95, hate=0.93), "", [PAEDRIP, HATE]),
        (scores(paedrip=0.95, hate=0.93, general=0.5), "", []),  # 일반 >= 0.5 cancels all
        (scores(paedrip=0.95, general=0.49), "", [PAEDRIP]),
    ],
)
def test_block_candidates(given, answer, expected):
    assert block_candidates(given, answer) == expected


def test_periods_by_level_match_the_original_table():
    assert [block_days(LOVE, level) for level in range(1, 7)] == [0, 1 / 24, 1, 14, 1461, 1461]
    assert [block_days(POLITICS, level) for level in range(1, 6)] == [0, 3, 7, 30, 365]
    assert [block_days(PAEDRIP, level) for level in range(1, 6)] == [7, 30, 1461, 1461, 1461]
    assert [block_days(HATE, level) for level in range(1, 6)] == [1, 7, 90, 1461, 1461]
    assert set(BLOCK_DAYS) == {LOVE, POLITICS, PAEDRIP, HATE}


def test_levels_continue_from_the_highest_logged_and_periods_add_up_capped():
    sanctions = sanctions_for([PAEDRIP, HATE], {PAEDRIP: 1})
    assert [(s.level, s.days) for s in sanctions] == [(2, 30), (1, 1)]
    assert total_block(sanctions) == timedelta(days=31)
    assert total_block(sanctions_for([PAEDRIP, HATE], {PAEDRIP: 4, HATE: 4})) == timedelta(days=1461)


class FixedScores:
    """Stands in for EthicsScorer with chosen scores, to test the turn logic apart from a model."""

    def __init__(self, values: dict[str, float]):
        self.values = values

    def score_one(self, prompt: str) -> dict[str, float]:
        return dict(self.values)


def test_a_blocked_user_is_refused_until_the_block_ends(tmp_path):
    log = SanctionLog(tmp_path / "log.sqlite")
    first = check_turn(FixedScores(scores(paedrip=0.97, hate=0.95)), log, "kim", "...", now=NOW)
    assert first.decision == "block"
    assert [(s["category"], s["level"]) for s in first.sanctions] == [(PAEDRIP, 1), (HATE, 1)]
    assert first.blocked_until == (NOW + timedelta(days=8)).isoformat()

    harmless = FixedScores(scores(general=0.9))
    during = check_turn(harmless, log, "kim", "안녕", now=NOW + timedelta(days=7))
    assert during.decision == "refused" and during.blocked_until == first.blocked_until
    with sqlite3.connect(log.path) as connection:
        assert connection.execute("SELECT COUNT(*) FROM sanctions").fetchone() == (2,)  # refusal logs nothing
    assert check_turn(harmless, log, "kim", "안녕", now=NOW + timedelta(days=8)).decision == "allow"
    assert check_turn(harmless, log, "lee", "안녕", now=NOW).decision == "allow"  # per user

    second = check_turn(FixedScores(scores(paedrip=0.97)), log, "kim", "...", now=NOW + timedelta(days=9))
    assert (second.sanctions[0]["level"], second.sanctions[0]["days"]) == (2, 30)


def test_a_first_love_or_politics_offence_is_a_warning(tmp_path):
    log = SanctionLog(tmp_path / "log.sqlite")
    turn = check_turn(FixedScores(scores(love=0.99)), log, "park", "...", answer="미안해", now=NOW)
    assert turn.decision == "warn" and turn.blocked_until is None and turn.sanctions[0]["warning"]
    turn = check_turn(FixedScores(scores(love=0.99)), log, "park", "...", answer="미안해", now=NOW)
    assert turn.decision == "block" and turn.blocked_until == (NOW + timedelta(hours=1)).isoformat()


TURNS = 8


def _concurrent_turn(path: str, barrier, decisions) -> None:
    log = SanctionLog(path)
    barrier.wait()  # every process reaches the gate at once
    decisions.put(check_turn(FixedScores(scores(paedrip=0.97)), log, "kim", "...", now=NOW).decision)


def test_concurrent_turns_of_one_user_are_decided_as_if_serial(tmp_path):
    """One after the other, a first offence blocks and every later turn is refused; at once, the same."""
    path = str(tmp_path / "log.sqlite")
    context = multiprocessing.get_context("fork")  # children only use sqlite3; fork keeps the test fast
    barrier, decisions = context.Barrier(TURNS), context.Queue()
    workers = [context.Process(target=_concurrent_turn, args=(path, barrier, decisions)) for _ in range(TURNS)]
    for process in workers:
        process.start()
    for process in workers:
        process.join(timeout=120)
    assert [process.exitcode for process in workers] == [0] * TURNS
    assert sorted(decisions.get(timeout=5) for _ in range(TURNS)) == ["block"] + ["refused"] * (TURNS - 1)
    with sqlite3.connect(path) as connection:
        logged = connection.execute("SELECT category, level, block_days FROM sanctions").fetchall()
    assert logged == [(PAEDRIP, 1, 7.0)]  # one 7-day block, not levels 1, 2, ... (30 days and more)


@pytest.mark.parametrize(
    "arguments, error",
    [({"prompt": None}, TypeError), ({"answer": None}, TypeError), ({"answer": b"x"}, TypeError),
     ({"user": ""}, ValueError), ({"now": datetime(2026, 3, 1)}, ValueError)],
)
def test_bad_arguments_are_named_before_scoring(tmp_path, arguments, error):
    class Unscorable:
        def score_one(self, prompt):
            raise AssertionError("scored a turn whose arguments are wrong")

    turn = {"user": "kim", "prompt": "...", "answer": "", "now": NOW, **arguments}
    with pytest.raises(error, match=next(iter(arguments))):
        check_turn(Unscorable(), SanctionLog(tmp_path / "log.sqlite"), **turn)
