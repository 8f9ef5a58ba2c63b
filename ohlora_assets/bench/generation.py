"""`ohlora bench generation`: our batched generator against the original one-answer-per-call loop.

Both draw 4 answers for each of 40 output_message validation prompts from the same adapter, with the
same sampling (temperature 0.6, output_message's repetition penalty, the same max_new_tokens, stop at
`(답변 종료)`) and no retries, so the two do the same work:

- ours: `generate_answers`, up to 64 prompts per `generate` call (all 40 in one), `num_return_sequences=4`,
  left padding;
- loop: one `generate` call per answer, one prompt at a time (how the original produced its samples).

Both run the adapter merged into its base weights, as the reports do, so the ratio measures the
batching alone. Figures are answers per second of generation (model loading excluded); the last line printed is
`ratio=<ours/loop>`.
"""

from __future__ import annotations

import dataclasses
import tempfile
from pathlib import Path

from ohlora_assets.core.formats import task_split
from ohlora_assets.core.generation import (
    SamplingSettings,
    generate_answers,
    generate_one_by_one,
    merged_for_inference,
)
from ohlora_assets.core.device import limit_torch_threads
from ohlora_assets.core.schemas import load_dialogue
from ohlora_assets.resources import DataPaths

PROMPTS = 40
ANSWERS = 4
MAX_NEW_TOKENS = 64
QUICK_PROMPTS = 12
QUICK_MAX_NEW_TOKENS = 24


def _adapter(dialogue, workdir: Path, quick: bool) -> Path:
    """A LoRA trained for one epoch on a briefly pretrained embedded LM, built here so that the result is the
    same whether or not `make run` materialized one (speed depends on the architecture, not on training)."""
    from ohlora_assets.bench.training import _base_model
    from ohlora_assets.core.base_models import ModelSpec
    from ohlora_assets.core.lora import LoraHyperParams, train_lora_adapter

    train = task_split(dialogue, "output_message", "train")
    if quick:
        train = train.head(32)
    pairs = list(zip(train["prompt"], train["completion"]))
    print(f"adapter: rank 16, one epoch on {len(pairs)} output_message train rows")
    base = ModelSpec(str(_base_model(DataPaths.from_env(), workdir)), device="cpu")
    train_lora_adapter(base, pairs, pairs[:8], LoraHyperParams(rank=16, epochs=1), workdir / "adapter")
    return workdir / "adapter"


def run(args) -> float:
    from ohlora_assets.core.lora import load_adapter

    limit_torch_threads()
    quick = bool(getattr(args, "quick", False))
    dialogue_csv = DataPaths.from_env().dialogue_csv
    dialogue = load_dialogue(dialogue_csv)
    print(f"data: {dialogue_csv} (output_message train rows for the adapter, valid prompts to answer)")
    valid = task_split(dialogue, "output_message", "valid")["prompt"].tolist()
    count = QUICK_PROMPTS if quick else PROMPTS
    prompts = [valid[i % len(valid)] for i in range(count)]  # cycles only if the data has fewer prompts
    settings = SamplingSettings(max_new_tokens=QUICK_MAX_NEW_TOKENS if quick else MAX_NEW_TOKENS, max_retries=0)

    with tempfile.TemporaryDirectory() as workdir:
        adapter = _adapter(dialogue, Path(workdir), quick)
        model, tokenizer = load_adapter(adapter, "cpu")
        model = merged_for_inference(model)  # both sides run the same merged weights: only batching differs
        print(f"answering: {count} prompts x {ANSWERS} answers, max_new_tokens {settings.max_new_tokens}")
        # Warm-up, so neither side pays for first-call allocations.
        generate_answers(model, tokenizer, prompts[:2], "output_message", 1, dataclasses.replace(settings, max_new_tokens=4))
        ours = generate_answers(model, tokenizer, prompts, "output_message", ANSWERS, settings)
        loop = generate_one_by_one(model, tokenizer, prompts, "output_message", ANSWERS, settings)

    for name, result in (("batched", ours), ("loop", loop)):
        terminated = sum(a.terminated for a in result.answers)
        print(
            f"{name:8s} {len(result.answers)} answers in {result.wall_s:.2f}s = {result.answers_per_s:.2f} answers/s, "
            f"{result.tokens_per_s:.1f} tokens/s, {result.calls} generate calls, {terminated} stopped at the end mark"
        )
    ratio = ours.answers_per_s / loop.answers_per_s
    print(f"ratio={ratio:.2f}")
    return ratio
