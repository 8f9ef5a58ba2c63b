"""The lean LoRA trainer (core/lora/training.py): a plain, deterministic PEFT adapter that learns."""

import json

import numpy as np
import pytest
import torch
from peft import AutoPeftModelForCausalLM, PeftModel
from peft.tuners.lora.layer import Linear as PeftLoraLinear
from transformers import AutoModelForCausalLM, get_linear_schedule_with_warmup

from ohlora_assets.core.base_models import ModelSpec
from ohlora_assets.core.generation import SamplingSettings, generate_answers
from ohlora_assets.core.lora import LoraHyperParams, load_adapter, read_training_log, train_lora_adapter
from ohlora_assets.core.progress import ProgressEvent

from .conftest import END, PAIRS


def test_adapter_is_plain_peft_deterministic_and_learns_the_end_mark(base, tokenizer, tmp_path, monkeypatch):
    monkeypatch.delenv("OHLORA_TORCH_THREADS", raising=False)
    hp = LoraHyperParams(rank=8, learning_rate=5e-3, epochs=6, batch_size=2)
    seen_epochs = []

    def train(epoch):
        seen_epochs.append(epoch)
        return PAIRS

    events: list[ProgressEvent] = []
    threads_before, threads_in_training = torch.get_num_threads(), set()

    def record(event):
        threads_in_training.add(torch.get_num_threads())
        events.append(event)

    first = train_lora_adapter(ModelSpec(str(base), device="cpu"), train, PAIRS[:2], hp, tmp_path / "a", record)
    # The test base is narrow (core.device.NARROW_HIDDEN_SIZE): one thread while training, as before after.
    assert threads_in_training == {1} and torch.get_num_threads() == threads_before
    second = train_lora_adapter(ModelSpec(str(base), device="cpu"), PAIRS, PAIRS[:2], hp, tmp_path / "b")

    assert seen_epochs == list(range(6))
    assert first.data_version == second.data_version, "same data and seed must give the same adapter"
    assert [e.train_loss for e in first.epochs] == [e.train_loss for e in second.epochs]
    assert first.final_train_loss < first.first_train_loss
    assert first.epochs[-1].valid_loss is not None and first.epochs[-1].valid_loss < first.epochs[0].valid_loss
    assert first.steps == 6 * 4
    directory = tmp_path / "a"
    assert {"adapter_config.json", "adapter_model.safetensors", "tokenizer.json"} <= {p.name for p in directory.iterdir()}
    config = json.loads((directory / "adapter_config.json").read_text())
    assert config["base_model_name_or_path"] == str(base)
    assert set(config["target_modules"]) == {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"}
    assert config["r"] == 8 and config["lora_alpha"] == 16
    assert not any("custom" in key for key in config), "the fused layers' registration must not be saved"
    assert read_training_log(directory).epochs == first.epochs
    assert not list(tmp_path.glob(".a.tmp-*")), "the staging directory must be gone"

    # Progress: one event per step, then one per epoch end carrying that epoch's metrics.
    steps = [e for e in events if not e.epoch_end]
    assert [e.done for e in steps] == list(range(1, 25)) and {e.total for e in events} == {24}
    assert [e.epoch for e in steps] == [epoch for epoch in range(1, 7) for _ in range(4)]
    ends = [e for e in events if e.epoch_end]
    assert [(e.epoch, e.epochs, e.done) for e in ends] == [(epoch, 6, 4 * epoch) for epoch in range(1, 7)]
    assert [e.loss for e in ends] == [s.train_loss for s in first.epochs]
    assert [dict(e.metrics) for e in ends] == [
        {"token_accuracy": s.token_accuracy, "valid_loss": s.valid_loss} for s in first.epochs
    ]

    # Plain PEFT, no code of ours: the adapter changes the base model's predictions.
    plain_base = AutoModelForCausalLM.from_pretrained(base)
    ids = tokenizer(PAIRS[0][0], return_tensors="pt")["input_ids"]
    with torch.no_grad():
        before = plain_base(ids).logits
        adapted = PeftModel.from_pretrained(plain_base, directory)(ids).logits
        auto = AutoPeftModelForCausalLM.from_pretrained(directory)
        torch.testing.assert_close(auto(ids).logits, adapted)
    assert not torch.allclose(before, adapted)
    assert {type(m) for m in auto.modules() if isinstance(m, PeftLoraLinear)} == {PeftLoraLinear}

    model, loaded_tokenizer = load_adapter(directory)
    run = generate_answers(model, loaded_tokenizer, [p for p, _ in PAIRS[:4]], "output_message", 1,
                           SamplingSettings(temperature=0.1, max_new_tokens=24, max_retries=0))
    assert all(END in a.raw and a.answer for a in run.answers), [a.raw for a in run.answers]


def test_no_training_examples_is_an_error(base, tmp_path):
    with pytest.raises(ValueError, match="no training examples"):
        train_lora_adapter(ModelSpec(str(base), device="cpu"), [], [], LoraHyperParams(rank=4), tmp_path / "x")
    assert not (tmp_path / "x").exists()


def test_gpt_neox_bases_get_lora_on_the_fused_qkv_projection(base, tokenizer, tmp_path):
    """The `full` profile's Polyglot-Ko is GPT-NeoX: a tiny random one stands in for it here."""
    from transformers import GPTNeoXConfig, GPTNeoXForCausalLM

    config = GPTNeoXConfig(
        vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
        max_position_embeddings=128, bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
    )
    neox = tmp_path / "neox"
    torch.manual_seed(0)
    GPTNeoXForCausalLM(config).save_pretrained(neox)
    tokenizer.save_pretrained(neox)
    result = train_lora_adapter(ModelSpec(str(neox), device="cpu"), PAIRS, [], LoraHyperParams(rank=4, epochs=2), tmp_path / "adapter")
    assert result.target_modules == ["query_key_value"]
    assert result.epochs[-1].valid_loss is None
    config = json.loads((tmp_path / "adapter" / "adapter_config.json").read_text())
    assert config["target_modules"] == ["query_key_value"]


@pytest.mark.parametrize("learning_rate", [3e-4, 2e-3, 5e-3])
def test_the_learning_rate_decays_linearly_to_zero_in_the_optimizer_s_float32(learning_rate):
    """The trainer's schedule is transformers' linear one. Its factor (total - step) / total and our
    former 1 - step / total can differ in a double's last bit, never once rounded to float32, the
    precision fused AdamW steps float32 weights in: adapters trained before the switch are unchanged."""
    for total in (1, 3, 7, 24, 100, 337, 1000):
        optimizer = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(1))], lr=learning_rate)
        scheduler = get_linear_schedule_with_warmup(optimizer, 0, total)
        for step in range(total + 1):
            expected = learning_rate * max(0.0, 1 - step / total)
            assert np.float32(optimizer.param_groups[0]["lr"]) == np.float32(expected), (total, step)
            optimizer.step()
            scheduler.step()


