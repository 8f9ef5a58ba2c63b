"""Our ethics prompts stay apart from the prompts they are judged against: none of data/ethics_dataset.csv
resembles a prompt of data/ethics_heldout.csv (new phrasings, scored by `ohlora bench ethics-accuracy`; a
near copy in training would flatter that figure), nor one of the upstream dataset (never copied into the
project)."""

from collections import Counter, defaultdict

import pandas as pd
import pytest

from ohlora_assets.resources import PROJECT_ROOT
from ohlora_assets_tests.conftest import UPSTREAM, sample_paths

# Character-3-gram Jaccard with spaces removed: a prompt with a word or an ending changed reaches it.
SIMILAR = 0.5


def _trigrams(text: str) -> frozenset[str]:
    joined = "".join(text.split())
    return frozenset(joined[i:i + 3] for i in range(len(joined) - 2)) or frozenset({joined})


def similar_pairs(ours: list[str], theirs: list[str], threshold: float = SIMILAR) -> list[tuple[str, str, float]]:
    """(ours, theirs, similarity) of every pair at or above `threshold`; an index from trigram to their
    prompts counts the shared trigrams of only the pairs that share one."""
    their_grams = [_trigrams(text) for text in theirs]
    holders: dict[str, list[int]] = defaultdict(list)
    for j, grams in enumerate(their_grams):
        for gram in grams:
            holders[gram].append(j)
    pairs = []
    for text in ours:
        grams = _trigrams(text)
        for j, shared in Counter(j for gram in grams for j in holders.get(gram, ())).items():
            similarity = shared / (len(grams) + len(their_grams[j]) - shared)
            if similarity >= threshold:
                pairs.append((text, theirs[j], round(similarity, 2)))
    return pairs


def _prompts(path) -> list[str]:
    return pd.read_csv(path, dtype=str, keep_default_na=False)["user_prompt"].tolist()


def test_similarity_ignores_spacing_and_separates_different_prompts():
    assert similar_pairs(["로라 사랑해"], ["로라사랑해", "오늘 날씨 좋다"]) == [("로라 사랑해", "로라사랑해", 1.0)]
    assert similar_pairs(["니 엄마 뭐 하시냐"], ["엄마가 김치찌개 해줬어"]) == []


def test_no_held_out_prompt_resembles_one_of_our_dataset():
    pairs = similar_pairs(_prompts(sample_paths().ethics_csv), _prompts(PROJECT_ROOT / "data" / "ethics_heldout.csv"))
    assert pairs == [], f"rewrite these rows of data/ethics_dataset.csv (row, held-out prompt, similarity): {pairs}"


@pytest.mark.skipif(not UPSTREAM.is_dir(), reason="../shared/upstream is absent")
def test_no_upstream_prompt_resembles_one_of_our_dataset():
    pairs = similar_pairs(_prompts(sample_paths().ethics_csv), _prompts(UPSTREAM / "ethics_train_test_dataset.csv"))
    assert pairs == [], f"rewrite these rows of data/ethics_dataset.csv (row, upstream prompt, similarity): {pairs}"
