"""The quality rules on hand-made answers that could fail both ways."""

from __future__ import annotations

import pandas as pd
import pytest

from ohlora_assets.core.formats import TASK_FORMATS
from ohlora_assets.core.quality import (
    CopyDetector,
    comparison_markdown,
    has_numbered_prefix,
    normalize,
    prompt_question,
    quality_metrics,
    quality_plot,
    score_answers,
    side_by_side_markdown,
    similarity,
)


@pytest.mark.parametrize("answer", ["1. 안녕!", "2) 좋아", "5. 혜나!", "  3 . 그건 말이야", "10)괜찮아", "(1) 혜나!",
                                    "１．안녕", "２）좋아", "① 맞아", "❷ 응", "1\ufe0f\u20e3 오늘은"])
def test_enumerations_are_numbered_prefixes(answer):
    assert has_numbered_prefix(answer)


@pytest.mark.parametrize("answer", ["2003년생이야!", "22살이야", "3.5배 더 좋아", "오늘 1. 했어", "", "일. 이런 거",
                                    "３．５배 더 좋아", "(1/3) 진행 중이야", "(웃음) 좋아", "10:30에 만나", "1위 했어!"])
def test_number_words_and_decimals_are_not(answer):
    assert not has_numbered_prefix(answer)


def test_normalize_ignores_spacing_punctuation_emoji_and_case():
    assert normalize("안녕!  반가워 😊") == normalize("안녕 반가워") == "안녕반가워"
    assert normalize("F1 Score!") == "f1score"
    assert similarity("", "") == 0.0 and similarity("도서관에서 공부했어!", "도서관에서 공부했어 😊") == 1.0


def _om(input_data: str) -> str:
    return TASK_FORMATS["output_message"].prompt({"input_data": input_data})


def test_prompt_question_strips_tags_for_each_prompt_shape():
    assert prompt_question("output_message", _om("[이름: 혜나] (지금은 월요일 오전) 오늘 뭐 했어?")) == "오늘 뭐 했어?"
    summary = TASK_FORMATS["summary"].prompt(
        {"input_data": "(오로라 답변 요약) 떡볶이를 좋아함 (사용자 질문) 그럼 라면은?", "output_message": "라면도 좋아!"}
    )
    assert prompt_question("summary", summary) == "그럼 라면은?"
    emp = TASK_FORMATS["eyes_mouth_pose"].prompt({"output_message": "우와 진짜 신난다!"})
    assert prompt_question("eyes_mouth_pose", emp) == "우와 진짜 신난다!"


def _train(task: str, pairs: list[tuple[str, str]]) -> pd.DataFrame:
    fmt = TASK_FORMATS[task]
    return pd.DataFrame(
        {
            "source_row": range(len(pairs)),
            "prompt": [fmt.prompt({"input_data": q}) for q, _ in pairs],
            "completion": [fmt.completion(a) for _, a in pairs],
        }
    )


TRAIN = _train(
    "output_message",
    [
        ("좋아하는 음식은?", "떡볶이 제일 좋아해 👍"),
        ("오늘 뭐 했어?", "도서관에서 하루 종일 공부했어!"),
        ("좋아하는 음식 뭐야?", "응 좋아!"),
        ("주말에 영화 볼래?", "응 좋아!"),
    ],
)


def test_an_answer_recited_from_an_unrelated_row_is_copied():
    detector = CopyDetector("output_message", TRAIN)
    assert detector.copied_from("도서관에서 하루 종일 공부했어!!", _om("(지금은 금요일 저녁) 어제 본 드라마 어땠어?")) == 1
    # one changed word is still near-identical
    assert detector.copied_from("도서관에서 하루 종일 공부했지!", _om("어제 본 드라마 어땠어?")) == 1


def test_related_prompts_different_answers_and_stock_replies_are_not_copied():
    detector = CopyDetector("output_message", TRAIN)
    # same question once the time tag and memory prefix are gone: answering like training is right
    assert detector.copied_from("도서관에서 하루 종일 공부했어 😊", _om("[이름: 혜나] (지금은 월요일 오전) 오늘 뭐 했어?")) is None
    # unrelated prompt but a different answer
    assert detector.copied_from("드라마 재밌었어! 주인공이 멋있더라", _om("어제 본 드라마 어땠어?")) is None
    # a stock reply that also answers a related training prompt (row 2) is fair
    assert detector.copied_from("응 좋아!", _om("좋아하는 음식 알려줘")) is None
    # ...but for a prompt related to neither row it is a recitation
    assert detector.copied_from("응 좋아!", _om("수학 숙제 다 했어?")) in (2, 3)
    assert detector.copied_from("", _om("수학 숙제 다 했어?")) is None


def test_empty_training_memories_are_never_the_source_of_a_copy():
    train = _train("memory", [("날씨 좋다", ""), ("내 이름은 혜나야", "[이름: 혜나]")])
    detector = CopyDetector("memory", train)
    prompt = TASK_FORMATS["memory"].prompt({"input_data": "배고프다"})
    assert detector.copied_from("", prompt) is None
    assert detector.copied_from("[이름: 혜나]", prompt) == 1


