"""Gradient accumulation and activation checkpointing in the LoRA trainer (core/lora/training.py)."""

import torch
from safetensors.torch import load_file

from ohlora_assets.core.base_models import ModelSpec
from ohlora_assets.core.lora import LoraHyperParams, train_lora_adapter
from ohlora_assets.core.progress import ProgressEvent

from .conftest import PAIRS


def adapter_weights(directory):
    return load_file(directory / "adapter_model.safetensors")


def assert_same_weights(first, second, atol):
    assert first.keys() == second.keys()
    for key in first:
        torch.testing.assert_close(first[key], second[key], rtol=1e-4, atol=atol, msg=key)


def train(base, pairs, hp, output, progress=None):
    return train_lora_adapter(ModelSpec(str(base), device="cpu"), pairs, [], hp, output, progress)


def test_two_accumulated_micro_batches_step_like_one_batch_of_both(base, tmp_path):
    # Four examples: one batch of 4, or micro-batches of 2 accumulated in pairs, hold them all each step.
    # Without dropout nothing random differs, so the weights agree up to rounding.
    common = dict(rank=8, learning_rate=5e-3, epochs=3, dropout=0.0)
    whole = train(base, PAIRS[:4], LoraHyperParams(batch_size=4, **common), tmp_path / "whole")
    accumulated = train(base, PAIRS[:4], LoraHyperParams(batch_size=2, grad_accumulation=2, **common), tmp_path / "acc")
    assert whole.steps == accumulated.steps == 3
    assert_same_weights(adapter_weights(tmp_path / "whole"), adapter_weights(tmp_path / "acc"), atol=1e-5)
    for mine, theirs in zip(accumulated.epochs, whole.epochs):  # token-weighted over the micro-batches
        assert abs(mine.train_loss - theirs.train_loss) < 1e-5
    # The weights moved: a broken step (no update, or one micro-batch's gradient only) would not agree above.
    single = train(base, PAIRS[:4], LoraHyperParams(batch_size=2, **common), tmp_path / "single")
    assert single.steps == 6
    key = "base_model.model.model.layers.0.self_attn.q_proj.lora_B.weight"
    assert not torch.allclose(adapter_weights(tmp_path / "single")[key], adapter_weights(tmp_path / "acc")[key])


def test_the_schedule_and_progress_count_optimizer_steps(base, tmp_path):
    # Eight examples in micro-batches of 2: four a epoch, stepped in groups of 3 and 1.
    events: list[ProgressEvent] = []
    result = train(base, PAIRS, LoraHyperParams(rank=4, epochs=2, batch_size=2, grad_accumulation=3), tmp_path / "a", events.append)
    assert result.steps == 4
    assert [(e.done, e.total, e.epoch) for e in events if not e.epoch_end] == [(1, 4, 1), (2, 4, 1), (3, 4, 2), (4, 4, 2)]


def test_activation_checkpointing_trains_the_weights_of_the_plain_run(base, tmp_path):
    # With checkpointing PEFT's own layers run (the fused ones draw dropout masks outside torch's
    # generator, which the recomputation rewinds); without dropout both compute the same step.
    common = dict(rank=8, learning_rate=5e-3, epochs=2, batch_size=2, dropout=0.0)
    plain = train(base, PAIRS, LoraHyperParams(**common), tmp_path / "plain")
    checkpointed = train(base, PAIRS, LoraHyperParams(gradient_checkpointing=True, **common), tmp_path / "gc")
    assert checkpointed.final_train_loss < checkpointed.first_train_loss
    assert_same_weights(adapter_weights(tmp_path / "plain"), adapter_weights(tmp_path / "gc"), atol=1e-5)
    assert plain.steps == checkpointed.steps == 8
