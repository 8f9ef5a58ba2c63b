"""The fused CPU LoRA layer (core/lora/fused.py): its math, its dropout, and what it assumes of PEFT.

PEFT's custom-module dispatch (`LoraConfig._register_custom_module`) is marked experimental, so every
PEFT behaviour the layer relies on is asserted here against the installed peft.
"""

import numpy as np
import pytest
import torch
from peft import LoraConfig, get_peft_model
from peft.tuners.lora.layer import Linear as PeftLoraLinear
from transformers import AutoModelForCausalLM

from ohlora_assets.core.lora import TARGET_MODULES
from ohlora_assets.core.lora.fused import (
    FusedLoraLinear,
    FusedLoraLinearLayer,
    dropout_masks,
    register_fused_layers,
    use_fused_dropout,
)

from .conftest import PAIRS


def _lora_model(base, dropout: float, fused: bool, **config):
    """A LoRA model with random B (zero B would hide the LoRA branch), PEFT's layers or ours."""
    torch.manual_seed(0)
    lora = LoraConfig(r=4, lora_alpha=8, lora_dropout=dropout, init_lora_weights="gaussian",
                      target_modules=TARGET_MODULES["llama"], task_type="CAUSAL_LM", **config)
    if fused:
        register_fused_layers(lora)
    model = get_peft_model(AutoModelForCausalLM.from_pretrained(str(base)), lora)
    for name, param in model.named_parameters():
        if "lora_B" in name:
            torch.nn.init.normal_(param, std=0.1)
    return model.train()


def _loss_and_grads(model, ids):
    loss = model(input_ids=ids, labels=ids).loss
    loss.backward()
    return loss.detach(), {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad}


def _ids(tokenizer):
    return torch.tensor([tokenizer(prompt + completion)["input_ids"] for prompt, completion in PAIRS[:2]])


def test_peft_builds_the_fused_layer_for_every_target_with_peft_s_own_parameters(base):
    plain = _lora_model(base, dropout=0.05, fused=False)
    fused = _lora_model(base, dropout=0.05, fused=True)
    layers = [m for m in fused.modules() if isinstance(m, PeftLoraLinear)]
    assert len(layers) == 7 * fused.config.num_hidden_layers
    assert all(type(m) is FusedLoraLinearLayer for m in layers)
    assert not any(isinstance(m, FusedLoraLinearLayer) for m in plain.modules())
    # Same names, shapes and (seeded) initial values: PEFT's init and state dict, untouched.
    plain_state, fused_state = plain.state_dict(), fused.state_dict()
    assert plain_state.keys() == fused_state.keys()
    for name, tensor in plain_state.items():
        if "lora_B" not in name:  # B was re-drawn in _lora_model, in the same order for both
            assert torch.equal(fused_state[name], tensor), name


def test_fused_training_matches_peft_forward_and_backward(base, tokenizer):
    ids = _ids(tokenizer)
    eager = _lora_model(base, dropout=0.0, fused=False)
    fused = _lora_model(base, dropout=0.0, fused=True)
    assert use_fused_dropout(fused, np.random.default_rng(0)) == 7 * fused.config.num_hidden_layers
    eager_loss, eager_grads = _loss_and_grads(eager, ids)
    fused_loss, fused_grads = _loss_and_grads(fused, ids)
    assert fused_loss.item() == pytest.approx(eager_loss.item(), rel=1e-5)
    assert fused_grads.keys() == eager_grads.keys() and len(fused_grads) == 2 * 7 * fused.config.num_hidden_layers
    for name, grad in eager_grads.items():
        torch.testing.assert_close(fused_grads[name], grad, rtol=1e-4, atol=1e-6, msg=name)


def test_fused_dropout_is_the_masked_peft_branch_with_a_fresh_mask_per_call(base):
    model = _lora_model(base, dropout=0.3, fused=True)
    use_fused_dropout(model, np.random.default_rng(7))
    layer = model.base_model.model.model.layers[0].mlp.down_proj
    x = torch.randn(2, 5, layer.in_features, requires_grad=True)
    out = layer(x)
    mask = dropout_masks(np.random.default_rng(7), 0.3, layer.scaling["default"])(x.shape)
    expected = layer.base_layer(x) + layer.lora_B["default"](layer.lora_A["default"](x * mask))
    torch.testing.assert_close(out, expected)
    assert (mask == 0).any() and not torch.equal(layer(x), out)
    out.sum().backward()
    grad_x = x.grad.clone()
    x.grad = None
    expected.sum().backward()
    torch.testing.assert_close(grad_x, x.grad)


