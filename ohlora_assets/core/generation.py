"""Answer generation for every report: batched sampling, stop at the task's end mark, retries.

The prompt is the training text up to and including `### 답변:` (formats.py), so the model sees at
inference exactly what it was trained on. One `generate` call serves many prompts and several answers
per prompt (`num_return_sequences`, left padding, KV cache); each row stops on its own when its text
contains the end mark or the EOS token. Answers that come out empty or malformed are generated again,
up to `max_retries` times, and every retry is counted: retries are a quality signal, not noise.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import pandas as pd

from ohlora_assets.core.formats import ANSWER_VALIDATORS, TASK_FORMATS
from ohlora_assets.core.progress import Progress, ProgressEvent
from ohlora_assets.core.recipes import REPETITION_PENALTIES


@dataclass(frozen=True)
class SamplingSettings:
    temperature: float = 0.6
    max_new_tokens: int = 80
    # Logits of tokens the answer already holds are divided by this (CTRL's penalty, prompt tokens exempt,
    # so an answer may still use the prompt's words; 1.0 is off). None: the task's (REPETITION_PENALTIES).
    repetition_penalty: float | None = None
    max_retries: int = 2
    # Prompts per `generate` call; each brings its answers_per_prompt rows. A call runs until its longest answer
    # ends, so fewer, larger calls pay that tail less often: 40 prompts x 4 answers on the embedded model took
    # 2.0 s in three calls of 16 prompts, 1.5 s in one. By our estimate 64 x 4 rows of a 2B base fit a 24 GB GPU.
    prompt_batch_size: int = 64
    seed: int = 0

    def __post_init__(self) -> None:
        """Values that would fail inside transformers' generate (or loop on nothing), named with what is allowed;
        greedy decoding is not offered: the reports measure what sampling at a temperature produces."""
        problems = [f"{name} must be at least {low}, got {getattr(self, name)}"
                    for name, low in (("max_new_tokens", 1), ("max_retries", 0), ("prompt_batch_size", 1), ("seed", 0))
                    if getattr(self, name) < low]
        for name in ("temperature", "repetition_penalty"):
            value = getattr(self, name)
            if value is not None and not (math.isfinite(value) and value > 0):
                problems.append(f"{name} must be a positive number, got {value}")
        if problems:
            raise ValueError("sampling settings: " + "; ".join(problems))

    def for_task(self, task: str) -> "SamplingSettings":
        """These settings with the task's repetition penalty where none is set."""
        if self.repetition_penalty is not None:
            return self
        return replace(self, repetition_penalty=REPETITION_PENALTIES.get(task, 1.0))


@dataclass
class Attempt:
    """One sampled continuation: the answer before the end mark, and how it ended."""

    answer: str
    raw: str
    terminated: bool  # reached the end mark or EOS within max_new_tokens
    output_tokens: int


@dataclass
class GeneratedAnswer:
    prompt_index: int
    answer_index: int
    answer: str
    raw: str
    terminated: bool
    valid: bool
    retries: int
    output_tokens: int
    # Wall time of every generate call that produced this answer (first try and retries): the wait a
    # user would see. Rows of one batch share it.
    latency_s: float

    @property
    def gave_up(self) -> bool:
        return not self.valid


@dataclass
class GenerationRun:
    answers: list[GeneratedAnswer]
    wall_s: float
    generated_tokens: int  # all attempts, retries included
    calls: int
    settings: SamplingSettings = field(default_factory=SamplingSettings)

    @property
    def tokens_per_s(self) -> float:
        return self.generated_tokens / self.wall_s if self.wall_s > 0 else 0.0

    @property
    def answers_per_s(self) -> float:
        return len(self.answers) / self.wall_s if self.wall_s > 0 else 0.0

    def to_frame(self) -> pd.DataFrame:
        frame = pd.DataFrame([asdict(a) for a in self.answers], columns=list(GeneratedAnswer.__dataclass_fields__))
        frame["gave_up"] = ~frame["valid"].astype(bool)
        return frame

    def summary(self) -> dict[str, Any]:
        return {
            "wall_s": self.wall_s,
            "generated_tokens": self.generated_tokens,
            "calls": self.calls,
            "tokens_per_s": self.tokens_per_s,
            "answers_per_s": self.answers_per_s,
            **asdict(self.settings),
        }


def merged_for_inference(model):
    """The LoRA folded into the base weights: the same outputs without the adapters' extra matmuls
    in every layer at every step. (The adapter on disk is untouched.)"""
    return model.merge_and_unload() if hasattr(model, "merge_and_unload") else model


