"""The lean LoRA trainer: tokenization, batching, the loss shortcut, and the saved PEFT adapter."""

import json
import random
from pathlib import Path

import pytest
import torch
from peft import PeftModel
from transformers import AutoModelForCausalLM, AutoTokenizer

from ohlora_assets.core.base_lm import PretrainingCorpus, PretrainSpec, build_embedded_lm
from ohlora_assets.core.lora import (
    TARGET_MODULES,
    Encoded,
    FlatTrainables,
    FusedLoraLinear,
    LoraHyperParams,
    collate,
    completion_loss,
    dropout_masks,
    encode_pairs,
    length_grouped_batches,
    load_adapter,
    read_training_log,
    train_lora_adapter,
    use_fused_lora_training,
)
from ohlora_assets.core.generation import SamplingSettings, generate_answers

# Tiny models: a second thread costs more in synchronization than it saves.
torch.set_num_threads(1)

THINGS = ["사과", "바다", "고양이", "커피", "노래", "여행", "강아지", "영화"]
END = "(답변 종료)"
PAIRS = [(f"{thing} 좋아해? (답변 시작) ### 답변:", f" 응, {thing} 정말 좋아! {END}") for thing in THINGS]
TINY = PretrainSpec(vocab_size=500, hidden_size=48, intermediate_size=96, num_layers=2, num_heads=2, batch_size=8, steps=60)


@pytest.fixture(scope="module")
def base(tmp_path_factory) -> Path:
    """A tiny Llama pretrained for a few seconds on the task's own texts."""
    directory = tmp_path_factory.mktemp("base") / "lm"
    texts = [prompt + completion for prompt, completion in PAIRS] * 4 + [f"오늘은 {t} 이야기를 했어" for t in THINGS]
    build_embedded_lm(PretrainingCorpus(documents=texts, fragments=[]), TINY, directory, device="cpu")
    return directory


@pytest.fixture(scope="module")
def tokenizer(base):
    return AutoTokenizer.from_pretrained(base)


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


def test_length_grouped_batches_cover_everything_once_and_pad_little():
    rng = random.Random(0)
    examples = [Encoded([1] * rng.randint(5, 120), 3) for _ in range(400)]
    batches = length_grouped_batches(examples, 4, random.Random(7))
    assert sorted(i for batch in batches for i in batch) == list(range(400))
    assert all(len(batch) == 4 for batch in batches)
    assert batches == length_grouped_batches(examples, 4, random.Random(7))

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


