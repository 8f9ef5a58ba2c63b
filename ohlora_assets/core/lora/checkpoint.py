"""The state a LoRA training resumes from after a finished epoch, written as one file in one atomic step.

A checkpoint holds what the next epoch's arithmetic depends on: the flat trainable parameter
(flat.py), AdamW's moments, the scheduler's position, the random generators that training draws
from (torch's, CUDA's, and the NumPy generator of the fused dropout masks; batch orders are seeded
per epoch, so Python's `random` holds nothing) and the epoch statistics so far. It is tied to one
run by a fingerprint of the hyper-parameters, the base, the device and the tokenized data: a
checkpoint of any other run is never resumed from.

Saving only reads this state (no random number is drawn), so a run that writes checkpoints trains
the same weights as one that does not.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import logging
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from ohlora_assets.core.io import atomic_write_bytes
from ohlora_assets.core.lora.batching import Encoded

CHECKPOINT_FILE = "training_state.pt"

log = logging.getLogger(__name__)


def run_fingerprint(
    hyper_params: dict, base_model: str, revision: str | None, device: str, epochs: Sequence[Sequence[Encoded]],
    valid: Sequence[Encoded],
) -> str:
    """SHA-256 of everything that decides a run's weights: hyper-parameters, base, device and token ids."""
    digest = hashlib.sha256()
    header = {"hyper_params": hyper_params, "base_model": base_model, "revision": revision, "device": device}
    digest.update(json.dumps(header, sort_keys=True).encode())
    for part in (*epochs, valid):
        digest.update(json.dumps([[e.n_prompt, e.ids] for e in part]).encode())
    return digest.hexdigest()


@dataclass
class TrainingState:
    """One run's state after `epochs_done` epochs (epoch statistics as dicts, one per epoch)."""

    fingerprint: str
    epochs_done: int
    step: int
    epoch_stats: list[dict]
    trainables: torch.Tensor
    optimizer: dict
    scheduler: dict
    torch_rng: torch.Tensor
    cuda_rng: list[torch.Tensor]
    dropout_rng: dict | None  # the fused dropout masks' NumPy bit-generator state; None off the fused path


def capture_state(
    fingerprint: str, epochs_done: int, step: int, epoch_stats: list[dict], trainables: torch.Tensor,
    optimizer: torch.optim.Optimizer, scheduler, dropout_rng: np.random.Generator | None,
) -> TrainingState:
    """Copies of the live state (to the CPU), so later steps do not change what is saved."""
    return TrainingState(
        fingerprint=fingerprint,
        epochs_done=epochs_done,
        step=step,
        epoch_stats=epoch_stats,
        trainables=trainables.detach().cpu().clone(),
        optimizer=_to_cpu(optimizer.state_dict()),
        scheduler=scheduler.state_dict(),
        torch_rng=torch.get_rng_state(),
        cuda_rng=torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        dropout_rng=dropout_rng.bit_generator.state if dropout_rng is not None else None,
    )


def restore_state(
    state: TrainingState, trainables: torch.Tensor, optimizer: torch.optim.Optimizer, scheduler,
    dropout_rng: np.random.Generator | None,
) -> None:
    """Put `state` back into a freshly built run: in place, so the LoRA views of the flat parameter stay."""
    with torch.no_grad():
        trainables.copy_(state.trainables)
    optimizer.load_state_dict(state.optimizer)
    scheduler.load_state_dict(state.scheduler)
    torch.set_rng_state(state.torch_rng)
    if state.cuda_rng:
        torch.cuda.set_rng_state_all(state.cuda_rng)
    if dropout_rng is not None:
        dropout_rng.bit_generator.state = state.dropout_rng


def save_state(checkpoint_dir: Path, state: TrainingState) -> None:
    buffer = io.BytesIO()
    torch.save(asdict(state), buffer)
    atomic_write_bytes(Path(checkpoint_dir) / CHECKPOINT_FILE, buffer.getvalue())


def load_state(checkpoint_dir: Path, fingerprint: str) -> TrainingState | None:
    """The checkpoint in `checkpoint_dir` if there is one of this run; a checkpoint of another run (other
    hyper-parameters, base or data) or an unreadable one is ignored with a warning, and replaced by this
    run's first checkpoint."""
    path = Path(checkpoint_dir) / CHECKPOINT_FILE
    if not path.is_file():
        return None
    try:
        state = TrainingState(**torch.load(path, map_location="cpu", weights_only=True))
    except Exception as error:  # a file of an older layout, or not a checkpoint at all
        log.warning("ignoring the unreadable training checkpoint %s (%s); training from the start", path, error)
        return None
    if state.fingerprint != fingerprint:
        log.warning(
            "ignoring the training checkpoint %s: it belongs to another run (other hyper-parameters, base or "
            "data); training from the start",
            path,
        )
        return None
    return state


def remove_state(checkpoint_dir: Path) -> None:
    """Delete the checkpoint file, and `checkpoint_dir` itself if that leaves it empty."""
    (Path(checkpoint_dir) / CHECKPOINT_FILE).unlink(missing_ok=True)
    with contextlib.suppress(OSError):
        Path(checkpoint_dir).rmdir()


def _to_cpu(value):
    if isinstance(value, torch.Tensor):
        return value.detach().cpu().clone()
    if isinstance(value, dict):
        return {key: _to_cpu(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_to_cpu(item) for item in value]
    return value
