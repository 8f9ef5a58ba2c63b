"""The CPU training path of a LoRA Linear as one autograd node, plugged in through PEFT's custom layers.

On a small model the per-op overhead, not the arithmetic, is what a CPU training step costs. Here
each adapted Linear is one autograd node (FusedLoraLinear) with its dropout mask drawn cheaply
(dropout_masks). It reaches PEFT through PEFT's own extension point: `LoraConfig` maps
`nn.Linear` to FusedLoraLinearLayer (`register_fused_layers`, PEFT's experimental custom-module
dispatch, see https://huggingface.co/docs/peft/developer_guides/custom_models), so PEFT builds our
subclass of its Linear with PEFT's parameters, state-dict keys, merge and save. The saved adapter is
plain PEFT: the mapping is not part of the saved adapter_config.json.

This module imports peft at its top: import it only where training happens.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import torch
from peft.tuners.lora.layer import Linear as PeftLoraLinear


def dropout_masks(rng: np.random.Generator, p: float, scale: float) -> Callable[[tuple[int, ...]], torch.Tensor]:
    """A function of a shape giving inverted-dropout masks with `scale` folded in, as float32 tensors.

    On CPU, torch's `bernoulli_` draws each element separately (it was 12% of a LoRA step on the
    embedded model); comparing 16 raw random bits with p is several times cheaper. Same distribution
    as `nn.Dropout(p)` up to p's rounding to 1/65536 (the keep scale uses the rounded p, so the
    expectation is exact). `scale` is the LoRA scaling, so the mask carries it for free.
    """
    threshold = round(p * 65536)
    kept = np.float32(scale * 65536 / (65536 - threshold))

    def draw(shape: tuple[int, ...]) -> torch.Tensor:
        if not threshold:  # no dropout: the mask is the scale alone, and no random bits are spent
            return torch.full(shape, float(kept))
        count = math.prod(shape)
        bits = rng.bit_generator.random_raw(-(-count // 4)).view(np.uint16)[:count]
        return torch.from_numpy(np.multiply(bits >= threshold, kept, dtype=np.float32)).view(shape)

    return draw


class FusedLoraLinear(torch.autograd.Function):
    """y = x W^T + b + ((x * mask) A^T) B^T as one autograd node, for a frozen base weight.

    `mask` is the dropout mask times the LoRA scaling (see dropout_masks), so no op of its own scales
    the LoRA branch. PEFT's eager path records ~8 nodes per layer (dropout, two linears, scaling,
    add, casts and views), and on a small model the per-op overhead, not the arithmetic, is what a
    step costs; the backward here is the five matmuls the chain rule needs and skips the base
    weight's input gradient when nothing upstream needs it (the first layer's projections).
    """

    @staticmethod
    def forward(ctx, x, weight, bias, lora_a, lora_b, mask):
        rows = x.reshape(-1, x.shape[-1])
        dropped = rows * mask
        low_rank = torch.mm(dropped, lora_a.t())
        out = torch.mm(rows, weight.t()) if bias is None else torch.addmm(bias, rows, weight.t())
        out.addmm_(low_rank, lora_b.t())
        ctx.save_for_backward(dropped, low_rank, weight, lora_a, lora_b, mask)
        return out.view(*x.shape[:-1], weight.shape[0])

    @staticmethod
    def backward(ctx, grad_out):
        dropped, low_rank, weight, lora_a, lora_b, mask = ctx.saved_tensors
        grad_rows = grad_out.reshape(-1, grad_out.shape[-1])
        grad_low_rank = torch.mm(grad_rows, lora_b)
        grad_a = torch.mm(grad_low_rank.t(), dropped)
        grad_b = torch.mm(grad_rows.t(), low_rank)
        grad_x = None
        if ctx.needs_input_grad[0]:
            grad_x = torch.mm(grad_rows, weight).addcmul_(torch.mm(grad_low_rank, lora_a), mask)
            grad_x = grad_x.view(*grad_out.shape[:-1], weight.shape[1])
        return grad_x, None, None, grad_a, grad_b, None


class FusedLoraLinearLayer(PeftLoraLinear):
    """PEFT's LoRA Linear whose training forward on CPU is one FusedLoraLinear node.

    It fuses once it has dropout masks (`use_dropout_masks`, which only plain layers accept) and only
    while training with grad enabled, on CPU, with its one adapter active, not merged or disabled,
    and no extra forward arguments. Every other call is PEFT's own forward, unchanged: evaluation,
    generation, merging and saving never see the difference.
    """

    fused_adapter: str | None = None
    draw_mask: Callable[[tuple[int, ...]], torch.Tensor] | None = None

    def use_dropout_masks(self, rng: np.random.Generator) -> bool:
        """Fuse from now on, drawing dropout masks from `rng`, if this layer is plain: one adapter,
        no LoRA variant (DoRA...) or LoRA bias, an fp32 `nn.Linear` base. Returns whether it fuses."""
        (adapter, *others) = self.lora_A.keys()
        base = self.base_layer
        plain = (
            not others
            and not self.lora_variant
            and not any(self.lora_bias.values())
            and type(base) is torch.nn.Linear
            and base.weight.dtype == torch.float32
        )
        if plain:
            dropout = self.lora_dropout[adapter]
            p = dropout.p if isinstance(dropout, torch.nn.Dropout) else 0.0
            self.fused_adapter = adapter
            self.draw_mask = dropout_masks(rng, p, self.scaling[adapter])
        return plain

    def forward(self, x: torch.Tensor, *args, **kwargs) -> torch.Tensor:
        fusable = (
            self.draw_mask is not None
            and not (args or kwargs)
            and self.training
            and torch.is_grad_enabled()
            and x.device.type == "cpu"
            and not (self.merged or self.disable_adapters)
            and self.active_adapters == [self.fused_adapter]
        )
        if not fusable:
            return super().forward(x, *args, **kwargs)
        base = self.base_layer
        return FusedLoraLinear.apply(
            x, base.weight, base.bias,
            self.lora_A[self.fused_adapter].weight, self.lora_B[self.fused_adapter].weight,
            self.draw_mask((x.numel() // x.shape[-1], x.shape[-1])),
        )


def register_fused_layers(config) -> None:
    """Have PEFT build FusedLoraLinearLayer for every `nn.Linear` that `config` (a LoraConfig) targets.

    Call before `get_peft_model`, and only for CPU training of float bases: the mapping wins over
    PEFT's other dispatchers (a quantized layer that subclasses nn.Linear would get ours too).
    """
    config._register_custom_module({torch.nn.Linear: FusedLoraLinearLayer})


def use_fused_dropout(model, rng: np.random.Generator) -> int:
    """Start fusing every plain FusedLoraLinearLayer of `model`, all drawing dropout masks from `rng` (in
    the order the layers run; a training checkpoint saves its state); returns how many fuse."""
    return sum(
        module.use_dropout_masks(rng) for module in model.modules() if isinstance(module, FusedLoraLinearLayer)
    )
