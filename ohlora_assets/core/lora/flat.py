"""The trainable LoRA tensors as one flat parameter, so clipping and AdamW are one kernel each."""

from __future__ import annotations

from collections.abc import Sequence

import torch


class FlatTrainables:
    """The trainable parameters as views into one flat tensor, and their gradients into another.

    A LoRA model has two small matrices per adapted layer (56 on the embedded model), so gradient
    clipping and AdamW otherwise loop over 56 tensors a step. Over one flat tensor they are one
    kernel each and compute the same thing (AdamW is elementwise; the norm is over all gradients).
    Autograd accumulates into an existing `.grad` in place, so the views keep receiving gradients:
    zero them with `zero_grad`, never by setting them to None.
    """

    def __init__(self, params: Sequence[torch.nn.Parameter]):
        self.params = list(params)
        flat = torch.cat([p.detach().reshape(-1) for p in self.params])
        self.param = torch.nn.Parameter(flat)
        self.param.grad = torch.zeros_like(flat)
        offset = 0
        for p in self.params:
            count = p.numel()
            p.data = flat[offset : offset + count].view_as(p)
            p.grad = self.param.grad[offset : offset + count].view_as(p)
            offset += count

    def zero_grad(self) -> None:
        self.param.grad.zero_()

    def release(self) -> None:
        """Give every parameter its own storage again (a saved state dict must not alias)."""
        for p in self.params:
            p.data = p.data.clone()
            p.grad = None
