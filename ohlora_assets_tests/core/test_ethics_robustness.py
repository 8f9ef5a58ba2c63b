"""Any string gets a decision and no exception; noise inside words is normalized away before scoring."""

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ohlora_assets.core.ethics.categories import ETHICS_CATEGORIES
from ohlora_assets.core.ethics.gate import check_turn
from ohlora_assets.core.ethics.sanctions import SanctionLog
from ohlora_assets.core.ethics.scoring import EthicsScorer
from ohlora_assets.core.ethics.training import base_model

DECISIONS = {"allow", "warn", "block", "refused"}
EDGE_CASES = [
    "",
    "   \t\n  ",
    "🎃🔥💕",
    "사랑해" * 3334,  # 10,002 characters
    "가" * 10_000,
    "\x00\x01\x1b[31m로라야\x7f\u200b\u202e",
    "Laura야 я тебя люблю 愛してる 로라 ❤️ مرحبا",
    "사1랑2해",
    "ㅅㅏㄹㅏㅇㅎㅐ",
    "\ud800",  # a lone surrogate: not even encodable as UTF-8
]


@pytest.fixture(scope="module")
def scorer() -> EthicsScorer:
    import torch

    torch.set_num_threads(1)
    model, _ = base_model("embedded", smoke=True)
    return EthicsScorer(model.eval())


@pytest.fixture(scope="module")
def log(tmp_path_factory) -> SanctionLog:
    return SanctionLog(tmp_path_factory.mktemp("sanctions") / "log.sqlite")


def _assert_decided(scorer, log, prompt: str) -> None:
    decision = check_turn(scorer, log, "robustness", prompt, answer="미안")
    assert decision.decision in DECISIONS
    assert set(decision.scores) == set(ETHICS_CATEGORIES)
    assert all(np.isfinite(value) and -1.0001 <= value <= 1.0001 for value in decision.scores.values())


@pytest.mark.parametrize("prompt", EDGE_CASES, ids=range(len(EDGE_CASES)))
def test_edge_cases_get_a_decision(scorer, log, prompt):
    _assert_decided(scorer, log, prompt)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.text(max_size=300))
def test_any_text_gets_a_decision(scorer, log, prompt):
    _assert_decided(scorer, log, prompt)


def test_noise_inside_words_scores_like_the_clean_word(scorer):
    noisy = scorer.score(["사1랑2해 로라야", "투.표 어디에 할 거야", "ㅅㅏㄹㅏㅇㅎㅐ 로라야"])
    clean = scorer.score(["사랑해 로라야", "투표 어디에 할 거야", "사랑해 로라야"])
    np.testing.assert_allclose(noisy, clean, atol=1e-6)


def test_batched_scores_equal_one_at_a_time(scorer):
    prompts = ["로라야 사랑해", "오늘 날씨 좋다", "", "🎃"]
    batched = scorer.score(prompts)
    single = np.vstack([scorer.score([p]) for p in prompts])
    np.testing.assert_allclose(batched, single, atol=1e-5)
