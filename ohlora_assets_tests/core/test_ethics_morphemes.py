"""Kiwi morphemes for the embedded ethics encoder: analysis, neighbour substitution, and a saved
model that analyses raw text by itself when loaded with plain sentence-transformers."""

import numpy as np
import pandas as pd
import pytest

from ohlora_assets.core.ethics.encoder import SMOKE_ENCODER, build_encoder
from ohlora_assets.core.ethics.morphemes import CONTENT_TAGS, MorphemeNeighbours, Morphemes, analyze, to_morphemes
from ohlora_assets.core.ethics.scoring import EthicsScorer, uses_our_modules
from ohlora_assets.core.ethics.thresholds import GENERAL, HATE, LOVE
from ohlora_assets.core.ethics.training import TrainSettings, make_pairs, train_sbert
from ohlora_assets.core.schemas import ETHICS_CATEGORIES

CORPUS = ["로라야 사랑해", "남자는 쓰레기야", "오늘 점심 뭐 먹지", "너를 사랑하는 사람"]


def test_inflected_forms_share_their_stem():
    loved, loving = analyze("사랑했어"), analyze("너를 사랑하는 사람")
    assert "사랑/NNG" in loved and "사랑/NNG" in loving
    assert analyze("사랑했어") != analyze("사랑해요")  # the endings still tell them apart
    assert analyze("") == ()
    assert to_morphemes("남자는 쓰레기야") == "남자/NNG 는/JX 쓰레기/NNG 이/VCP 야/EF"
    analysed = to_morphemes("사랑해")
    assert to_morphemes(analysed) is analysed  # already analysed: passed through, not analysed again


def test_neighbours_are_similar_content_morphemes_of_the_same_part_of_speech():
    neighbours = MorphemeNeighbours.of(CORPUS)
    assert "쓰레기/NNG" in neighbours.table and "폐기물/NNG" in neighbours.table["쓰레기/NNG"]
    for token, similar in neighbours.table.items():
        assert token.rpartition("/")[2] in CONTENT_TAGS
        assert token not in similar
        family = token.rpartition("/")[2].split("-")[0]
        assert all(s.rpartition("/")[2].split("-")[0] == family for s in similar)
    assert "는/JX" not in neighbours.table and "야/EF" not in neighbours.table  # grammar stays


def test_vary_is_seeded_and_swaps_only_tokens_with_neighbours():
    neighbours = MorphemeNeighbours.of(CORPUS)
    tokens = list(analyze("남자는 쓰레기야"))
    assert neighbours.vary(tokens, 0.0, np.random.default_rng(0)) == tokens
    varied = neighbours.vary(tokens, 1.0, np.random.default_rng(0))
    for before, after in zip(tokens, varied):
        assert after in neighbours.table[before] if before in neighbours.table else after == before
    assert varied == neighbours.vary(tokens, 1.0, np.random.default_rng(0))
    assert {tuple(neighbours.vary(tokens, 1.0, np.random.default_rng(seed))) for seed in range(10)} != {tuple(varied)}


@pytest.fixture(scope="module")
def encoder():
    import torch

    torch.manual_seed(0)
    return build_encoder(CORPUS + list(ETHICS_CATEGORIES), SMOKE_ENCODER).eval()


def test_the_vocabulary_is_the_corpus_morphemes_plus_extra_tokens():
    model = build_encoder(CORPUS, SMOKE_ENCODER, extra_tokens=["폐기물/NNG"])
    vocab = model[0].tokenizer.get_vocab()
    assert {"사랑/NNG", "쓰레기/NNG", "폐기물/NNG", "[UNK]"} <= set(vocab)
    assert "사랑했어" not in vocab and "오로라/NNP" not in vocab


def test_raw_text_and_its_morphemes_encode_alike(encoder):
    raw = encoder.encode(["남자는 쓰레기야"], convert_to_numpy=True)
    analysed = encoder.encode([to_morphemes("남자는 쓰레기야")], convert_to_numpy=True)
    np.testing.assert_allclose(raw, analysed, atol=1e-6)
    unknown = encoder.encode(["완전히 처음 보는 단어들"], convert_to_numpy=True)
    assert np.isfinite(unknown).all()


def test_saved_model_loads_with_plain_sentence_transformers(encoder, tmp_path):
    from sentence_transformers import SentenceTransformer

    encoder.save(str(tmp_path))
    assert uses_our_modules(tmp_path)
    reloaded = SentenceTransformer(str(tmp_path), device="cpu", trust_remote_code=True)
    prompts = ["로라야 사랑해", "오늘 점심 뭐 먹지"]
    np.testing.assert_allclose(reloaded.encode(prompts), encoder.encode(prompts), atol=1e-5)
    scores = EthicsScorer.load(tmp_path).score(prompts)  # no trust flag needed for our own module
    assert scores.shape == (2, len(ETHICS_CATEGORIES))


def test_minority_pairs_repeat_and_training_sees_varied_morphemes(encoder, monkeypatch):
    from ohlora_assets.core.ethics import training

    frame = pd.DataFrame(
        {
            "type": ["train"] * 6,
            "user_prompt": ["로라야 사랑해", "남자는 쓰레기야", "오늘 점심 뭐 먹지", "내일 비 온대", "산책 가자", "숙제 했어"],
            "category": [LOVE, HATE, GENERAL, GENERAL, GENERAL, GENERAL],
        }
    )
    seen: list[str] = []
    real_pair_loss = training._pair_loss

    def recording_pair_loss(model, loss_fn, prompts, name_index, labels, form=str):
        seen.extend(form(p) for p in prompts)
        return real_pair_loss(model, loss_fn, prompts, name_index, labels, form)

    monkeypatch.setattr(training, "_pair_loss", recording_pair_loss)
    neighbours = MorphemeNeighbours.of(frame["user_prompt"])
    varied = TrainSettings(epochs=3, batch_size=4, valid_fraction=0.0, substitution_rate=1.0)
    history = train_sbert(encoder, make_pairs(frame), varied, log=lambda _: None, neighbours=neighbours)
    assert history.train_pairs == 30 and len(seen) == 90
    hate_variants = [p for p in seen if p.endswith("이/VCP 야/EF")]
    assert all(isinstance(p, Morphemes) for p in seen)
    assert hate_variants and not any("쓰레기/NNG" in p for p in hate_variants)  # rate 1.0: always swapped

    seen.clear()
    plain = train_sbert(encoder, make_pairs(frame), TrainSettings(epochs=1, valid_fraction=0.0), log=lambda _: None)
    assert "남자/NNG 는/JX 쓰레기/NNG 이/VCP 야/EF" in seen and plain.train_pairs == 30
    repeated = train_sbert(
        encoder, make_pairs(frame), TrainSettings(epochs=1, valid_fraction=0.0, minority_repeats=3), log=lambda _: None
    )
    assert repeated.train_pairs == 30 + 2 * 2 * 5  # two minority prompts, five pairs each, twice more
