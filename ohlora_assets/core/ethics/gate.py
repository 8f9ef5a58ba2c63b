"""The sanction policy of the original product, as pure functions over scores and past levels."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Mapping

from ohlora_assets.core.ethics.categories import GENERAL, HATE, LOVE, PAEDRIP, POLITICS
from ohlora_assets.core.ethics.thresholds import DEFAULT_THRESHOLDS, GENERAL_CANCEL

MAX_BLOCK_DAYS = 1461
# Block length in days for levels 1, 2, 3, 4 and 5+; 0 is a warning.
BLOCK_DAYS = {
    LOVE: (0, 1 / 24, 1, 14, 1461),
    POLITICS: (0, 3, 7, 30, 365),
    PAEDRIP: (7, 30, 1461, 1461, 1461),
    HATE: (1, 7, 90, 1461, 1461),
}
# Love and politics prompts are only sanctioned when the persona's answer already declined.
ANSWER_MARKERS = ("미안", "부담")
NEEDS_DECLINING_ANSWER = (LOVE, POLITICS)


def block_days(category: str, level: int) -> float:
    periods = BLOCK_DAYS[category]
    return periods[min(max(level, 1), len(periods)) - 1]


def block_candidates(
    scores: Mapping[str, float], answer: str = "", thresholds: Mapping[str, float] = DEFAULT_THRESHOLDS
) -> list[str]:
    """Categories whose score reaches its threshold, after the answer condition and the `일반` veto."""
    if scores[GENERAL] >= GENERAL_CANCEL:
        return []
    declined = any(marker in answer for marker in ANSWER_MARKERS)
    return [
        category
        for category, threshold in thresholds.items()
        if scores[category] >= threshold and (declined or category not in NEEDS_DECLINING_ANSWER)
    ]


@dataclass(frozen=True)
class Sanction:
    category: str
    level: int
    days: float

    @property
    def warning(self) -> bool:
        return self.days == 0


def sanctions_for(candidates: list[str], highest_levels: Mapping[str, int]) -> list[Sanction]:
    """Level = highest level already logged for the category + 1."""
    sanctions = []
    for category in candidates:
        level = highest_levels.get(category, 0) + 1
        sanctions.append(Sanction(category, level, block_days(category, level)))
    return sanctions


def total_block(sanctions: list[Sanction]) -> timedelta:
    """Periods of several categories in one turn add up, capped at MAX_BLOCK_DAYS."""
    return timedelta(days=min(sum(s.days for s in sanctions), MAX_BLOCK_DAYS))


@dataclass
class Decision:
    """What the gate answers for one turn; `decision` is allow, warn, block, or refused (already blocked)."""

    user: str
    decision: str
    scores: dict[str, float]
    normalized_prompt: str
    candidates: list[str] = field(default_factory=list)
    sanctions: list[dict] = field(default_factory=list)
    blocked_until: str | None = None

    def to_json(self) -> dict:
        return asdict(self)


def utc_iso(moment: datetime | None) -> str | None:
    return moment.astimezone(timezone.utc).isoformat(timespec="seconds") if moment else None


def check_turn(scorer, log, user: str, prompt: str, answer: str = "", now: datetime | None = None,
               thresholds: Mapping[str, float] = DEFAULT_THRESHOLDS) -> Decision:
    """Score one prompt, apply the policy, and log any sanction.

    `scorer` is an EthicsScorer and `log` a SanctionLog (duck-typed to keep this module import-light).
    A user under an active block is refused without logging: the block is the sanction for this turn.
    The block check and the logging are one transaction of the log, so concurrent turns of one user
    are decided as if serial; the scoring, the slow part, happens before it.
    """
    from ohlora_assets.core.ethics.normalize import normalize_prompt
    from ohlora_assets.core.ethics.sanctions import checked_moment, user_key

    # Arguments are checked before the slow scoring, so a bad one costs nothing and logs nothing.
    for name, value in (("prompt", prompt), ("answer", answer)):
        if not isinstance(value, str):
            raise TypeError(f"{name} must be a str, not {type(value).__name__}")
    user, now = user_key(user), checked_moment(now or datetime.now(timezone.utc))
    scores = {category: round(value, 4) for category, value in scorer.score_one(prompt).items()}
    normalized = normalize_prompt(prompt)
    candidates = block_candidates(scores, answer, thresholds)
    turn = log.record_turn(user, candidates, now)
    if turn.refused_until is not None:
        return Decision(user, "refused", scores, normalized, blocked_until=utc_iso(turn.refused_until))
    if not turn.sanctions:
        return Decision(user, "allow", scores, normalized)
    blocking = any(not s.warning for s in turn.sanctions)
    return Decision(
        user,
        "block" if blocking else "warn",
        scores,
        normalized,
        candidates=candidates,
        sanctions=[
            {"category": s.category, "level": s.level, "days": s.days, "warning": s.warning} for s in turn.sanctions
        ],
        blocked_until=utc_iso(turn.blocked_until) if blocking else None,
    )
