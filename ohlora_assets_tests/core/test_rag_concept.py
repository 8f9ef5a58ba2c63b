"""RAG-concept experiment: key facts, grading and the two input variants (the end-to-end runs, ours and
on the seed CSVs, are in assets/test_reports.py)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from ohlora_assets.core.formats import ANSWER_MARK
from ohlora_assets.core.experiments.rag_concept import (
    derive_key_facts,
    experiment_data,
    grade,
    is_correct,
    key_facts_of,
    per_question_markdown,
    question_input,
)
from ohlora_assets.core.schemas import load_ml_qa

DATA = Path(__file__).resolve().parents[2] / "data" / "ml_qa_rag_concept.csv"


@pytest.mark.parametrize(
    ("concept", "facts"),
    [
        ("cosine similarity (코사인 유사도) : 두 벡터의 방향 유사도", ["코사인 유사도"]),
        ("Accuracy (정확도) : 모델이 얼마나 잘 맞혔는지", ["정확도"]),
        ("True Positive (TP) : 모델 예측이 참이면서", ["True Positive"]),
        ("F1 Score 개념 : Recall 과 Precision 의 조화 평균", ["F1 Score"]),
        ("PR-AUC 와 ROC-AUC : PR-AUC는 x축이 recall", ["PR-AUC", "ROC-AUC"]),
        ("IoU : (교집합의 크기) / (합집합의 크기)", ["IoU"]),
    ],
)
def test_key_facts_are_derived_from_the_concept_term(concept, facts):
    assert derive_key_facts(concept) == facts


def test_written_key_facts_win_over_derived_ones():
    row = pd.Series({"key_facts": "학습 데이터; 일반화", "rag_retrieved_data": "Overfitting (과적합) : ..."})
    assert key_facts_of(row) == (["학습 데이터", "일반화"], False)
    assert key_facts_of(row.replace("학습 데이터; 일반화", "")) == (["과적합"], True)


def test_an_answer_is_correct_only_with_every_key_fact():
    facts = ["학습 데이터", "일반화"]
    assert is_correct("과적합은 학습데이터에만 맞춰서 일반화가 안 되는 거야! 😊", facts)  # spacing differs
    assert not is_correct("과적합은 학습 데이터에 너무 맞춘 거야!", facts)
    assert not is_correct("아무 말", [])
    assert not is_correct("아무 말 😊", ["😊"]), "a fact with no words is in no answer, not in every one"


def test_our_data_writes_key_facts_that_appear_in_answer_and_concept():
    qa = load_ml_qa(DATA)
    assert (qa["data_type"] == "train").sum() >= 30 and (qa["data_type"] == "valid").sum() >= 30
    for _, row in qa.iterrows():
        facts, derived = key_facts_of(row)
        assert not derived
        assert is_correct(row["output_message"], facts) and is_correct(row["rag_retrieved_data"], facts), row["user_question"]


def test_the_two_variants_differ_only_in_the_concept():
    qa = load_ml_qa(DATA)
    with_train, with_valid, with_prompts = experiment_data(qa, True)
    bare_train, _, bare_prompts = experiment_data(qa, False)
    assert len(with_train) == len(bare_train) == 36 and len(with_prompts) == len(bare_prompts) == 36
    assert [c for _, c in with_train] == [c for _, c in bare_train]
    first = qa[qa["data_type"] == "valid"].iloc[0]
    assert with_prompts[0] == f"(제공된 정보) {first.rag_retrieved_data} (사용자 질문) {first.user_question} (답변 시작) {ANSWER_MARK}"
    assert bare_prompts[0] == f"{first.user_question} (답변 시작) {ANSWER_MARK}"
    assert question_input("q", "c", False) == "q" and len(with_valid) == 36


def test_grading_per_question_and_overall():
    valid = pd.DataFrame(
        {"user_question": ["과적합?", "코사인?"], "key_facts": ["일반화", ""],
         "rag_retrieved_data": ["Overfitting (과적합) : x", "cosine similarity (코사인 유사도) : y"]}
    )
    answers = {
        "with_concept": [["일반화가 안 돼", "일반화 못 해", "몰라", "일반화!"], ["코사인 유사도는...", "", "코사인유사도", "방향"]],
        "without_concept": [["몰라", "몰라", "몰라", "일반화"], ["몰라", "몰라", "몰라", "몰라"]],
    }
    per_question, per_answer, derived = grade(valid, answers)
    assert per_question["with_concept_correct"].tolist() == [3, 2]
    assert per_question["without_concept_accuracy"].tolist() == [0.25, 0.0]
    assert per_question["with_concept_accuracy"].mean() == pytest.approx(0.625)
    assert derived == 1 and len(per_answer) == 16 and per_answer["correct"].sum() == 6
    table = per_question_markdown(per_question)
    assert "| 1 | 과적합? | 일반화 | 3/4 | 1/4 |" in table and "*(derived)*" in table
