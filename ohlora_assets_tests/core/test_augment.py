import json

import pytest

from ohlora_assets.core.augment import SynonymSwapper, load_synonym_groups
from ohlora_assets_tests.conftest import sample_paths


@pytest.fixture(scope="module")
def swapper() -> SynonymSwapper:
    return SynonymSwapper(load_synonym_groups(sample_paths().synonyms_json))


def test_variants_are_reproducible_and_vary_by_epoch(swapper):
    texts = ["로라야 나는 음악 듣는 게 좋아", "오! 축하해 ㅠㅠ", "LLM 공부 중", "그냥 평범한 문장"] * 5
    first, again = swapper.variant(texts, seed=7, epoch=0), swapper.variant(texts, seed=7, epoch=0)
    assert first == again
    assert any(swapper.variant(texts, seed=7, epoch=e) != first for e in range(1, 4))
    assert swapper.variant(texts, seed=7, epoch=0)[3] == "그냥 평범한 문장"


def test_swaps_stay_within_the_group(swapper):
    import random

    seen = {swapper.swap("우와! 대박", random.Random(i)) for i in range(60)}
    # "우와!" is matched whole (longest first), so the "!" never doubles up
    assert seen == {f"{w} 대박" for w in ["오!", "우와!", "와우!", "와우", "우와"]}
    spaced = {swapper.swap("사실 나는 인공지능 이야", random.Random(i)) for i in range(40)}
    assert spaced == {f"사실{a}{b}이야" for a in [" 나는 ", " 난 "] for b in ["인공지능 ", "AI "]}


def test_bad_synonym_file_is_rejected(tmp_path):
    path = tmp_path / "syn.json"
    path.write_text(json.dumps([["혼자"]]), encoding="utf-8")
    with pytest.raises(ValueError, match="at least two"):
        load_synonym_groups(path)
