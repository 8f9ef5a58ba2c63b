"""Property: any mutation of a valid input file gives a located DataValidationError or an accepted,
clean dataset, never another exception."""

import unicodedata
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ohlora_assets.core import schemas
from ohlora_assets.core.augment import read_synonym_groups
from ohlora_assets.core.data_issues import DataValidationError
from ohlora_assets_tests.conftest import sample_paths

INSERTIONS = ['"', ",", "\n", "\r", "\r\n", "\x00", "\x07", "\u200b", "\u3164", "\ufeff", "\u200d", "  ", '""', "\xa0"]


def _valid_ethics() -> bytes:
    """A small valid ethics file: a few train rows of every category, and a few test rows."""
    lines = Path(sample_paths().ethics_csv).read_text(encoding="utf-8").splitlines(True)
    kept, seen = [lines[0]], {}
    for line in lines[1:]:
        key = (line.split(",")[0], line.rsplit(",", 1)[1])
        if seen.get(key, 0) < 3:
            seen[key] = seen.get(key, 0) + 1
            kept.append(line)
    return "".join(kept).encode("utf-8")


VALID = _valid_ethics()


@st.composite
def mutations(draw, valid: bytes) -> bytes:
    data = valid
    for _ in range(draw(st.integers(1, 3))):
        kind = draw(st.sampled_from(["truncate", "insert", "encode", "duplicate_header", "bom", "nfd", "bytes"]))
        at = draw(st.integers(0, len(data)))
        if kind == "truncate":
            data = data[:at]
        elif kind == "insert":
            data = data[:at] + draw(st.sampled_from(INSERTIONS)).encode() + data[at:]
        elif kind == "encode":
            text = data.decode("utf-8", errors="replace")
            data = text.encode(draw(st.sampled_from(["cp949", "utf-16", "latin-1", "utf-8-sig"])), errors="replace")
        elif kind == "duplicate_header":
            header, _, body = data.partition(b"\n")
            first = header.split(b",")[draw(st.integers(0, header.count(b",")))]
            data = header.rstrip(b"\r") + b"," + first + b"\n" + body
        elif kind == "bom":
            data = b"\xef\xbb\xbf" + data
        elif kind == "nfd":
            data = unicodedata.normalize("NFD", data.decode("utf-8", errors="replace")).encode()
        else:
            data = data[:at] + draw(st.binary(min_size=1, max_size=4)) + data[at:]
    return data


def _assert_located(error: DataValidationError, path: Path) -> None:
    assert error.issues
    for issue in error.issues:
        assert issue.file == str(path) and issue.message and issue.fix
        assert issue.row is None or issue.row >= 1


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=mutations(VALID))
def test_mutated_csv_is_located_or_accepted_clean(tmp_path, data):
    path = tmp_path / "ethics.csv"
    path.write_bytes(data)
    try:
        table = schemas.load(schemas.ETHICS, path)
    except DataValidationError as error:
        _assert_located(error, path)
        return
    frame = table.frame
    assert len(frame) > 0 and list(frame.columns) == schemas.ETHICS_COLUMNS
    for value in frame.to_numpy().ravel():
        assert unicodedata.is_normalized("NFC", value) and "\r" not in value and "\x00" not in value
        assert "\u200b" not in value and "\ufeff" not in value


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=mutations(Path(sample_paths().synonyms_json).read_bytes()))
def test_mutated_synonyms_are_located_or_accepted_clean(tmp_path, data):
    path = tmp_path / "synonyms.json"
    path.write_bytes(data)
    try:
        groups, _ = read_synonym_groups(path)
    except DataValidationError as error:
        _assert_located(error, path)
        return
    words = [w for g in groups for w in g]
    assert groups and all(len(g) >= 2 for g in groups) and len(words) == len(set(words))
    assert all(w.strip() and unicodedata.is_normalized("NFC", w) for w in words)


@pytest.mark.parametrize("column", schemas.ETHICS_COLUMNS)
def test_valid_base_file_is_accepted_and_a_duplicated_header_is_not(tmp_path, column):
    path = tmp_path / "ethics.csv"
    path.write_bytes(VALID)
    assert len(schemas.load(schemas.ETHICS, path).frame) == VALID.count(b"\n") - 1
    header, _, body = VALID.partition(b"\n")
    path.write_bytes(header.rstrip(b"\r") + f",{column}\n".encode() + body)
    with pytest.raises(DataValidationError, match="appears more than once"):
        schemas.load(schemas.ETHICS, path)
