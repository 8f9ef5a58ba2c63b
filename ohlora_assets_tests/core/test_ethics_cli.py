"""`ohlora ethics check`: every input gets one JSON object on stdout (a decision or an error), never a
traceback; exit 0 decided, 1 the gate could not decide, 2 usage error."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from ohlora_assets import ethics_cli
from ohlora_assets.core.ethics.categories import ETHICS_CATEGORIES

TREE = Path(ethics_cli.__file__).resolve().parents[1]
DECISIONS = {"allow", "warn", "block", "refused"}


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    """An untrained one-layer e5-small ethics model: real files, saved as the asset saves them."""
    from ohlora_assets.core.ethics.training import base_model

    model, _ = base_model("embedded", smoke=True)
    target = tmp_path_factory.mktemp("ethics") / "model"
    model.save(str(target))
    return target


def _run(args: list, home: Path) -> tuple[int, dict]:
    """The CLI in its own process, argv passed as given (bytes too): exit status and the parsed stdout."""
    env = {**os.environ, "PYTHONPATH": str(TREE), "OHLORA_HOME": str(home), "OHLORA_TORCH_THREADS": "1"}
    done = subprocess.run(
        [sys.executable, "-m", "ohlora_assets.ethics_cli", *args], capture_output=True, env=env, timeout=300
    )
    assert b"Traceback" not in done.stderr, done.stderr.decode(errors="replace")
    return done.returncode, json.loads(done.stdout.decode("utf-8"))


def _main(args: list[str], capsys) -> tuple[int, dict]:
    code = ethics_cli.main(args)
    return code, json.loads(capsys.readouterr().out)


def _assert_decided(output: dict, user: str) -> None:
    assert output["decision"] in DECISIONS and output["user"] == user
    assert set(output["scores"]) == set(ETHICS_CATEGORIES)


def test_a_prompt_that_looks_like_an_option_and_is_not_utf8_is_decided(model_dir, tmp_path):
    """Real argv bytes: `-_-` then a byte no UTF-8 text has, and a user id that starts with `-`."""
    code, output = _run([b"-_-\xff", "--user=-_-", "--model", model_dir, "--log", tmp_path / "log.sqlite"], tmp_path)
    assert code == 0
    _assert_decided(output, "-_-")
    assert output["normalized_prompt"] == "-_-"  # the undecodable byte carries nothing to score


@pytest.mark.parametrize("args", [["-_-", "--user", "u1"], ["--user", "u1", "-_-"], ["--user", "u1", "--", "--user"]])
def test_prompts_spelled_like_options_are_decided(model_dir, tmp_path, capsys, args):
    code, output = _main(["--model", str(model_dir), "--log", str(tmp_path / "l.sqlite"), *args], capsys)
    assert code == 0
    _assert_decided(output, "u1")


def test_a_user_id_that_is_not_utf8_is_a_usage_error(tmp_path):
    code, output = _run(["--user", b"kim\xff", "안녕"], tmp_path)
    assert code == 2 and output["error"] == "--user is not valid UTF-8 text"
    assert not (tmp_path / "ethics").exists()  # nothing logged


@pytest.mark.parametrize(
    "args, message",
    [
        (["안녕"], "the following arguments are required: --user"),
        (["안녕", "--user", "   "], "--user must not be empty"),
        (["--user", "u"], "a prompt is required"),
        (["로라야", "사랑해", "--user", "u"], "unrecognized arguments: 사랑해"),
        (["안녕", "--user", "-_-"], "argument --user: expected one argument"),
        (["안녕", "--user", "a", "--user", "b"], "--user is given more than once"),  # whose turn would it be?
        (["안녕", "--user", "a", "--log=x", "--log=y"], "--log is given more than once"),
    ],
)
def test_usage_errors_are_json_with_exit_2(args, message, capsys):
    code, output = _main(args, capsys)
    assert code == 2 and output["error"].startswith(message) and output["usage"].startswith("usage: ohlora ethics check")


def test_user_ids_are_stripped_and_turns_logged_in_the_given_file(model_dir, tmp_path, capsys):
    log = tmp_path / "log.sqlite"
    args = ["사1랑2해 로라야", "--user", " u1 ", "--answer", "미안", "--model", str(model_dir), "--log", str(log)]
    code, output = _main(args, capsys)
    assert code == 0 and output["normalized_prompt"] == "사랑해 로라야"
    _assert_decided(output, "u1")
    assert log.is_file()


def test_a_missing_model_folder_is_named_with_exit_1(tmp_path, capsys):
    code, output = _main(["안녕", "--user", "u", "--model", str(tmp_path / "none"), "--log", str(tmp_path / "l.sqlite")], capsys)
    assert code == 1 and str(tmp_path / "none") in output["error"] and "ethics_sbert_model" in output["error"]


@pytest.mark.parametrize("damage", ["truncated-weights", "garbled-modules-json"])
def test_a_corrupt_model_folder_is_named_with_exit_1(model_dir, tmp_path, capsys, damage):
    broken = tmp_path / "broken"
    shutil.copytree(model_dir, broken)
    if damage == "truncated-weights":
        (weights,) = broken.rglob("model.safetensors")
        weights.write_bytes(weights.read_bytes()[:1000])
    else:
        (broken / "modules.json").write_text("[{ not json")
    code, output = _main(["안녕", "--user", "u", "--model", str(broken), "--log", str(tmp_path / "l.sqlite")], capsys)
    assert code == 1 and output["error"].startswith(f"{broken}: the ethics model cannot be loaded")


def test_an_unusable_sanction_log_is_named_with_exit_1(model_dir, tmp_path, capsys):
    log = tmp_path / "log.sqlite"
    log.mkdir()  # a directory where the SQLite file should be
    code, output = _main(["안녕", "--user", "u", "--model", str(model_dir), "--log", str(log)], capsys)
    assert code == 1 and output["error"].startswith(f"{log}: the sanction log cannot be used")


def test_weights_that_give_non_finite_scores_are_named_not_decided(model_dir, tmp_path, capsys):
    # Damaged weights that still load: NaN scores compare false with every threshold and would never block.
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(str(model_dir))
    model[0].auto_model.embeddings.LayerNorm.weight.data[0] = float("nan")
    damaged = tmp_path / "damaged"
    model.save(str(damaged))
    code, output = _main(["김치녀 또 시작이네", "--user", "u", "--model", str(damaged), "--log", str(tmp_path / "l.sqlite")],
                         capsys)
    assert code == 1 and output["error"].startswith(f"{damaged}: the model gives non-finite embeddings")
    assert not (tmp_path / "l.sqlite").exists()  # nothing decided, nothing logged


def test_a_model_folder_that_does_not_exist_is_never_looked_up_on_the_hub(tmp_path, monkeypatch):
    from ohlora_assets.core.ethics.scoring import EthicsModelError, EthicsScorer

    monkeypatch.chdir(tmp_path)
    with pytest.raises(EthicsModelError, match="no saved sentence-transformers model"):
        EthicsScorer.load("intfloat/multilingual-e5-small")  # a relative path that is also a Hub id


def test_a_sanction_log_emptied_on_disk_is_refused_not_restarted(model_dir, tmp_path, capsys):
    log = tmp_path / "log.sqlite"
    args = ["김치녀 또 시작이네", "--user", "u", "--model", str(model_dir), "--log", str(log)]
    assert _main(args, capsys)[0] == 0
    log.write_bytes(b"")  # truncated by a crash or a careless `>`: its sanctions are gone
    code, output = _main(args, capsys)
    assert code == 1 and str(log) in output["error"] and "empty file" in output["error"]


def test_a_long_prompt_is_scored_by_its_most_harmful_window(model_dir):
    from ohlora_assets.core.ethics.categories import BLOCKABLE
    from ohlora_assets.core.ethics.normalize import normalize_prompt, prompt_windows
    from ohlora_assets.core.ethics.scoring import EthicsScorer

    scorer = EthicsScorer.load(model_dir)
    prompt = "안녕 " * 60 + "엄마 젖 더 먹고 와라"  # the insult after what the encoder reads of one window
    windows = prompt_windows(normalize_prompt(prompt))
    assert len(windows) > 1 and windows[-1].endswith("엄마 젖 더 먹고 와라")
    each = scorer.score(windows)
    blockable = [ETHICS_CATEGORIES.index(c) for c in BLOCKABLE]
    expected = each[each[:, blockable].max(axis=1).argmax()]
    assert np.allclose(scorer.score([prompt])[0], expected, atol=1e-6)


def test_a_gate_with_nothing_serving_says_how_to_serve_one(tmp_path, monkeypatch, capsys):
    # an ethics model was trained (its registry exists) but no gate promoted it
    (tmp_path / "models" / "ethics_sbert_model" / "versions").mkdir(parents=True)
    monkeypatch.setenv("OHLORA_HOME", str(tmp_path))
    code, output = _main(["--user", "gina", "안녕"], capsys)
    assert code == 1
    assert "no ethics model serves" in output["error"] and "ohlora models promote ethics_sbert_model ID" in output["error"]