def _end_mark_stop(tokenizer, end_mark: str, prompt_length: int):
    """A stopping criterion that ends each row once its new text contains `end_mark` (or EOS).

    It records the generated length at which each row ended, which is that answer's token count.
    Only the last few tokens are decoded per step: enough to hold the mark, since every token
    decodes to at least one byte.
    """
    import torch
    from transformers import StoppingCriteria

    window = len(end_mark.encode("utf-8")) + 1
    eos_id = tokenizer.eos_token_id

    class EndMarkStop(StoppingCriteria):
        def __init__(self) -> None:
            self.ended_at: torch.Tensor | None = None
            self.hit_mark: torch.Tensor | None = None

        def __call__(self, input_ids, scores, **kwargs):
            rows = input_ids.shape[0]
            if self.ended_at is None:
                self.ended_at = torch.zeros(rows, dtype=torch.long)
                self.hit_mark = torch.zeros(rows, dtype=torch.bool)
            new = input_ids[:, prompt_length:].cpu()
            step = new.shape[1]
            open_rows = (self.ended_at == 0).nonzero().flatten().tolist()
            tails = tokenizer.batch_decode(new[open_rows, -window:], skip_special_tokens=True)
            for row, tail in zip(open_rows, tails):
                if end_mark in tail:
                    self.ended_at[row] = step
                    self.hit_mark[row] = True
                elif eos_id is not None and int(new[row, -1]) == eos_id:
                    self.ended_at[row] = step
            return (self.ended_at > 0).to(input_ids.device)

    return EndMarkStop()


def _answer_repetition_penalty(penalty: float | None, prompt_length: int):
    """`generate`'s own `repetition_penalty` would also penalize the prompt's tokens: with a retrieved
    concept in the prompt, the very words an answer should use."""
    from transformers import LogitsProcessorList, RepetitionPenaltyLogitsProcessor

    if penalty is None or penalty == 1.0:
        return LogitsProcessorList()
    return LogitsProcessorList([RepetitionPenaltyLogitsProcessor(penalty, prompt_ignore_length=prompt_length)])


def _shared_prompt_cache(model, input_ids, attention_mask, n: int):
    """The KV cache of every prompt but its last token, computed once and repeated for its n answers.

    `generate` with num_return_sequences=n would run the prompt n times; here each prompt runs once.
    Position ids follow the attention mask, as generate's own are, so left padding changes nothing.
    """
    from transformers import DynamicCache

    from ohlora_assets.core.lora.batching import causal_lm_of

    cache = DynamicCache(config=causal_lm_of(model).config)
    positions = (attention_mask.cumsum(-1) - 1).clamp(min=0)
    model(
        input_ids=input_ids[:, :-1],
        attention_mask=attention_mask[:, :-1],
        position_ids=positions[:, :-1],
        past_key_values=cache,
        use_cache=True,
        logits_to_keep=1,
    )
    cache.batch_repeat_interleave(n)
    return cache


def sample(
    model, tokenizer, prompts: list[str], n: int, end_mark: str, settings: SamplingSettings, share_prompt: bool = True
) -> list[Attempt]:
    """One `generate` call: `n` sampled answers for each prompt, rows ordered prompt-major.

    `share_prompt` computes each prompt's KV cache once for its n answers (see _shared_prompt_cache);
    off, it is plain `generate`, which the tests compare against.
    """
    import torch

    tokenizer.padding_side = "left"  # decoder-only batching: prompts must end where generation starts
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    # Special tokens as the trainer encodes prompts (core/lora/batching.py), so serving sees what training saw.
    encoded = tokenizer(prompts, return_tensors="pt", padding=True).to(model.device)
    prompt_length = encoded["input_ids"].shape[1]
    stop = _end_mark_stop(tokenizer, end_mark, prompt_length)
    with torch.inference_mode():
        extra = {}
        if share_prompt and n > 1 and prompt_length > 1:
            extra["past_key_values"] = _shared_prompt_cache(model, encoded["input_ids"], encoded["attention_mask"], n)
        output = model.generate(
            **encoded,
            **extra,
            do_sample=True,
            temperature=settings.temperature,
            logits_processor=_answer_repetition_penalty(settings.repetition_penalty, prompt_length),
            num_return_sequences=n,
            max_new_tokens=settings.max_new_tokens,
            stopping_criteria=[stop],
            pad_token_id=tokenizer.pad_token_id,
            use_cache=True,
        )
    generated = output[:, prompt_length:].cpu()
    ended_at = stop.ended_at if stop.ended_at is not None else torch.zeros(len(generated), dtype=torch.long)
    lengths = [int(e) if e > 0 else generated.shape[1] for e in ended_at]
    raws = tokenizer.batch_decode([row[:length] for row, length in zip(generated, lengths)], skip_special_tokens=True)
    hit_mark = stop.hit_mark if stop.hit_mark is not None else torch.zeros(len(generated), dtype=torch.bool)
    return [
        Attempt(
            answer=raw.split(end_mark, 1)[0].strip(),
            raw=raw,
            terminated=bool(ended) or bool(mark),
            output_tokens=length,
        )
        for raw, length, ended, mark in zip(raws, lengths, ended_at > 0, hit_mark)
    ]


