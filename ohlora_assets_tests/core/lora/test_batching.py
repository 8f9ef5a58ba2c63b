"""Tokenized examples, length-grouped batches and the completion-only loss (core/lora/batching.py)."""

import random

import pytest
import torch
from transformers import AutoModelForCausalLM

from ohlora_assets.core.lora import Encoded, collate, completion_loss, encode_pairs, evaluate_loss, length_grouped_batches

from .conftest import PAIRS


def test_prompt_ids_are_exactly_what_generation_sees_and_eos_ends_the_completion(tokenizer):
    (encoded,), truncated = encode_pairs(tokenizer, PAIRS[:1], 64)
    prompt, completion = PAIRS[0]
    assert truncated == 0
    assert encoded.ids[: encoded.n_prompt] == tokenizer(prompt)["input_ids"]
    assert encoded.ids[encoded.n_prompt :] == tokenizer(completion, add_special_tokens=False)["input_ids"] + [
        tokenizer.eos_token_id
    ]


def test_overlong_examples_lose_the_start_of_the_prompt_first(tokenizer):
    prompt, completion = PAIRS[0]
    (full,), _ = encode_pairs(tokenizer, [(prompt, completion)], 256)
    n_completion = len(full.ids) - full.n_prompt
    (cut,), truncated = encode_pairs(tokenizer, [(prompt, completion)], n_completion + 2)
    assert truncated == 1
    assert len(cut.ids) == n_completion + 2
    assert cut.ids == full.ids[-(n_completion + 2) :] and cut.n_prompt == 2


def test_a_completion_can_be_encoded_without_eos(tokenizer):
    (with_eos,), _ = encode_pairs(tokenizer, [("", "오늘 날씨 정말 좋다")], 256)
    (without,), _ = encode_pairs(tokenizer, [("", "오늘 날씨 정말 좋다")], 256, end_with_eos=False)
    assert with_eos.ids[-1] == tokenizer.eos_token_id and without.ids == with_eos.ids[:-1]
    (cut,), _ = encode_pairs(tokenizer, [("", "오늘 날씨 정말 좋다 " * 40)], 8, end_with_eos=False)
    assert len(cut.ids) == 8 and tokenizer.eos_token_id not in cut.ids  # a long fragment keeps its own tokens


def test_length_grouped_batches_cover_everything_once_and_pad_little():
    rng = random.Random(0)
    examples = [Encoded([1] * rng.randint(5, 120), 3) for _ in range(400)]
    lengths = [len(e.ids) for e in examples]
    batches = length_grouped_batches(lengths, 4, random.Random(7))
    assert sorted(i for batch in batches for i in batch) == list(range(400))
    assert all(len(batch) == 4 for batch in batches)
    assert batches == length_grouped_batches(lengths, 4, random.Random(7))

    def padding(batch_list):
        return sum(max(len(examples[i].ids) for i in b) * len(b) - sum(len(examples[i].ids) for i in b) for b in batch_list)

    order = list(range(400))
    random.Random(7).shuffle(order)
    shuffled = [order[i : i + 4] for i in range(0, 400, 4)]
    assert padding(batches) < padding(shuffled) / 5


def test_collate_marks_exactly_the_completion_tokens_as_targets(tokenizer):
    encoded, _ = encode_pairs(tokenizer, PAIRS[:3], 64)
    ids, mask, targets = collate(encoded, tokenizer.pad_token_id, "cpu")
    for row, example in enumerate(encoded):
        assert targets[row][mask[row]].tolist() == example.ids[example.n_prompt :]
        assert ids[row, : len(example.ids)].tolist() == example.ids


def test_completion_loss_equals_transformers_loss_with_masked_prompt(base, tokenizer):
    model = AutoModelForCausalLM.from_pretrained(base).eval()
    encoded, _ = encode_pairs(tokenizer, PAIRS[:3], 64)
    ids, mask, targets = collate(encoded, tokenizer.pad_token_id, "cpu")
    attention = torch.zeros_like(ids)
    labels = torch.full_like(ids, -100)
    for row, example in enumerate(encoded):
        attention[row, : len(example.ids)] = 1
        labels[row, example.n_prompt : len(example.ids)] = torch.tensor(example.ids[example.n_prompt :])
    with torch.no_grad():
        reference = model(input_ids=ids, attention_mask=attention, labels=labels).loss
        ours, count, _ = completion_loss(model, ids, mask, targets)
    assert count == int((labels != -100).sum())
    assert torch.allclose(ours, reference, atol=1e-5)


def test_evaluate_loss_is_token_weighted_restores_training_mode_and_is_none_without_examples(base, tokenizer):
    model = AutoModelForCausalLM.from_pretrained(base).train()
    encoded, _ = encode_pairs(tokenizer, PAIRS[:5], 64)
    losses = [completion_loss(model.eval(), *collate([e], tokenizer.pad_token_id, "cpu")) for e in encoded]
    model.train()
    expected = sum(loss.item() * n for loss, n, _ in losses) / sum(n for _, n, _ in losses)
    assert evaluate_loss(model, encoded, tokenizer.pad_token_id, "cpu", batch_size=2) == pytest.approx(expected, rel=1e-5)
    assert model.training
    assert evaluate_loss(model, [], tokenizer.pad_token_id, "cpu") is None



@pytest.mark.parametrize("architecture, own", [
    ("gemma2", {}),  # final_logit_softcapping 30 by default
    ("granite", {"logits_scaling": 4.0}),  # divides
    ("cohere", {"logit_scale": 0.5}),
    ("llama", {}),
])
def test_the_loss_is_on_the_logits_the_model_itself_returns(architecture, own):
    """Gemma-2 soft-caps its logits, Granite and Cohere scale them: the trainer must take the same logits, or
    the loss gate judges a function generation never samples from."""
    import torch.nn.functional as F
    from transformers import AutoConfig

    config = AutoConfig.for_model(
        architecture, vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=1,
        num_attention_heads=2, num_key_value_heads=1, head_dim=16, **own,
    )
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(config).eval()
    with torch.no_grad():
        model.get_output_embeddings().weight.mul_(50)  # logits large enough for a cap to bite
        ids = torch.randint(0, 64, (2, 6))
        mask = torch.zeros_like(ids, dtype=torch.bool)
        mask[:, 3:] = True
        targets = torch.roll(ids, -1, dims=1)
        loss, count, _ = completion_loss(model, ids, mask, targets)
        own_logits = model(input_ids=ids).logits[mask].float()
        assert count == 6
        torch.testing.assert_close(loss, F.cross_entropy(own_logits, targets[mask]))
