"""The batched generator on a tiny Llama trained here in seconds to answer in the task formats."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from ohlora_assets.core.formats import ANSWER_MARK, TASK_FORMATS
from ohlora_assets.core.generation import SamplingSettings, generate_answers, generate_one_by_one, sample
from ohlora_assets.core.recipes import REPETITION_PENALTIES
from ohlora_assets.core.tokenizer import build_bpe_tokenizer

# (prompt, answer) pairs the tiny model learns by heart: the output_message format, and one prompt
# trained to answer a broken memory so that retries and give-ups have something to count.
OUTPUT_PAIRS = [
    ("안녕 오로라!", "안녕! 반가워 😊"),
    ("오늘 뭐 했어?", "도서관에서 공부했어!"),
    ("좋아하는 음식은?", "떡볶이 제일 좋아해 👍"),
    ("과적합이 뭐야?", "학습 데이터에 너무 맞춘 거야!"),
]
MEMORY_PAIRS = [("내 이름은 혜나야", "[이름: 혜나]"), ("날씨 좋다", "이름 혜나")]
# An answer that repeats a word, for the repetition penalty.
REPEATING_PAIR = ("노래해 줘", "랄라 랄라 랄라 🎵")


def _texts(task: str, pairs: list[tuple[str, str]]) -> list[str]:
    fmt = TASK_FORMATS[task]
    return [fmt.prompt({"input_data": q}) + fmt.completion(a) for q, a in pairs]


def build_tiny_lm(texts: list[str], steps: int = 50, seed: int = 0):
    """A 2-layer Llama + LoRA that has memorized `texts` (each followed by EOS); no download."""
    import peft
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    tokenizer = build_bpe_tokenizer(texts * 4, vocab_size=400, special_tokens={"eos_token": "</s>", "pad_token": "<pad>"})
    config = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=4, max_position_embeddings=256,
        pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id, bos_token_id=tokenizer.eos_token_id,
    )
    model = LlamaForCausalLM(config)
    batch = tokenizer([t + tokenizer.eos_token for t in texts], return_tensors="pt", padding=True)
    labels = batch["input_ids"].masked_fill(batch["attention_mask"] == 0, -100)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    model.train()
    for _ in range(steps):
        loss = model(**batch, labels=labels).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    lora = peft.LoraConfig(r=4, lora_alpha=16, target_modules=["q_proj", "v_proj"], task_type="CAUSAL_LM")
    return peft.get_peft_model(model, lora).eval(), tokenizer


@pytest.fixture(scope="module")
def tiny_lm():
    torch.set_num_threads(2)
    return build_tiny_lm(_texts("output_message", OUTPUT_PAIRS + [REPEATING_PAIR]) + _texts("memory", MEMORY_PAIRS))


def _prompt(task: str, question: str) -> str:
    return TASK_FORMATS[task].prompt({"input_data": question})


SETTINGS = SamplingSettings(max_new_tokens=24, max_retries=2, prompt_batch_size=3)


def test_batched_answers_stop_at_the_end_mark_and_match_what_was_learned(tiny_lm):
    model, tokenizer = tiny_lm
    prompts = [_prompt("output_message", q) for q, _ in OUTPUT_PAIRS]
    assert all(p.endswith(ANSWER_MARK) for p in prompts)
    events = []
    run = generate_answers(model, tokenizer, prompts, "output_message", answers_per_prompt=2, settings=SETTINGS,
                           progress=events.append)
    frame = run.to_frame()
    assert len(frame) == 8 and list(frame["prompt_index"]) == [0, 0, 1, 1, 2, 2, 3, 3]
    assert [(e.done, e.total, e.unit) for e in events] == [(6, 8, "answer"), (8, 8, "answer")]
    # 4 prompts in batches of 3 -> 2 calls, and no retries were needed
    assert run.calls == 2 and frame["retries"].sum() == 0
    expected = [a for _, a in OUTPUT_PAIRS for _ in range(2)]
    assert frame["answer"].tolist() == expected
    assert frame["terminated"].all() and frame["valid"].all() and not frame["gave_up"].any()
    # the answer's tokens end at the end mark, far below max_new_tokens
    assert (frame["output_tokens"] < SETTINGS.max_new_tokens).all()
    assert (frame["latency_s"] > 0).all() and run.tokens_per_s > 0


def test_repetition_penalty_breaks_repeats_in_the_answer_but_spares_the_prompts_words(tiny_lm):
    """The end mark `(답변 종료)` shares its tokens `(` and `답변` with the prompt's `(답변 시작)`: a penalty
    that counted prompt tokens would, this high, keep every answer from ending."""
    model, tokenizer = tiny_lm
    pairs = OUTPUT_PAIRS + [REPEATING_PAIR]
    prompts = [_prompt("output_message", q) for q, _ in pairs]
    near_greedy = dataclasses.replace(SETTINGS, temperature=0.1, max_retries=0)
    off = generate_answers(model, tokenizer, prompts, "output_message", 1, dataclasses.replace(near_greedy, repetition_penalty=1.0))
    assert [a.answer for a in off.answers] == [a for _, a in pairs]
    harsh = generate_answers(model, tokenizer, prompts, "output_message", 1, dataclasses.replace(near_greedy, repetition_penalty=100.0))
    assert [a.answer for a in harsh.answers[:-1]] == [a for _, a in OUTPUT_PAIRS]
    assert all(a.terminated for a in harsh.answers)
    assert harsh.answers[-1].answer.count("랄라") == 1
    # unset, the task's own: output_message's, and none for the structured memory task
    assert generate_answers(model, tokenizer, prompts[:1], "output_message", 1, near_greedy).settings.repetition_penalty \
        == REPETITION_PENALTIES["output_message"] > 1.0
    memory = generate_answers(model, tokenizer, [_prompt("memory", "내 이름은 혜나야")], "memory", 1, near_greedy)
    assert memory.settings.repetition_penalty == 1.0


def test_rows_of_one_batch_stop_independently(tiny_lm):
    """A short answer beside a long one keeps its own length (no text after its end mark)."""
    model, tokenizer = tiny_lm
    prompts = [_prompt("output_message", "안녕 오로라!"), _prompt("output_message", "과적합이 뭐야?")]
    attempts = sample(model, tokenizer, prompts, 1, "(답변 종료)", SETTINGS)
    assert [a.answer for a in attempts] == ["안녕! 반가워 😊", "학습 데이터에 너무 맞춘 거야!"]
    assert all(a.raw.rstrip().endswith("(답변 종료)") for a in attempts)
    assert attempts[0].output_tokens < attempts[1].output_tokens


def test_malformed_answers_are_retried_counted_and_given_up(tiny_lm):
    model, tokenizer = tiny_lm
    prompts = [_prompt("memory", "내 이름은 혜나야"), _prompt("memory", "날씨 좋다")]
    run = generate_answers(model, tokenizer, prompts, "memory", answers_per_prompt=2, settings=SETTINGS)
    frame = run.to_frame()
    good, bad = frame[frame["prompt_index"] == 0], frame[frame["prompt_index"] == 1]
    assert good["answer"].tolist() == ["[이름: 혜나]"] * 2 and (good["retries"] == 0).all()
    # "이름 혜나" is not `[key: value]`: retried max_retries times, then given up
    assert bad["answer"].tolist() == ["이름 혜나"] * 2
    assert (bad["retries"] == 2).all() and bad["gave_up"].all()
    # the retries' time is part of the bad answers' latency
    assert (bad["latency_s"] > good["latency_s"].max()).all()
    assert run.calls == 3


def test_unterminated_answer_counts_as_malformed(tiny_lm):
    model, tokenizer = tiny_lm
    short = dataclasses.replace(SETTINGS, max_new_tokens=2, max_retries=1)
    run = generate_answers(model, tokenizer, [_prompt("output_message", "오늘 뭐 했어?")], "output_message", 1, short)
    (answer,) = run.answers
    assert not answer.terminated and answer.gave_up and answer.retries == 1 and answer.output_tokens == 2


def test_sampling_is_seeded_and_matches_the_one_by_one_baseline_in_shape(tiny_lm):
    model, tokenizer = tiny_lm
    prompts = [_prompt("output_message", q) for q, _ in OUTPUT_PAIRS[:2]]
    hot = dataclasses.replace(SETTINGS, temperature=5.0, max_retries=0)  # hot enough to vary
    first = generate_answers(model, tokenizer, prompts, "output_message", 3, hot).to_frame()
    again = generate_answers(model, tokenizer, prompts, "output_message", 3, hot).to_frame()
    assert first["raw"].tolist() == again["raw"].tolist()
    assert first["raw"].nunique() > 1
    loop = generate_one_by_one(model, tokenizer, prompts, "output_message", 3, hot)
    assert loop.calls == 6 and [(a.prompt_index, a.answer_index) for a in loop.answers] == list(
        zip(first["prompt_index"], first["answer_index"])
    )


def test_shared_prompt_cache_gives_what_plain_generate_gives(tiny_lm):
    """Near-greedy sampling on unseen prompts of different lengths (left padding): the prompt's cache
    computed once and repeated must continue exactly like generate's own prefill of every copy."""
    model, tokenizer = tiny_lm
    prompts = [_prompt("output_message", q) for q in ("떡볶이 좋아해?", "오늘 도서관에서 하루 종일 공부했어 너는?", "안녕")]
    cold = dataclasses.replace(SETTINGS, temperature=1e-4, max_new_tokens=10)
    shared = sample(model, tokenizer, prompts, 3, "(답변 종료)", cold, share_prompt=True)
    plain = sample(model, tokenizer, prompts, 3, "(답변 종료)", cold, share_prompt=False)
    assert [a.raw for a in shared] == [a.raw for a in plain]
    assert len({a.raw for a in shared}) > 1