def _samples(task: str, answers: list[str], **columns) -> pd.DataFrame:
    n = len(answers)
    fmt = TASK_FORMATS[task]
    field = fmt.prompt_columns[0]
    base = {
        "prompt_index": [i // 2 for i in range(n)],
        "source_row": [100 + i // 2 for i in range(n)],
        "prompt": [fmt.prompt({field: f"질문 {i // 2}", "output_message": "응"}) for i in range(n)],
        "answer": answers,
        "retries": [0] * n,
        "gave_up": [False] * n,
        "latency_s": [1.0] * n,
    }
    base.update(columns)
    return pd.DataFrame(base)


def test_metrics_count_each_failure_kind():
    samples = _samples(
        "output_message",
        ["1. 떡볶이!", "2003년생이야", "도서관에서 하루 종일 공부했어!", "", "안녕", "반가워"],
        retries=[0, 0, 1, 2, 0, 0],
        gave_up=[False, False, False, True, False, False],
        latency_s=[1.0, 1.0, 2.0, 3.0, 1.0, 11.0],
    )
    flagged = score_answers("output_message", samples, TRAIN)
    metrics = quality_metrics("output_message", flagged, wall_s=4.0, generated_tokens=40)
    assert metrics["answers"] == 6 and metrics["prompts"] == 3
    assert metrics["numbered_prefix_rate"] == pytest.approx(1 / 6)
    assert metrics["copied_answer_rate"] == pytest.approx(1 / 6)
    assert flagged["copied_from_row"].tolist()[2] == 1
    assert metrics["empty_answers"] == 1 and metrics["retries"] == 3 and metrics["give_ups"] == 1
    assert metrics["retried_answer_rate"] == pytest.approx(2 / 6)
    assert metrics["format_valid_rate"] is None
    assert metrics["latency_mean_s"] == pytest.approx(19 / 6)
    assert 3.0 < metrics["latency_p95_s"] < 11.0
    assert metrics["tokens_per_s"] == 10.0


def test_format_validity_and_no_copy_metric_for_expressions():
    train = pd.DataFrame(
        {"source_row": [0], "prompt": [TASK_FORMATS["eyes_mouth_pose"].prompt({"output_message": "좋아!"})],
         "completion": [TASK_FORMATS["eyes_mouth_pose"].completion("(눈 크게, 입 보통, 고개 돌림 없음)")]}
    )
    samples = _samples(
        "eyes_mouth_pose",
        ["(눈 크게, 입 보통, 고개 돌림 없음)", "(눈 크게, 입 작게, 고개 돌림 없음)", "(눈 보통, 입 크게, 고개 돌림 많이)", "눈 크게"],
    )
    metrics = quality_metrics("eyes_mouth_pose", score_answers("eyes_mouth_pose", samples, train), 1.0, 1)
    assert metrics["format_valid_rate"] == 0.5  # 입 작게 is not an allowed mouth value
    assert metrics["copied_answer_rate"] is None
    memory = _samples("memory", ["", "[취미: 등산]", "[취미 등산]", "[a: b] [c: d]"])
    empty_train = _train("memory", [("x", "")])
    assert quality_metrics("memory", score_answers("memory", memory, empty_train), 1.0, 1)["format_valid_rate"] == 0.5


def test_comparison_marks_better_and_worse_and_the_first_run():
    now = {"numbered_prefix_rate": 0.25, "tokens_per_s": 12.0, "copied_answer_rate": None}
    table = comparison_markdown(now, {"numbered_prefix_rate": 0.1, "tokens_per_s": 10.0})
    assert "| numbered-prefix rate | 0.250 | 0.100 | +0.150 worse |" in table
    assert "| tokens/s | 12 | 10 | +2.000 better |" in table
    assert "| copied-answer rate | n/a | n/a |  |" in table
    assert "nothing serves yet" in comparison_markdown(now, None)
    side = side_by_side_markdown({"rank 16": now, "rank 64": {"numbered_prefix_rate": 0.0}})
    assert "| numbered-prefix rate | 0.250 | 0.000 |" in side


def test_plot_is_a_png():
    png = quality_plot({"now": {"give_up_rate": 0.5}}, {"now": [0.1, 0.2, 0.3]}, "test")
    assert png.startswith(b"\x89PNG")


def test_no_answers_is_no_rate_rather_than_a_perfect_one():
    columns = ["prompt_index", "numbered_prefix", "copied_from_row", "empty", "retries", "gave_up", "format_valid",
               "latency_s"]
    metrics = quality_metrics("memory", pd.DataFrame(columns=columns), 0.0, 0)
    assert metrics["answers"] == 0
    rates = ("numbered_prefix_rate", "copied_answer_rate", "give_up_rate", "format_valid_rate", "latency_p95_s")
    assert all(metrics[rate] is None for rate in rates)