def generate_answers(
    model,
    tokenizer,
    prompts: list[str],
    task: str,
    answers_per_prompt: int,
    settings: SamplingSettings = SamplingSettings(),
    progress: Progress | None = None,
) -> GenerationRun:
    """`answers_per_prompt` answers for every prompt, batched, with retries for bad answers.

    An answer is bad when it did not terminate within max_new_tokens or fails the task's validator
    (empty text; a memory that is not `[key: value]` or empty; an unparsable eyes/mouth/pose).
    After `max_retries` failed retries the last attempt is kept and marked as a give-up (where the
    original showed `(읽씹)`, "read, no reply"). `progress` gets the answers count (unit "answer")
    after each first-pass call.
    """
    import torch

    end_mark = TASK_FORMATS[task].end_mark
    is_valid = ANSWER_VALIDATORS[task]
    settings = settings.for_task(task)
    torch.manual_seed(settings.seed)
    model.eval()
    answers: dict[tuple[int, int], GeneratedAnswer] = {}
    wall = 0.0
    tokens = 0
    calls = 0

    def run_call(slots: list[tuple[int, int]], call_prompts: list[str], n: int) -> None:
        nonlocal wall, tokens, calls
        started = time.perf_counter()
        attempts = sample(model, tokenizer, call_prompts, n, end_mark, settings)
        elapsed = time.perf_counter() - started
        wall += elapsed
        calls += 1
        for slot, attempt in zip(slots, attempts):
            tokens += attempt.output_tokens
            previous = answers.get(slot)
            answers[slot] = GeneratedAnswer(
                prompt_index=slot[0],
                answer_index=slot[1],
                answer=attempt.answer,
                raw=attempt.raw,
                terminated=attempt.terminated,
                valid=attempt.terminated and is_valid(attempt.answer),
                retries=0 if previous is None else previous.retries + 1,
                output_tokens=attempt.output_tokens,
                latency_s=elapsed + (0.0 if previous is None else previous.latency_s),
            )

    for start in range(0, len(prompts), settings.prompt_batch_size):
        indices = range(start, min(start + settings.prompt_batch_size, len(prompts)))
        slots = [(p, a) for p in indices for a in range(answers_per_prompt)]
        run_call(slots, [prompts[p] for p in indices], answers_per_prompt)
        if progress:
            progress(ProgressEvent(done=len(answers), total=len(prompts) * answers_per_prompt, unit="answer"))

    # Retries: one row per failed answer, as many rows per call as a first-pass call had.
    rows_per_call = settings.prompt_batch_size * answers_per_prompt
    for _ in range(settings.max_retries):
        failed = sorted(slot for slot, answer in answers.items() if not answer.valid)
        if not failed:
            break
        for start in range(0, len(failed), rows_per_call):
            chunk = failed[start : start + rows_per_call]
            run_call(chunk, [prompts[p] for p, _ in chunk], 1)

    ordered = [answers[(p, a)] for p in range(len(prompts)) for a in range(answers_per_prompt)]
    return GenerationRun(answers=ordered, wall_s=wall, generated_tokens=tokens, calls=calls, settings=settings)


def generate_one_by_one(
    model, tokenizer, prompts: list[str], task: str, answers_per_prompt: int, settings: SamplingSettings
) -> GenerationRun:
    """The original system's way, kept as the benchmark's baseline: one `generate` call per answer."""
    import torch

    end_mark = TASK_FORMATS[task].end_mark
    is_valid = ANSWER_VALIDATORS[task]
    settings = settings.for_task(task)
    torch.manual_seed(settings.seed)
    model.eval()
    answers = []
    wall = 0.0
    tokens = 0
    for p, prompt in enumerate(prompts):
        for a in range(answers_per_prompt):
            started = time.perf_counter()
            (attempt,) = sample(model, tokenizer, [prompt], 1, end_mark, settings)
            elapsed = time.perf_counter() - started
            wall += elapsed
            tokens += attempt.output_tokens
            answers.append(
                GeneratedAnswer(
                    prompt_index=p,
                    answer_index=a,
                    answer=attempt.answer,
                    raw=attempt.raw,
                    terminated=attempt.terminated,
                    valid=attempt.terminated and is_valid(attempt.answer),
                    retries=0,
                    output_tokens=attempt.output_tokens,
                    latency_s=elapsed,
                )
            )
    return GenerationRun(answers=answers, wall_s=wall, generated_tokens=tokens, calls=len(answers), settings=settings)


def train_and_generate(
    source,
    train_examples,
    valid_examples: list[tuple[str, str]],
    hp,
    adapter_dir,
    prompts: list[str],
    task: str,
    answers_per_prompt: int,
    settings: SamplingSettings,
    progress: Progress | None = None,
):
    """(training result, generation run): the experiments' unit, one LoRA variant trained on `source`
    (a core.base_models.ModelSpec), saved atomically at `adapter_dir`, then sampled."""
    from ohlora_assets.core.io import atomic_directory
    from ohlora_assets.core.lora import load_adapter, train_lora_adapter

    with atomic_directory(adapter_dir) as staging:
        trained = train_lora_adapter(source, train_examples, valid_examples, hp, staging, progress)
    model, tokenizer = load_adapter(adapter_dir, source.device, source.trust_remote_code)
    return trained, generate_answers(merged_for_inference(model), tokenizer, prompts, task, answers_per_prompt, settings)
