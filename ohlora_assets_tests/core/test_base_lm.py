"""The embedded base model: its corpus, and a tiny Llama that learns, saves and reloads deterministically."""

import json

import pandas as pd
import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from ohlora_assets.core.base_lm import (
    PRETRAIN_LOG,
    PretrainingCorpus,
    PretrainSpec,
    _warmup_cosine,
    build_embedded_lm,
    pretraining_corpus,
)
from ohlora_assets.core.formats import TASK_FORMATS

# Tiny models: a second thread costs more in synchronization than it saves.
torch.set_num_threads(1)

TINY = PretrainSpec(vocab_size=400, hidden_size=32, intermediate_size=64, num_layers=2, num_heads=2, batch_size=8, steps=80, learning_rate=1e-2)


def _dialogue() -> pd.DataFrame:
    row = dict(memory="", summary="", eyes_mouth_pose="", eyes="", mouth="", pose="")
    return pd.DataFrame(
        [
            {**row, "data_type": "train", "input_data": "안녕 오로라", "output_message": "안녕! 반가워",
             "memory": "[이름: 민수]", "summary": "인사", "eyes_mouth_pose": "(눈 크게, 입 보통, 고개 돌림 없음)",
             "eyes": "크게", "mouth": "보통", "pose": "없음"},
            {**row, "data_type": "train", "input_data": "배고파", "output_message": "밥 먹자", "summary": "배고픔",
             "eyes_mouth_pose": "(눈 보통, 입 보통, 고개 돌림 없음)", "eyes": "보통", "mouth": "보통", "pose": "없음"},
            {**row, "data_type": "train_msg", "input_data": "뭐 해?", "output_message": "책 읽어"},
            {**row, "data_type": "valid", "input_data": "검증 질문", "output_message": "검증 답변 샘플"},
        ]
    )


def _ml_qa() -> pd.DataFrame:
    return pd.DataFrame(
        [
            {"data_type": "train", "user_question": "과적합이 뭐야?", "rag_retrieved_data": "과적합 정의",
             "output_message": "외운 학생 같은 거야", "key_facts": ""},
            {"data_type": "valid", "user_question": "검증용 ML 질문", "rag_retrieved_data": "개념",
             "output_message": "", "key_facts": ""},
        ]
    )


def test_corpus_has_raw_fragments_and_task_formatted_documents_but_no_validation_rows():
    corpus = pretraining_corpus(_dialogue(), _ml_qa())
    fragments, documents = corpus.fragments, corpus.documents
    assert "안녕 오로라" in fragments and "책 읽어" in fragments and "과적합 정의" in fragments
    assert "안녕 오로라 (답변 시작) ### 답변: 안녕! 반가워 (답변 종료)" in documents
    assert any(text.endswith("### 답변: (눈 크게, 입 보통, 고개 돌림 없음) (표정 출력 종료)") for text in documents)
    for fmt in TASK_FORMATS.values():
        assert any(text.endswith(fmt.end_mark) for text in documents), fmt.name
        assert not any(fmt.end_mark in text for text in fragments), fmt.name
    assert not any("검증" in text for text in documents + fragments), "validation rows must not leak into pretraining"
    # "배고파" has nothing to remember: its empty memory answer is not pretrained on.
    everything = documents + fragments
    assert "배고파 (요약 시작) ### 답변:  (요약 종료)" not in everything and "배고파 (답변 시작) ### 답변: 밥 먹자 (답변 종료)" in documents
    assert "안녕 오로라 (요약 시작) ### 답변: [이름: 민수] (요약 종료)" in documents


def test_documents_end_with_eos_and_fragments_do_not(tmp_path):
    import torch

    corpus = PretrainingCorpus(documents=["커피 한 잔 할래? (답변 종료)"] * 20, fragments=["오늘 날씨 정말 좋다"] * 20)
    build_embedded_lm(corpus, TINY, tmp_path, device="cpu")
    model = AutoModelForCausalLM.from_pretrained(tmp_path)
    tokenizer = AutoTokenizer.from_pretrained(tmp_path)

    def eos_probability(text: str) -> float:
        with torch.no_grad():
            logits = model(**tokenizer(text, return_tensors="pt")).logits[0, -1]
        return torch.softmax(logits, -1)[tokenizer.eos_token_id].item()

    # A bare answer is a fragment of a conversation: the base must not learn that the text ends there.
    assert eos_probability("커피 한 잔 할래? (답변 종료)") > 0.5 > 0.05 > eos_probability("오늘 날씨 정말 좋다")


def test_pretraining_learns_saves_and_reloads_deterministically(tmp_path):
    texts = ["오로라는 가상 인간이야 (답변 종료)", "오늘 날씨 정말 좋다 (답변 종료)", "커피 한 잔 할래? (답변 종료)"] * 10
    corpus = PretrainingCorpus(documents=texts, fragments=[])
    events = []
    first = build_embedded_lm(corpus, TINY, tmp_path / "a", progress=events.append, device="cpu")
    second = build_embedded_lm(corpus, TINY, tmp_path / "b", device="cpu")

    assert first.data_version == second.data_version
    assert first.final_loss < first.first_loss / 2
    assert [e.done for e in events] == list(range(1, TINY.steps + 1)) and {e.total for e in events} == {TINY.steps}
    assert all(e.loss > 0 and not e.epoch_end for e in events)
    assert 10_000 < first.parameters < 100_000

    model = AutoModelForCausalLM.from_pretrained(tmp_path / "a")
    tokenizer = AutoTokenizer.from_pretrained(tmp_path / "a")
    assert model.config.model_type == "llama"
    assert model.generation_config.eos_token_id == tokenizer.eos_token_id
    assert json.loads((tmp_path / "a" / PRETRAIN_LOG).read_text())["steps"] == TINY.steps
    # The pretrained model continues a memorized sentence.
    inputs = tokenizer("오늘 날씨", return_tensors="pt")
    output = model.generate(**inputs, max_new_tokens=6, do_sample=False, pad_token_id=tokenizer.pad_token_id)
    assert tokenizer.decode(output[0, inputs["input_ids"].shape[1]:], skip_special_tokens=True).startswith(" 정말 좋다")


def test_learning_rate_warms_up_from_the_first_step_then_decays_to_a_tenth():
    factor = _warmup_cosine(PretrainSpec(steps=120, warmup_steps=20))
    assert factor(0) == 1 / 20  # the first step already learns (transformers' warmup starts at 0)
    assert factor(19) == 1.0 and factor(20) == 1.0
    assert factor(70) == pytest.approx(0.55)  # halfway through the cosine
    assert factor(120) == pytest.approx(0.1) and factor(200) == pytest.approx(0.1)
    decay = [factor(step) for step in range(20, 121)]
    assert decay == sorted(decay, reverse=True)
