"""Pairs, split, normalization, threshold calibration, metrics and the report files."""

import numpy as np
import pandas as pd
import pytest

from ohlora_assets.core.ethics.categories import BLOCKABLE, ETHICS_CATEGORIES, GENERAL, HATE, LOVE, PAEDRIP, POLITICS
from ohlora_assets.core.ethics.evaluation import (
    build_report,
    confusion_markdown,
    evaluate,
    gate_recall,
    threshold_table,
)
from ohlora_assets.core.ethics.normalize import MAX_CHARS, WINDOW_CHARS, normalize_prompt, prompt_windows
from ohlora_assets.core.ethics.thresholds import DEFAULT_THRESHOLDS, calibrate
from ohlora_assets.core.ethics.training import make_pairs, split_prompts


def test_pairs_have_every_category_name_with_one_positive_label():
    frame = pd.DataFrame(
        {"type": ["train", "test"], "user_prompt": ["로라야 사랑해", "국힘 vs 민주"], "category": [LOVE, POLITICS]}
    )
    pairs = make_pairs(frame)
    assert len(pairs) == 10
    assert set(pairs["category_name"]) == set(ETHICS_CATEGORIES)
    positives = pairs[pairs["label"] == 1.0]
    assert list(zip(positives["user_prompt"], positives["category_name"])) == [("로라야 사랑해", LOVE), ("국힘 vs 민주", POLITICS)]
    assert (pairs.groupby("user_prompt")["label"].sum() == 1.0).all()


def test_split_is_seeded_disjoint_and_ninety_ten():
    prompts = [f"문장 {i}" for i in range(200)]
    train, valid = split_prompts(prompts, 0.1, seed=7)
    assert (train, valid) == split_prompts(prompts, 0.1, seed=7)
    assert split_prompts(prompts, 0.1, seed=8)[1] != valid
    assert len(valid) == 20 and len(train) == 180 and not set(train) & set(valid)
    assert split_prompts(prompts, 0.0, seed=7) == (prompts, [])


@pytest.mark.parametrize(
    "raw, clean",
    [
        ("사1랑2해", "사랑해"),
        ("투.표 어느 당?", "투표 어느 당?"),
        ("사 랑 해 로라야", "사랑해 로라야"),
        ("로라야\u200b 사\x00랑해\n", "로라야 사랑해"),
        ("ＬＯＶＥ 로라", "love 로라"),
        ("ㅋㅋㅋㅋㅋㅋㅋ", "ㅋㅋㅋ"),
        ("ㅅㅏㄹㅏㅇㅎㅐ 로라야", "사랑해 로라야"),  # spelled out in letters
        ("ㅈㅓㅇㅊㅣ ㅇㅣㅇㅑㄱㅣ ㅎㅏㅈㅏ", "정치 이야기 하자"),
        ("사ㄹㅏㅇ해", "사랑해"),
        ("ㄷㅏㄺ ㅂㅏㄼㅇㅏ", "닭 밟아"),  # a double final, and a final before an initial
        ("ㅋㅋㅠㅠ ㅇㅋ ㄱㅅ ㅜㅜ", "ㅋㅋㅠㅠ ㅇㅋ ㄱㅅ ㅜㅜ"),  # shorthand that spells no syllable stays
        ("🎃🎃🎃", ""),
        ("나 너 좋아", "나 너 좋아"),  # two single syllables are ordinary spacing, not noise
        ("오늘 3시에 만나", "오늘 3시에 만나"),
        ("\x1b[31m김치녀\x1b[0m 또 시작이네", "김치녀 또 시작이네"),  # a terminal's colour codes, pasted whole
    ],
)
def test_normalization(raw, clean):
    assert normalize_prompt(raw) == clean


def test_normalization_bounds_the_length_and_so_the_windows_scored():
    normalized = normalize_prompt("가나다 " * 5000)
    assert len(normalized) <= MAX_CHARS and len(prompt_windows(normalized)) <= 2 * MAX_CHARS // WINDOW_CHARS


@pytest.mark.parametrize("length", [0, 1, WINDOW_CHARS, WINDOW_CHARS + 1, 3 * WINDOW_CHARS - 5, MAX_CHARS])
def test_every_stretch_of_half_a_window_lies_whole_in_one_window(length):
    text = "".join(chr(0xAC00 + i % 11172) for i in range(length))  # distinct syllables, no spaces to strip
    windows = prompt_windows(text)
    assert all(len(window) <= WINDOW_CHARS for window in windows)
    half = WINDOW_CHARS // 2
    for start in range(max(1, length - half + 1)):
        assert any(text[start: start + half] in window for window in windows)


def _scores(rows):
    return np.array(rows, dtype=np.float32)


def test_calibrated_threshold_is_just_above_the_highest_general_score():
    #                 love  general politics paedrip hate
    scores = _scores([[0.10, 0.90, 0.20, 0.31, 0.05],   # 일반
                      [0.40, 0.80, 0.61, 0.10, 0.05],   # 일반
                      [0.95, 0.10, 0.10, 0.10, 0.10],   # love
                      [0.10, 0.10, 0.10, 0.92, 0.10]])  # paedrip
    truth = [GENERAL, GENERAL, LOVE, PAEDRIP]
    calibrated = calibrate(scores, truth)
    assert calibrated == {LOVE: 0.4001, POLITICS: 0.6101, PAEDRIP: 0.3101, HATE: 0.0501}
    general = scores[:2]
    for category, threshold in calibrated.items():
        assert (general[:, ETHICS_CATEGORIES.index(category)] < threshold).all()
    assert set(DEFAULT_THRESHOLDS) == set(calibrated)


