"""Tokenized (prompt, completion) examples, length-grouped batches and the completion-only loss.

Shared by the LoRA trainer (core/lora/training.py) and the base-model pretraining (core/base_lm.py).
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F

Pairs = list[tuple[str, str]]


@dataclass(frozen=True)
class Encoded:
    """One example's token ids; the loss counts ids[n_prompt:] (the completion and its EOS)."""

    ids: list[int]
    n_prompt: int


def encode_pairs(
    tokenizer, pairs: Sequence[tuple[str, str]], max_length: int, end_with_eos: bool = True
) -> tuple[list[Encoded], int]:
    """Token ids of each pair (the completion followed by EOS unless `end_with_eos` is False), and
    how many were cut to max_length (the prompt's start goes first)."""
    if not pairs:
        return [], 0
    prompts = tokenizer([p for p, _ in pairs])["input_ids"]
    completions = tokenizer([c for _, c in pairs], add_special_tokens=False)["input_ids"]
    ending = [tokenizer.eos_token_id] if end_with_eos else []
    encoded, truncated = [], 0
    for prompt, completion in zip(prompts, completions):
        completion = (completion + ending)[:max_length]
        room = max_length - len(completion)
        if len(prompt) > room:
            truncated += 1
            prompt = prompt[len(prompt) - room :] if room > 0 else []
        encoded.append(Encoded(prompt + completion, len(prompt)))
    return encoded, truncated


def length_grouped_batches(lengths: Sequence[int], batch_size: int, rng: random.Random) -> list[list[int]]:
    """Shuffled batches of indices of similar `lengths`, so padding to the batch's longest costs little.

    Indices are shuffled, cut into windows of 64 batches, sorted by length inside each window,
    batched, and the batches shuffled again: the order is random, the padding small.
    """
    order = list(range(len(lengths)))
    rng.shuffle(order)
    window = batch_size * 64
    batches = []
    for start in range(0, len(order), window):
        chunk = sorted(order[start : start + window], key=lengths.__getitem__)
        batches += [chunk[i : i + batch_size] for i in range(0, len(chunk), batch_size)]
    rng.shuffle(batches)
    return batches


def collate(examples: Sequence[Encoded], pad_id: int, device: str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(input_ids, predict_mask, targets): right-padded ids, where a position's next token is a label.

    Right padding needs no attention mask in a causal model: pads come after every real token, so
    no real token attends to one (and SDPA keeps its fast causal path).
    """
    longest = max(len(e.ids) for e in examples)
    ids = torch.full((len(examples), longest), pad_id, dtype=torch.long)
    mask = torch.zeros((len(examples), longest), dtype=torch.bool)
    for row, example in enumerate(examples):
        ids[row, : len(example.ids)] = torch.tensor(example.ids)
        # Position t predicts token t+1; the completion starts at n_prompt.
        mask[row, max(example.n_prompt - 1, 0) : len(example.ids) - 1] = True
    targets = torch.roll(ids, -1, dims=1)
    return ids.to(device), mask.to(device), targets.to(device)


def causal_lm_of(model):
    """The transformers model under a PeftModel (or the model itself)."""
    return model.get_base_model() if hasattr(model, "get_base_model") else model


# Architectures whose logits are the output head applied to the last hidden state (Gemma's final soft-cap aside):
# for these the loss projects only the answer positions. Any other computes its logits its own way (Granite
# divides them, HyperCLOVA X multiplies, Cohere scales), so the loss takes them from the model's own forward.
HEAD_ON_HIDDEN = frozenset({"llama", "mistral", "qwen2", "qwen3", "gemma", "gemma2", "gemma3_text", "gpt_neox", "gpt2"})


def _softcapped(config, logits: torch.Tensor) -> torch.Tensor:
    if cap := getattr(config, "final_logit_softcapping", None):
        logits = torch.tanh(logits / cap) * cap
    return logits


def completion_loss(model, ids: torch.Tensor, mask: torch.Tensor, targets: torch.Tensor):
    """(mean loss, label count, correct count) over the masked positions only.

    For the architectures of HEAD_ON_HIDDEN it computes logits = lm_head(last hidden state) on those
    positions alone, which is how they compute them, and skips the vocabulary projection of every prompt
    and pad position; any other architecture's logits come from its own forward. Either way the loss is
    on the logits `generate` samples from.
    """
    lm = causal_lm_of(model)
    if lm.config.model_type in HEAD_ON_HIDDEN:
        hidden = lm.base_model(input_ids=ids, use_cache=False).last_hidden_state[mask]
        logits = _softcapped(lm.config, lm.get_output_embeddings()(hidden).float())
    else:
        logits = lm(input_ids=ids, use_cache=False).logits[mask].float()
    wanted = targets[mask]
    loss = F.cross_entropy(logits, wanted)
    correct = (logits.argmax(-1) == wanted).sum()
    return loss, wanted.numel(), correct


@torch.no_grad()
def evaluate_loss(model, examples: Sequence[Encoded], pad_id: int, device: str, batch_size: int = 16) -> float | None:
    """Token-weighted mean completion loss, without dropout; None when there are no examples."""
    if not examples:
        return None
    was_training = model.training
    model.eval()
    order = sorted(range(len(examples)), key=lambda i: len(examples[i].ids))
    total, count = 0.0, 0
    for start in range(0, len(order), batch_size):
        batch = [examples[i] for i in order[start : start + batch_size]]
        loss, n, _ = completion_loss(model, *collate(batch, pad_id, device))
        total += loss.item() * n
        count += n
    model.train(was_training)
    return total / count
