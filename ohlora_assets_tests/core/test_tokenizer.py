"""The offline BPE tokenizer: exact round trips on Korean, merged Hangul words, specials, save/load."""

from transformers import AutoTokenizer

from ohlora_assets.core.tokenizer import build_bpe_tokenizer

CORPUS = [
    "오로라는 가상 인간이야! 반가워 😊",
    "오늘 날씨 정말 좋다. 오로라랑 산책 가고 싶어",
    "(지금은 월요일 오전) 오로라 뭐 해? (답변 시작) ### 답변: 책 읽고 있어! (답변 종료)",
    "나 요즘 공부가 너무 힘들어 (답변 시작) ### 답변: 힘내! 오로라가 응원할게 (답변 종료)",
] * 20
LLAMA_SPECIALS = {"bos_token": "<s>", "eos_token": "</s>", "pad_token": "<pad>", "unk_token": "<unk>"}


def test_round_trip_is_exact_even_for_unseen_characters():
    tokenizer = build_bpe_tokenizer(CORPUS, 400, LLAMA_SPECIALS)
    for text in ["오로라는 가상 인간이야!", "처음 보는 글자: 햏뷁 🦄 ÆØÅ", " 앞에 공백, 뒤에도 "]:
        ids = tokenizer(text, add_special_tokens=False)["input_ids"]
        assert tokenizer.decode(ids) == text
        assert tokenizer.unk_token_id not in ids


def test_frequent_hangul_words_become_single_tokens():
    tokenizer = build_bpe_tokenizer(CORPUS, 1000, LLAMA_SPECIALS)
    assert len(tokenizer(" 오로라", add_special_tokens=False)["input_ids"]) == 1
    # Given enough merges, a frequent sentence is one token per word (and one for the period),
    # not three byte tokens per syllable.
    tokens = tokenizer.tokenize("오늘 날씨 정말 좋다.")
    assert len(tokens) == 5, tokens


def test_specials_take_the_first_ids_and_bos_starts_every_text():
    tokenizer = build_bpe_tokenizer(CORPUS, 400, LLAMA_SPECIALS)
    assert [tokenizer.bos_token_id, tokenizer.eos_token_id, tokenizer.pad_token_id, tokenizer.unk_token_id] == [0, 1, 2, 3]
    ids = tokenizer("반가워")["input_ids"]
    assert ids[0] == tokenizer.bos_token_id and tokenizer.bos_token_id not in ids[1:]
    assert tokenizer.decode(ids, skip_special_tokens=True) == "반가워"


def test_bert_style_specials_wrap_with_cls_and_sep():
    specials = {"pad_token": "[PAD]", "unk_token": "[UNK]", "cls_token": "[CLS]", "sep_token": "[SEP]", "mask_token": "[MASK]"}
    tokenizer = build_bpe_tokenizer(CORPUS, 400, specials)
    ids = tokenizer("오로라 반가워")["input_ids"]
    assert ids[0] == tokenizer.cls_token_id and ids[-1] == tokenizer.sep_token_id
    pair = tokenizer("오로라", "반가워")
    assert pair["input_ids"].count(tokenizer.sep_token_id) == 2
    assert set(pair["token_type_ids"]) == {0, 1}


def test_saved_tokenizer_loads_with_auto_tokenizer_and_encodes_the_same(tmp_path):
    tokenizer = build_bpe_tokenizer(CORPUS, 400, LLAMA_SPECIALS)
    tokenizer.save_pretrained(tmp_path)
    loaded = AutoTokenizer.from_pretrained(tmp_path)
    text = "(지금은 월요일 오전) 오로라 뭐 해? (답변 시작) ### 답변:"
    assert loaded(text)["input_ids"] == tokenizer(text)["input_ids"]
    assert loaded.eos_token == "</s>" and loaded.pad_token_id == tokenizer.pad_token_id


def test_training_is_deterministic():
    first = build_bpe_tokenizer(CORPUS, 400, LLAMA_SPECIALS)
    second = build_bpe_tokenizer(CORPUS, 400, LLAMA_SPECIALS)
    assert first.get_vocab() == second.get_vocab()
