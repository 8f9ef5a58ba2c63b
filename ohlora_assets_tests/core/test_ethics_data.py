"""Our ethics prompts stay apart from the prompts they are judged against: none of data/ethics_dataset.csv
resembles a prompt of data/ethics_heldout.csv (new phrasings, scored by `ohlora bench ethics-accuracy`; a
near copy in training would flatter that figure), nor one of the upstream dataset (never copied into the
project)."""

import pandas as pd
import pytest

from ohlora_assets.core.ethics.overlap import near_duplicates, similar_pairs
from ohlora_assets.resources import PROJECT_ROOT
from ohlora_assets_tests.conftest import UPSTREAM, sample_paths


def _prompts(path) -> list[str]:
    return pd.read_csv(path, dtype=str, keep_default_na=False)["user_prompt"].tolist()


def test_similarity_ignores_spacing_and_separates_different_prompts():
    assert similar_pairs(["로라 사랑해"], ["로라사랑해", "오늘 날씨 좋다"]) == [("로라 사랑해", "로라사랑해", 1.0)]
    assert similar_pairs(["니 엄마 뭐 하시냐"], ["엄마가 김치찌개 해줬어"]) == []
    assert near_duplicates(["로 라 사랑해", "점심 뭐 먹지"], ["로라 사랑해"]) == [True, False]


def test_no_held_out_prompt_resembles_one_of_our_dataset():
    pairs = similar_pairs(_prompts(sample_paths().ethics_csv), _prompts(PROJECT_ROOT / "data" / "ethics_heldout.csv"))
    assert pairs == [], f"rewrite these rows of data/ethics_dataset.csv (row, held-out prompt, similarity): {pairs}"


@pytest.mark.skipif(not UPSTREAM.is_dir(), reason="../shared/upstream is absent")
def test_no_upstream_prompt_resembles_one_of_our_dataset():
    pairs = similar_pairs(_prompts(sample_paths().ethics_csv), _prompts(UPSTREAM / "ethics_train_test_dataset.csv"))
    assert pairs == [], f"rewrite these rows of data/ethics_dataset.csv (row, upstream prompt, similarity): {pairs}"