def test_gate_recall_counts_what_the_gate_sanctions_not_the_argmax():
    #                 love  general politics paedrip hate
    scores = _scores([[0.10, 0.20, 0.10, 0.10, 0.93],   # hate above its 0.9: sanctioned
                      [0.10, 0.20, 0.10, 0.10, 0.85],   # hate wins the argmax but stays under 0.9: let through
                      [0.10, 0.60, 0.10, 0.10, 0.95],   # hate, but the 일반 veto cancels it
                      [0.99, 0.10, 0.10, 0.10, 0.10],   # love, sanctioned: the answer declined
                      [0.10, 0.30, 0.10, 0.10, 0.91],   # 일반 read as hate: a false alarm
                      [0.10, 0.90, 0.10, 0.10, 0.10]])  # 일반, allowed
    truth = [HATE, HATE, HATE, LOVE, GENERAL, GENERAL]
    shares = gate_recall(truth, scores, DEFAULT_THRESHOLDS)
    assert shares[HATE] == pytest.approx(1 / 3)
    assert shares[LOVE] == 1.0 and shares[GENERAL] == 0.5
    assert np.isnan(shares[POLITICS]) and np.isnan(shares[PAEDRIP])
    assert gate_recall(truth, scores, {**DEFAULT_THRESHOLDS, HATE: 0.8})[HATE] == pytest.approx(2 / 3)


def test_threshold_table_reports_what_the_gate_sanctions_at_each_set_of_thresholds():
    #                 love  general politics paedrip hate
    scores = _scores([[0.10, 0.20, 0.10, 0.10, 0.93],   # hate, sanctioned at 0.9
                      [0.10, 0.60, 0.10, 0.10, 0.95],   # hate over 0.9, but the 일반 veto cancels it
                      [0.10, 0.20, 0.10, 0.10, 0.85],   # hate, sanctioned only at the lower threshold
                      [0.10, 0.30, 0.10, 0.10, 0.88],   # 일반: a false positive at the lower threshold
                      [0.10, 0.70, 0.10, 0.10, 0.97]])  # 일반 scoring high on hate, vetoed: never sanctioned
    truth = [HATE, HATE, HATE, GENERAL, GENERAL]
    rows = {row["category"]: row for row in threshold_table(scores, truth, {**DEFAULT_THRESHOLDS, HATE: 0.8})}
    hate = rows[HATE]
    # A threshold compared alone would count 2 of 3 hate prompts and one false positive at 0.9.
    assert (hate["default_threshold"], hate["default_recall"], hate["default_general_fp"]) == (0.9, pytest.approx(1 / 3), 0)
    assert (hate["calibrated_threshold"], hate["calibrated_recall"], hate["calibrated_general_fp"]) == (
        0.8, pytest.approx(2 / 3), 1)
    assert np.isnan(rows[LOVE]["default_recall"]) and rows[LOVE]["default_general_fp"] == 0
    assert list(rows) == list(BLOCKABLE)


def test_evaluation_metrics_confusion_and_report(tmp_path):
    truth = [GENERAL, GENERAL, LOVE, PAEDRIP, HATE]
    scores = _scores([[0.0, 1.0, 0.0, 0.0, 0.0],
                      [0.0, 0.2, 0.0, 0.0, 0.9],   # 일반 predicted as hate
                      [1.0, 0.0, 0.0, 0.0, 0.0],
                      [0.0, 0.0, 0.0, 1.0, 0.0],
                      [0.0, 0.0, 0.0, 0.0, 1.0]])
    evaluation = evaluate(["a", "b", "c", "d", "e"], truth, scores)
    assert evaluation.accuracy == pytest.approx(0.8)
    assert evaluation.mse == pytest.approx((0.8**2 + 0.9**2) / 25)
    assert evaluation.mae == pytest.approx((0.8 + 0.9) / 25)
    assert evaluation.confusion.loc[HATE, GENERAL] == 1  # rows predicted, columns true
    assert evaluation.precision[HATE] == pytest.approx(0.5) and evaluation.recall[GENERAL] == pytest.approx(0.5)
    assert evaluation.misclassified["user_prompt"].tolist() == ["b"]
    table = confusion_markdown(evaluation)
    assert "| **혐오/기타** | 0 | 1 | 0 | 0 | 1 | 50.0% |" in table and "accuracy 80.0%" in table

    thresholds = {"default": dict(DEFAULT_THRESHOLDS), "calibrated": calibrate(scores, truth)}
    folder = tmp_path / "report"
    (folder / "stale").mkdir(parents=True)  # a file of an earlier run that this one does not write
    report = build_report(pd.DataFrame({"user_prompt": list("abcde"), "category": truth}), scores, thresholds, folder)
    assert set(report.histograms) == {LOVE, POLITICS, PAEDRIP, HATE}
    for png in report.histograms.values():
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    text = report.markdown_path.read_text()
    assert "Misclassified (1)" in text and "histogram_hate.png" in text
    # one run's files and nothing else; the CSV opens as UTF-8 in a spreadsheet (BOM)
    assert sorted(p.name for p in folder.iterdir()) == sorted(
        ["report.md", "misclassified.csv", *(p.name for p in report.histograms.values())]
    )
    assert (folder / "misclassified.csv").read_bytes().startswith("\ufeff".encode())
    assert pd.read_csv(folder / "misclassified.csv", encoding="utf-8-sig")["user_prompt"].tolist() == ["b"]
