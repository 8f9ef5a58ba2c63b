"""Per-epoch training checkpoints (core/lora/checkpoint.py): a killed training resumes to the same adapter."""

import json
import logging
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import torch

import ohlora_assets
from ohlora_assets.core.base_models import ModelSpec
from ohlora_assets.core.lora import LoraHyperParams, train_lora_adapter
from ohlora_assets.core.lora.checkpoint import CHECKPOINT_FILE, load_state

from .conftest import PAIRS

HP = LoraHyperParams(rank=8, learning_rate=5e-3, epochs=3, batch_size=2, dropout=0.1)

# A training in its own process; with "kill", it SIGKILLs itself when it hears that epoch 1 ended.
TRAINING_PROCESS = """
import json, os, signal, sys
from pathlib import Path
import torch
torch.set_num_threads(1)
from ohlora_assets.core.base_models import ModelSpec
from ohlora_assets.core.lora import LoraHyperParams, train_lora_adapter
base, pairs, hp, output, checkpoints, mode = sys.argv[1:]
pairs = [tuple(p) for p in json.loads(pairs)]
steps = []

def progress(event):
    steps.append(event.done)
    if mode == "kill" and event.epoch_end and event.epoch == 1:
        os.kill(os.getpid(), signal.SIGKILL)

result = train_lora_adapter(ModelSpec(base, device="cpu"), pairs, pairs[:2], LoraHyperParams(**json.loads(hp)),
                            Path(output), progress, checkpoint_dir=Path(checkpoints))
print(json.dumps({"data_version": result.data_version, "resumed_epochs": result.resumed_epochs, "first_step": steps[0],
                  "train_losses": [e.train_loss for e in result.epochs]}))
"""


def run_training_process(base: Path, output: Path, checkpoints: Path, mode: str) -> subprocess.CompletedProcess:
    root = Path(ohlora_assets.__file__).resolve().parents[1]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(root), os.environ.get("PYTHONPATH", "")])}
    arguments = [str(base), json.dumps(PAIRS), json.dumps(HP.__dict__), str(output), str(checkpoints), mode]
    return subprocess.run([sys.executable, "-c", TRAINING_PROCESS, *arguments], env=env, capture_output=True,
                          text=True, timeout=300)


def test_a_training_killed_after_its_first_epoch_resumes_to_the_uninterrupted_adapter(base, tmp_path, caplog):
    checkpoints = tmp_path / "checkpoints"
    killed = run_training_process(base, tmp_path / "killed", checkpoints, "kill")
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
    assert not (tmp_path / "killed" / "adapter_model.safetensors").exists()
    assert [p.name for p in checkpoints.iterdir()] == [CHECKPOINT_FILE], "one file, no staging debris"
    saved = torch.load(checkpoints / CHECKPOINT_FILE, weights_only=True)
    assert (saved["epochs_done"], saved["step"], len(saved["epoch_stats"])) == (1, 4, 1)
    # The dropout masks' generator has moved on from its seed: resuming must restore it, not reseed it.
    assert saved["dropout_rng"] != np.random.default_rng(HP.seed).bit_generator.state

    # A checkpoint of another run (another learning rate) is not resumed from: that run starts afresh.
    other = tmp_path / "other-checkpoints"
    shutil.copytree(checkpoints, other)
    with caplog.at_level(logging.WARNING, logger="ohlora_assets.core.lora.checkpoint"):
        fresh = train_lora_adapter(ModelSpec(str(base), device="cpu"), PAIRS, PAIRS[:2],
                                   LoraHyperParams(**{**HP.__dict__, "learning_rate": 1e-3}), tmp_path / "fresh",
                                   checkpoint_dir=other)
    assert fresh.resumed_epochs == 0 and len(fresh.epochs) == 3
    assert "belongs to another run" in caplog.text
    assert not other.exists(), "the checkpoint is deleted once the adapter is saved"

    resumed = run_training_process(base, tmp_path / "resumed", checkpoints, "resume")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    report = json.loads(resumed.stdout.strip().splitlines()[-1])
    assert report["resumed_epochs"] == 1 and report["first_step"] == 5
    assert not checkpoints.exists()

    uninterrupted = train_lora_adapter(ModelSpec(str(base), device="cpu"), PAIRS, PAIRS[:2], HP, tmp_path / "whole")
    assert report["data_version"] == uninterrupted.data_version, "the resumed run must end with the same weights"
    assert report["train_losses"] == [e.train_loss for e in uninterrupted.epochs]


def test_an_unreadable_checkpoint_is_ignored(tmp_path, caplog):
    (tmp_path / CHECKPOINT_FILE).write_bytes(b"not a checkpoint")
    with caplog.at_level(logging.WARNING, logger="ohlora_assets.core.lora.checkpoint"):
        assert load_state(tmp_path, "any") is None
    assert "unreadable" in caplog.text


def test_a_run_that_failed_after_its_last_checkpoint_only_saves_on_the_next_call(base, tmp_path):
    hp = LoraHyperParams(rank=4, epochs=2, batch_size=4)
    checkpoints = tmp_path / "checkpoints"

    def fail_at_the_end(event):
        if event.epoch_end and event.epoch == hp.epochs:
            raise RuntimeError("stopped before the adapter was saved")

    try:
        train_lora_adapter(ModelSpec(str(base), device="cpu"), PAIRS, [], hp, tmp_path / "failed", fail_at_the_end, checkpoints)
    except RuntimeError:
        pass
    steps: list = []
    resumed = train_lora_adapter(ModelSpec(str(base), device="cpu"), PAIRS, [], hp, tmp_path / "resumed", steps.append,
                                 checkpoint_dir=checkpoints)
    assert resumed.resumed_epochs == 2 and steps == [] and resumed.steps == 4
    whole = train_lora_adapter(ModelSpec(str(base), device="cpu"), PAIRS, [], hp, tmp_path / "whole")
    assert resumed.data_version == whole.data_version
    assert [e.train_loss for e in resumed.epochs] == [e.train_loss for e in whole.epochs]