def test_every_other_call_takes_peft_s_own_forward(base, tokenizer):
    """No grad, eval, a disabled adapter, a merged one: no mask is drawn and the results are PEFT's."""
    ids = _ids(tokenizer)
    eager = _lora_model(base, dropout=0.3, fused=False)
    fused = _lora_model(base, dropout=0.3, fused=True)
    use_fused_dropout(fused, np.random.default_rng(0))
    layer = fused.base_model.model.model.layers[0].self_attn.q_proj
    shapes = []
    layer.draw_mask = lambda shape, draw=layer.draw_mask: shapes.append(shape) or draw(shape)

    with torch.no_grad():  # training mode without grad: PEFT's nn.Dropout, from torch's generator
        torch.manual_seed(1)
        expected = eager(input_ids=ids).logits
        torch.manual_seed(1)
        torch.testing.assert_close(fused(input_ids=ids).logits, expected)
        torch.testing.assert_close(fused.eval()(input_ids=ids).logits, eager.eval()(input_ids=ids).logits)
        base_logits = AutoModelForCausalLM.from_pretrained(str(base))(input_ids=ids).logits
    fused.train()
    with fused.disable_adapter():
        torch.testing.assert_close(fused(input_ids=ids).logits, base_logits)
    x = torch.randn(3, layer.in_features)
    layer.merge()
    merged = layer(x)
    layer.unmerge()
    eager_layer = eager.base_model.model.model.layers[0].self_attn.q_proj
    torch.testing.assert_close(merged, eager_layer(x), rtol=1e-5, atol=1e-6)
    assert shapes == []
    layer(x)  # and the plain training call does draw one
    assert shapes == [(3, layer.in_features)]


def test_only_plain_layers_fuse(base, tokenizer):
    """DoRA is a LoRA variant: its layers keep PEFT's forward, so training is PEFT's own."""
    ids = _ids(tokenizer)
    dora = _lora_model(base, dropout=0.0, fused=True, use_dora=True)
    assert use_fused_dropout(dora, np.random.default_rng(0)) == 0
    eager_loss, _ = _loss_and_grads(_lora_model(base, dropout=0.0, fused=False, use_dora=True), ids)
    assert _loss_and_grads(dora, ids)[0].item() == eager_loss.item()


def test_dropout_masks_keep_the_expectation_carry_the_scale_and_are_seeded():
    mask = dropout_masks(np.random.default_rng(1), 0.05, scale=2.0)((400, 500))
    assert mask.shape == (400, 500) and mask.dtype == torch.float32
    kept = (mask != 0).float().mean().item()
    assert 0.945 < kept < 0.955  # 200,000 draws: within ~7 standard deviations of 0.95
    assert mask.mean().item() == pytest.approx(2.0, abs=0.02)  # inverted dropout keeps E = scale
    again = dropout_masks(np.random.default_rng(1), 0.05, scale=2.0)
    assert torch.equal(again((400, 500)), mask)
    assert not torch.equal(again((400, 500)), mask)  # the next draw is a new mask
    assert torch.equal(dropout_masks(np.random.default_rng(1), 0.0, scale=0.5)((3, 7)), torch.full((3, 7), 0.5))


@pytest.mark.parametrize("with_bias", [False, True])
def test_fused_lora_linear_gradients_are_the_chain_rule(with_bias):
    """Numerical gradients (float64) of x, A and B; W and b are frozen, as in LoRA training."""
    generator = torch.Generator().manual_seed(0)

    def tensor(*shape, grad=False):
        return torch.randn(*shape, generator=generator, dtype=torch.float64).requires_grad_(grad)

    x, lora_a, lora_b = tensor(2, 3, 6, grad=True), tensor(4, 6, grad=True), tensor(5, 4, grad=True)
    weight, bias = tensor(5, 6), tensor(5) if with_bias else None
    mask = (torch.rand(6, 6, generator=generator, dtype=torch.float64) > 0.3) * 1.7
    assert torch.autograd.gradcheck(FusedLoraLinear.apply, (x, weight, bias, lora_a, lora_b, mask))
    expected = torch.nn.functional.linear(x, weight, bias) + (x * mask.view(2, 3, 6)) @ lora_a.T @ lora_b.T
    torch.testing.assert_close(FusedLoraLinear.apply(x, weight, bias, lora_a, lora_b, mask), expected)