def test_an_architecture_without_our_targets_gets_every_linear_layer(base, tmp_path):
    """PEFT has q/v-only defaults for some types (qwen3, gemma2) and none for many (phi3, exaone, granite): a
    user's base of such a type trains the same adapter shape as ours, and a PEFT adapter is no base."""
    from transformers import AutoTokenizer, Qwen3Config, Qwen3ForCausalLM

    from ohlora_assets.core.lora.loading import BaseModelError

    tokenizer = AutoTokenizer.from_pretrained(base)
    folder = tmp_path / "qwen3"
    Qwen3ForCausalLM(Qwen3Config(
        vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
        num_key_value_heads=1, head_dim=16, eos_token_id=tokenizer.eos_token_id,
    )).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    hp = LoraHyperParams(rank=2, epochs=1, batch_size=4)
    train_lora_adapter(ModelSpec(str(folder), device="cpu"), PAIRS, [], hp, tmp_path / "adapter")
    config = json.loads((tmp_path / "adapter" / "adapter_config.json").read_text())
    layers = {name.rsplit(".", 1)[-1] for name in config["target_modules"]}  # PEFT saves "all-linear" resolved
    assert layers == {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"}

    with pytest.raises(BaseModelError, match="is a PEFT adapter, not a base model"):
        train_lora_adapter(ModelSpec(str(tmp_path / "adapter"), device="cpu"), PAIRS, [], hp, tmp_path / "again")
    for name in ("tokenizer.json", "tokenizer_config.json"):
        (folder / name).unlink(missing_ok=True)
    with pytest.raises(BaseModelError, match="has no tokenizer"):
        train_lora_adapter(ModelSpec(str(folder), device="cpu"), PAIRS, [], hp, tmp_path / "again")
