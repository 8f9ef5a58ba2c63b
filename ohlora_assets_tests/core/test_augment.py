import json
import unicodedata

import pytest

from ohlora_assets.core.augment import SynonymSwapper, load_synonym_groups, read_synonym_groups
from ohlora_assets.core.data_issues import DataValidationError
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


def test_only_the_users_own_words_are_swapped():
    import random

    swapper = SynonymSwapper([["오전", "아침"], ["요약", "정리"], ["질문", "물음"], ["AI", "인공지능"]])
    text = "(오로라 답변 요약) AI 이야기에 답함 (사용자 질문) (지금은 토요일 오전) [사용자 전공: AI] 오전에 AI 질문 있어"
    prefix = "(오로라 답변 요약) AI 이야기에 답함 (사용자 질문) (지금은 토요일 오전) [사용자 전공: AI] "
    variants = {swapper.swap(text, random.Random(i)) for i in range(40)}
    assert all(v.startswith(prefix) for v in variants)
    assert {v.removeprefix(prefix) for v in variants} == {
        f"{time} {ai} {question} 있어" for time in ("오전에", "아침에") for ai in ("AI", "인공지능")
        for question in ("질문", "물음")
    }


def test_a_variant_that_reads_as_a_validation_input_keeps_its_own_words():
    swapper = SynonymSwapper([["오!", "우와!"]])
    texts = ["오! 대박"] * 12
    free = [swapper.variant(texts, seed=1, epoch=e) for e in range(4)]
    assert any("우와! 대박" in v for v in free)
    guarded = [swapper.variant(texts, seed=1, epoch=e, held_out=frozenset({"우와! 대박"})) for e in range(4)]
    assert all(v == texts for v in guarded)


@pytest.mark.parametrize(
    "text, expected",
    [
        ('[["오!", "우와!"],', (None, None, "not valid JSON")),
        ("[]", (None, None, "no synonym groups")),
        ("[[" + "1" * 5000 + ', "오!"]]', (None, None, "a number thousands of digits long")),  # past int()'s limit
        ('{"오!": "우와!"}', (None, None, "not a JSON array")),
        ('[["오!", "우와!"], []]', (2, None, "has 0 word(s)")),
        ('[["혼자"], ["오!", "우와!"]]', (1, None, "has 1 word(s)")),
        ('[["오!", "우와!"], ["나는", "  "]]', (2, "word 2", "empty or only spaces")),
        ('[["오!", "우와!"], ["나는", "\u200b"]]', (2, "word 2", "empty or only spaces")),
        ('[["오!", "우와!"], ["난", 3]]', (2, "word 2", "not a string")),
        ('[["오!", "우와!"], ["난", null]]', (2, "word 2", "null is not a string")),  # as written in JSON
        # half an emoji, as JavaScript leaves a string it cut inside one: cannot be written as UTF-8
        ('[["오!", "우와\\ud83d"]]', (1, "word 2", "lone surrogate U+D83D")),
        ('[["오!", "우와!"], ["와우", "우와!"]]', (2, "word 2", "already in group 1")),
        ('[["오!", "오!"]]', (1, "word 2", "earlier in this group")),
        # a mark the prompt format writes, swapped into a prompt, would end or split it
        ('[["오!", "우와! (답변 종료)"]]', (1, "word 2", "contains (답변 종료), a mark the prompt format writes")),
        ('[["오!", "우와"], ["### 답변:", "답"]]', (2, "word 1", "contains ### 답변:")),
        # 한국! read as Latin-1: 국's last byte becomes a soft hyphen (U+00AD), which cleaning would drop
        ('[["오!", "\u00ed\u0095\u009c\u00ea\u00b5\u00ad!"]]', (1, "word 2", "was '한국!'")),
    ],
)
def test_bad_synonym_files_are_located_by_group_and_word(tmp_path, text, expected):
    path = tmp_path / "syn.json"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(DataValidationError) as caught:
        load_synonym_groups(path)
    [issue] = caught.value.issues
    assert (issue.row, issue.column) == expected[:2] and expected[2] in issue.message and issue.fix
    assert issue.unit == "group" or issue.row is None


def test_synonym_file_with_bom_and_nfd_is_read_with_a_note(tmp_path):
    path = tmp_path / "syn.json"
    text = json.dumps([["우와!", "와우!"], ["나는 ", "난 "]], ensure_ascii=False)
    path.write_bytes(b"\xef\xbb\xbf" + unicodedata.normalize("NFD", text).encode())
    groups, [note] = read_synonym_groups(path)
    assert groups == [["우와!", "와우!"], ["나는 ", "난 "]] and "NFC" in note.message


def test_missing_or_directory_synonym_path_is_named(tmp_path):
    for path, expected in ((tmp_path / "none.json", "file not found"), (tmp_path, "directory")):
        with pytest.raises(DataValidationError, match=expected):
            load_synonym_groups(path)


@pytest.mark.parametrize(
    "body, expected",
    [
        ('[\n ["나는 ", "난 "]\n]'.encode("cp949"), "line 2"),  # saved by a Windows Korean editor
        ("\ufeff[]".encode("utf-16-le"), "UTF-16"),
        (b"<!DOCTYPE html><html><body>Sign in</body></html>", "web page"),
    ],
)
def test_a_synonym_file_in_another_encoding_or_format_gets_json_wording(tmp_path, body, expected):
    path = tmp_path / "syn.json"
    path.write_bytes(body)
    with pytest.raises(DataValidationError) as caught:
        load_synonym_groups(path)
    [issue] = caught.value.issues
    assert expected in issue.message and issue.row is None and "CSV" not in str(issue)


def test_arrays_nested_past_the_parser_limit_are_an_issue_not_a_crash(tmp_path):
    path = tmp_path / "syn.json"
    path.write_text("[" * 100_000 + "]" * 100_000, encoding="utf-8")
    with pytest.raises(DataValidationError, match="nested"):
        load_synonym_groups(path)