def test_adapter_is_plain_peft_deterministic_and_learns_the_end_mark(base, tokenizer, tmp_path):
    hp = LoraHyperParams(rank=8, learning_rate=5e-3, epochs=6, batch_size=2)
    seen_epochs = []

    def train(epoch):
        seen_epochs.append(epoch)
        return PAIRS

    events = []
    first = train_lora_adapter(base, train, PAIRS[:2], hp, tmp_path / "a", progress=events.append, device="cpu")
    second = train_lora_adapter(base, PAIRS, PAIRS[:2], hp, tmp_path / "b", device="cpu")

    assert seen_epochs == list(range(6))
    assert first.data_version == second.data_version, "same data and seed must give the same adapter"
    assert [e.train_loss for e in first.epochs] == [e.train_loss for e in second.epochs]
    assert first.final_train_loss < first.first_train_loss
    assert first.epochs[-1].valid_loss is not None and first.epochs[-1].valid_loss < first.epochs[0].valid_loss
    assert first.steps == 6 * 4 and sum(e["event"] == "step" for e in events) == 24
    assert [e["epoch"] for e in events if e["event"] == "epoch"] == [1, 2, 3, 4, 5, 6]

    directory = tmp_path / "a"
    assert {"adapter_config.json", "adapter_model.safetensors", "tokenizer.json"} <= {p.name for p in directory.iterdir()}
    config = json.loads((directory / "adapter_config.json").read_text())
    assert config["base_model_name_or_path"] == str(base)
    assert set(config["target_modules"]) == {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"}
    assert config["r"] == 8 and config["lora_alpha"] == 16
    assert read_training_log(directory).epochs == first.epochs
    assert not list(tmp_path.glob(".a.tmp-*")), "the staging directory must be gone"

    # Plain PEFT, no code of ours: the adapter changes the base model's predictions.
    plain_base = AutoModelForCausalLM.from_pretrained(base)
    ids = tokenizer(PAIRS[0][0], return_tensors="pt")["input_ids"]
    with torch.no_grad():
        before = plain_base(ids).logits
        adapted = PeftModel.from_pretrained(plain_base, directory)(ids).logits
    assert not torch.allclose(before, adapted)

    model, loaded_tokenizer = load_adapter(directory)
    run = generate_answers(model, loaded_tokenizer, [p for p, _ in PAIRS[:4]], "output_message", 1,
                           SamplingSettings(temperature=0.1, max_new_tokens=24, max_retries=0))
    assert all(END in a.raw and a.answer for a in run.answers), [a.raw for a in run.answers]


def test_no_training_examples_is_an_error(base, tmp_path):
    with pytest.raises(ValueError, match="no training examples"):
        train_lora_adapter(base, [], [], LoraHyperParams(rank=4), tmp_path / "x", device="cpu")
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
    result = train_lora_adapter(neox, PAIRS, [], LoraHyperParams(rank=4, epochs=2), tmp_path / "adapter", device="cpu")
    assert result.target_modules == ["query_key_value"]
    assert result.epochs[-1].valid_loss is None
    config = json.loads((tmp_path / "adapter" / "adapter_config.json").read_text())
    assert config["target_modules"] == ["query_key_value"]


def test_dropout_masks_keep_the_expectation_carry_the_scale_and_are_seeded():
    import numpy as np

    mask = dropout_masks(np.random.default_rng(1), 0.05, scale=2.0)((400, 500))
    assert mask.shape == (400, 500) and mask.dtype == torch.float32
    kept = (mask != 0).float().mean().item()
    assert 0.945 < kept < 0.955  # 200,000 draws: within ~7 standard deviations of 0.95
    assert mask.mean().item() == pytest.approx(2.0, abs=0.02)  # inverted dropout keeps E = scale
    again = dropout_masks(np.random.default_rng(1), 0.05, scale=2.0)
    assert torch.equal(again((400, 500)), mask)
    assert not torch.equal(again((400, 500)), mask)  # the next draw is a new mask
    assert torch.equal(dropout_masks(np.random.default_rng(1), 0.0, scale=0.5)((3, 7)), torch.full((3, 7), 0.5))


def _lora_model(base, dropout: float):
    from peft import LoraConfig, get_peft_model

    torch.manual_seed(0)
    model = get_peft_model(
        AutoModelForCausalLM.from_pretrained(str(base)),
        LoraConfig(r=4, lora_alpha=8, lora_dropout=dropout, init_lora_weights="gaussian",
                   target_modules=TARGET_MODULES["llama"], task_type="CAUSAL_LM"),
    )
    for name, param in model.named_parameters():  # B starts at zero; make the LoRA branch matter
        if "lora_B" in name:
            torch.nn.init.normal_(param, std=0.1)
    return model.train()


def _loss_and_grads(model, ids):
    loss = model(input_ids=ids, labels=ids).loss
    loss.backward()
    return loss.detach(), {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad}


def test_fused_lora_training_matches_peft_forward_and_backward(base, tokenizer):
    ids = torch.tensor([tokenizer(prompt + completion)["input_ids"] for prompt, completion in PAIRS[:2]])
    eager = _lora_model(base, dropout=0.0)
    fused = _lora_model(base, dropout=0.0)
    assert use_fused_lora_training(fused, seed=0) == 7 * fused.config.num_hidden_layers
    eager_loss, eager_grads = _loss_and_grads(eager, ids)
    fused_loss, fused_grads = _loss_and_grads(fused, ids)
    assert fused_loss.item() == pytest.approx(eager_loss.item(), rel=1e-5)
    assert fused_grads.keys() == eager_grads.keys() and len(fused_grads) == 2 * 7 * fused.config.num_hidden_layers
    for name, grad in eager_grads.items():
        torch.testing.assert_close(fused_grads[name], grad, rtol=1e-4, atol=1e-6, msg=name)
    fused.eval()  # eval and no-grad calls take PEFT's own path: no masks drawn
    with torch.no_grad():
        torch.testing.assert_close(fused(input_ids=ids).logits, eager.eval()(input_ids=ids).logits)


def test_fused_lora_dropout_is_the_masked_peft_branch(base):
    import numpy as np

    model = _lora_model(base, dropout=0.3)
    use_fused_lora_training(model, seed=7)
    layer = model.base_model.model.model.layers[0].mlp.down_proj
    x = torch.randn(2, 5, layer.in_features, requires_grad=True)
    out = layer(x)
    mask = dropout_masks(np.random.default_rng(7), 0.3, layer.scaling["default"])(x.shape)
    expected = layer.base_layer(x) + layer.lora_B["default"](layer.lora_A["default"](x * mask))
    torch.testing.assert_close(out, expected)
    assert (mask == 0).any() and not torch.equal(layer(x), out)  # a fresh mask each call
    out.sum().backward()
    grad_x = x.grad.clone()
    x.grad = None
    expected.sum().backward()
    torch.testing.assert_close(grad_x, x.grad)


def test_a_completion_can_be_encoded_without_eos(tokenizer):
    (with_eos,), _ = encode_pairs(tokenizer, [("", "오늘 날씨 정말 좋다")], 256)
    (without,), _ = encode_pairs(tokenizer, [("", "오늘 날씨 정말 좋다")], 256, end_with_eos=False)
    assert with_eos.ids[-1] == tokenizer.eos_token_id and without.ids == with_eos.ids[:-1]
    (cut,), _ = encode_pairs(tokenizer, [("", "오늘 날씨 정말 좋다 " * 40)], 8, end_with_eos=False)
    assert len(cut.ids) == 8 and tokenizer.eos_token_id not in cut.ids  # a long fragment keeps its own tokens


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


def test_flat_trainables_train_exactly_like_separate_parameters(base, tokenizer):
    ids = torch.tensor([tokenizer(prompt + completion)["input_ids"] for prompt, completion in PAIRS[:2]])
    initial, separate, flat = (_lora_model(base, dropout=0.0) for _ in range(3))
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
