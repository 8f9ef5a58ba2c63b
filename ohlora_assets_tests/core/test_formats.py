import pandas as pd
import pytest

from ohlora_assets.core.formats import (
    ANSWER_MARK,
    MEMORY_PATTERN,
    TASK_FORMATS,
    core_question,
    is_valid_memory,
    parse_eyes_mouth_pose,
    task_split,
)


@pytest.fixture
def dialogue() -> pd.DataFrame:
    rows = [
        ("train", "(지금은 금요일 저녁) 로라야 뭐 해?", "노래 듣는 중이야! 🎧", "", "노래 감상 중", "보통", "크게", "없음"),
        ("train", "[반려동물: 고양이] 우리 냥이가 아파", "헉 많이 걱정되겠다 ㅠㅠ", "[반려동물 상태: 아픔]", "고양이 걱정", "크게", "보통", "보통"),
        ("train_msg", "안녕!", "안녕~ 반가워!", "", "", "", "", ""),
        ("valid", "오늘 날씨 어때?", "맑아서 산책하기 좋아!", "", "", "", "", ""),
        ("valid_msg", "주말에 뭐 했어?", "", "", "", "", "", ""),
    ]
    columns = ["data_type", "input_data", "output_message", "memory", "summary", "eyes", "mouth", "pose"]
    frame = pd.DataFrame(rows, columns=columns)
    frame["eyes_mouth_pose"] = [
        f"(눈 {e}, 입 {m}, 고개 돌림 {p})" if e else "" for e, m, p in zip(frame.eyes, frame.mouth, frame.pose)
    ]
    return frame


def test_texts_match_the_v4_formats_exactly(dialogue):
    om = task_split(dialogue, "output_message", "train")
    assert om.loc[0, "prompt"] + om.loc[0, "completion"] == (
        "(지금은 금요일 저녁) 로라야 뭐 해? (답변 시작) ### 답변: 노래 듣는 중이야! 🎧 (답변 종료)"
    )
    summary = task_split(dialogue, "summary", "train")
    assert summary.loc[1, "prompt"] + summary.loc[1, "completion"] == (
        "[반려동물: 고양이] 우리 냥이가 아파 (오로라 답변) 헉 많이 걱정되겠다 ㅠㅠ (요약 시작) ### 답변: 고양이 걱정 (요약 종료)"
    )
    memory = task_split(dialogue, "memory", "train")
    assert memory["completion"].tolist() == ["  (요약 종료)", " [반려동물 상태: 아픔] (요약 종료)"]
    emp = task_split(dialogue, "eyes_mouth_pose", "train")
    assert emp.loc[0, "prompt"] + emp.loc[0, "completion"] == (
        "노래 듣는 중이야! 🎧 (표정 출력 시작) ### 답변: (눈 보통, 입 크게, 고개 돌림 없음) (표정 출력 종료)"
    )
    for task in TASK_FORMATS:
        assert task_split(dialogue, task, "train")["prompt"].str.endswith(ANSWER_MARK).all()


def test_row_selection_per_task_and_split(dialogue):
    assert task_split(dialogue, "output_message", "train")["source_row"].tolist() == [0, 1, 2]
    valid = task_split(dialogue, "output_message", "valid")
    assert valid["source_row"].tolist() == [3, 4] and valid["has_label"].tolist() == [True, False]
    # valid_msg rows have no output_message, so they cannot prompt summary or eyes_mouth_pose
    assert task_split(dialogue, "summary", "valid")["source_row"].tolist() == [3]
    assert task_split(dialogue, "memory", "valid")["source_row"].tolist() == [3, 4]
    assert task_split(dialogue, "memory", "train")["has_label"].all()  # empty memory is a label


def test_parsers():
    assert parse_eyes_mouth_pose("(눈 아주 크게, 입 보통, 고개 돌림 많이)") == ("아주 크게", "보통", "많이")
    assert parse_eyes_mouth_pose("(눈 거대, 입 보통, 고개 돌림 많이)") is None
    assert parse_eyes_mouth_pose("눈 크게") is None
    assert is_valid_memory("") and is_valid_memory("[취미: 등산]")
    assert not is_valid_memory("[취미 등산]") and not is_valid_memory("취미: 등산")
    assert not MEMORY_PATTERN.match("[취미: 등산]\n") and not MEMORY_PATTERN.match("[취미: 등\n산]")


def test_core_question_strips_wrappers():
    text = "(오로라 답변 요약) 떡볶이를 좋아함 (사용자 질문) [기분: 좋음] (지금은 월요일 오전) 점심 뭐 먹지?"
    assert core_question(text) == "점심 뭐 먹지?"
    assert core_question("(지금은 일요일 오후) 심심해") == "심심해"
    assert core_question("(지금은 화요일 오전) [기분: 좋음] 점심 뭐 먹지?") == "점심 뭐 먹지?"
