"""train -> check -> promote -> serve -> roll back, on real tiny adapters trained straight into registry versions."""

from pathlib import Path

import pandas as pd
import pytest
import torch

from ohlora_assets.core.base_lm import PretrainingCorpus, PretrainSpec, build_embedded_lm
from ohlora_assets.core.formats import task_split
from ohlora_assets.core.base_models import ModelSpec
from ohlora_assets.core.lora import LoraHyperParams, load_adapter, read_training_log, train_lora_adapter
from ohlora_assets.core.promotion import AdapterMetrics, Tolerances, adapter_gate, promote_if_passed
from ohlora_assets.core.registry import ModelRegistry
from ohlora_assets.resources import SAMPLE_DATA

TINY = PretrainSpec(vocab_size=400, hidden_size=32, intermediate_size=64, num_layers=1, num_heads=2, batch_size=8, steps=30)
# A tiny base cannot learn to stop at the end mark in seconds; the other checks are the point here.
TOLERANCES = Tolerances(min_end_mark_rate=0.0)
NO_REPORT = ()  # the lifecycle here is train -> check -> promote; no quality report measures rates


@pytest.fixture(scope="module")
def pairs() -> list[tuple[str, str]]:
    dialogue = pd.read_csv(SAMPLE_DATA / "ohlora_dialogue.csv", dtype=str, keep_default_na=False)
    split = task_split(dialogue, "summary", "train").head(12)
    return list(zip(split["prompt"], split["completion"]))


@pytest.fixture(scope="module")
def base(tmp_path_factory, pairs) -> Path:
    torch.set_num_threads(1)
    directory = tmp_path_factory.mktemp("lifecycle") / "base"
    build_embedded_lm(PretrainingCorpus(documents=[p + c for p, c in pairs], fragments=[]), TINY, directory, device="cpu")
    return directory


def _train_and_check(registry: ModelRegistry, base: Path, pairs, hp: LoraHyperParams) -> tuple[str, AdapterMetrics]:
    """Train into a new version, then measure it as the blocking checks would (end marks aside)."""
    with registry.write_version(notes=f"lr {hp.learning_rate}") as pending:
        train_lora_adapter(ModelSpec(str(base), device="cpu"), pairs, [], hp, pending.path)
    path = registry.get(pending.version).path
    load_adapter(path)  # raises if plain PEFT cannot load it
    log = read_training_log(path)
    metrics = AdapterMetrics(True, 0.0, log.first_train_loss, log.final_train_loss)
    registry.record_metrics(pending.version, metrics.to_dict())
    return pending.version, metrics


def test_a_candidate_that_learned_nothing_is_refused_and_rollback_restores_the_earlier_version(tmp_path, base, pairs):
    registry = ModelRegistry(tmp_path, "adapter_summary")
    learning = LoraHyperParams(rank=2, epochs=3, batch_size=4, learning_rate=2e-3)
    first, first_metrics = _train_and_check(registry, base, pairs, learning)
    assert promote_if_passed(registry, first, adapter_gate(first_metrics, None, TOLERANCES, rates=NO_REPORT))[0]

    # Zero learning rate, no dropout, one batch per epoch: every epoch sees the same loss.
    frozen = LoraHyperParams(rank=2, epochs=2, batch_size=len(pairs), learning_rate=0.0, dropout=0.0, seed=1)
    worse, worse_metrics = _train_and_check(registry, base, pairs, frozen)
    promoted, message = promote_if_passed(registry, worse, adapter_gate(worse_metrics, first_metrics, TOLERANCES, rates=NO_REPORT))
    assert not promoted and "loss_decreased" in message
    assert registry.serving_label() == first
    assert read_training_log(registry.serving_path()).final_train_loss == first_metrics.final_train_loss

    second, second_metrics = _train_and_check(registry, base, pairs, LoraHyperParams(**{**vars(learning), "seed": 2}))
    assert promote_if_passed(registry, second, adapter_gate(second_metrics, first_metrics, TOLERANCES, rates=NO_REPORT))[0]
    assert registry.rollback().version == first
    model, _ = load_adapter(registry.serving_path())
    assert model.peft_config["default"].r == 2
    # The refused version stays listed (a manual promote may still choose it) with its measured figures.
    assert registry.get(worse).metrics["final_train_loss"] == worse_metrics.final_train_loss
    assert not [p for p in registry.root.iterdir() if p.name.startswith(".") and p.name != ".lock"]


# Trains a second version of the model at argv[1] on the base at argv[2]; its progress callback SIGKILLs the
# process at the first epoch end, mid-training, while the staging directory holds a half-written nothing.
KILLED_TRAINING = """
import os, signal, sys
from ohlora_assets.core.base_models import ModelSpec
from ohlora_assets.core.lora import LoraHyperParams, train_lora_adapter
from ohlora_assets.core.registry import ModelRegistry
from ohlora_assets_tests.core.test_model_lifecycle import PAIRS_FOR_KILL

def kill_at_epoch_end(event):
    if event.epoch_end:
        os.kill(os.getpid(), signal.SIGKILL)

registry = ModelRegistry(sys.argv[1], "adapter_summary")
with registry.write_version() as pending:
    train_lora_adapter(ModelSpec(sys.argv[2], device="cpu"), PAIRS_FOR_KILL, [], LoraHyperParams(rank=2, epochs=3),
                       pending.path, kill_at_epoch_end)
"""
PAIRS_FOR_KILL = [("안녕 (요약 시작) ### 답변:", " 인사 (요약 종료)"), ("배고파 (요약 시작) ### 답변:", " 배고픔 (요약 종료)")]


def test_a_training_killed_midway_leaves_the_serving_version_loadable_and_its_debris_is_cleaned(tmp_path, base, pairs):
    import os
    import subprocess
    import sys

    registry = ModelRegistry(tmp_path, "adapter_summary")
    serving, _ = _train_and_check(registry, base, pairs, LoraHyperParams(rank=2, epochs=2, batch_size=4))
    registry.promote(serving, "first version")
    project = Path(__file__).resolve().parents[2]
    killed = subprocess.run(
        [sys.executable, "-c", KILLED_TRAINING, str(tmp_path), str(base)],
        env={**os.environ, "PYTHONPATH": str(project), "OHLORA_TORCH_THREADS": "1"}, capture_output=True, timeout=300,
    )
    assert killed.returncode == -9, killed.stderr.decode()[-2000:]
    assert [p for p in registry.root.iterdir() if p.name.startswith(".staging-")]  # what the kill left
    assert registry.serving_label() == serving and [v.version for v in registry.versions()] == [serving]
    load_adapter(registry.serving_path())
    # The next writer removes the dead one's staging directory.
    _train_and_check(registry, base, pairs, LoraHyperParams(rank=2, epochs=2, batch_size=4, seed=3))
    assert not [p for p in registry.root.iterdir() if p.name.startswith(".staging-")]
