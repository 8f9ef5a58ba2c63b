"""One flat trainable parameter trains exactly like the separate LoRA tensors (core/lora/flat.py)."""

import torch

from ohlora_assets.core.lora import FlatTrainables

from .test_fused import _ids, _lora_model


def test_flat_trainables_train_exactly_like_separate_parameters(base, tokenizer):
    ids = _ids(tokenizer)
    initial, separate, flat = (_lora_model(base, dropout=0.0, fused=False) for _ in range(3))
    separate_params = [p for p in separate.parameters() if p.requires_grad]
    trainables = FlatTrainables([p for p in flat.parameters() if p.requires_grad])
    optimizers = [torch.optim.AdamW(separate_params, lr=1e-2), torch.optim.AdamW([trainables.param], lr=1e-2)]
    for _ in range(3):
        for model, optimizer, params in zip((separate, flat), optimizers, (separate_params, [trainables.param])):
            model(input_ids=ids, labels=ids).loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 0.1)
            optimizer.step()
        separate.zero_grad(set_to_none=True)
        trainables.zero_grad()
    assert trainables.param.grad.abs().sum() == 0
    trainables.release()
    for (name, start), expected, actual in zip(initial.named_parameters(), separate.parameters(), flat.parameters()):
        torch.testing.assert_close(actual, expected, rtol=1e-5, atol=1e-7, msg=name)
        if start.requires_grad:
            assert not torch.equal(actual, start), name  # it trained
            assert actual.untyped_storage().data_ptr() != trainables.param.untyped_storage().data_ptr()
