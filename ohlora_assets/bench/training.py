"""`ohlora bench training`: our LoRA trainer against TRL's `SFTTrainer`, what a user would pick today.

Both train the same LoRA (rank 16, alpha 16, dropout 0.05, gaussian init, the same target modules) with
the same optimizer (AdamW, lr 3e-4, no weight decay, linear decay to zero, no warmup, gradient clipping
at 1.0, batch 2, seed 0) on the same base (the embedded LM architecture, briefly pretrained here) and
the same data: the output_message train split with one synonym-augmented variant per epoch.

- ours: `train_lora_adapter`, given the epoch's variant per epoch;
- TRL: `SFTTrainer` on a prompt-completion dataset with `completion_only_loss=True`, tokenized by TRL
  before training, batches grouped by length (`train_sampling_strategy="group_by_length"`) and padded
  per batch (TRL's padding-free mode needs FlashAttention, which a CPU does not have). TRL takes one
  dataset, so it gets every epoch's variant concatenated (epochs x rows) and one epoch: the same
  examples, steps and learning-rate schedule, only the epochs' examples are interleaved. TRL's own
  defaults that would change the work are set to ours: gradient checkpointing off, float32 (no bf16).

Each side is timed end to end, from the base model's path to the saved adapter: loading, tokenizing,
training, saving; each first runs once untimed on 8 examples. Throughput is real (non-pad) tokens per
second over that time. Both models are then scored by one function on the same un-augmented examples,
so "equal final loss" compares like with like. The last line printed is `ratio=<ours/TRL>`.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import importlib.util
import tempfile
import time
from pathlib import Path

import pandas as pd
from transformers import AutoConfig, AutoTokenizer

from ohlora_assets.core.augment import SynonymSwapper, load_synonym_groups
from ohlora_assets.core.base_models import ModelSpec
from ohlora_assets.core.device import limit_torch_threads, lora_training_threads, torch_threads
from ohlora_assets.core.formats import task_split
from ohlora_assets.core.lora import (
    LoraHyperParams,
    Pairs,
    encode_pairs,
    evaluate_loss,
    load_adapter,
    target_modules_for,
    train_lora_adapter,
)
from ohlora_assets.core.schemas import load_dialogue, load_ml_qa
from ohlora_assets.resources import DataPaths

LOSS_TOLERANCE = 0.05


def _base_model(paths: DataPaths, workdir: Path) -> Path:
    """The embedded LM's architecture, pretrained 30 steps here: throughput depends on the architecture, not on
    how well it was pretrained, and a base of its own makes the result the same whether or not `make run`
    materialized one."""
    from ohlora_assets.core.base_lm import PretrainSpec, build_embedded_lm, pretraining_corpus

    corpus = pretraining_corpus(load_dialogue(paths.dialogue_csv), load_ml_qa(paths.ml_qa_csv))
    print("base: the embedded LM architecture (PretrainSpec defaults) pretrained 30 steps on the dialogue data")
    build_embedded_lm(corpus, dataclasses.replace(PretrainSpec(), steps=30), workdir / "base", device="cpu")
    return workdir / "base"


def _ours(base: Path, variants: list[Pairs], hp: LoraHyperParams, output_dir: Path) -> tuple[int, float]:
    """(tokens, seconds) of our trainer, from the base's path to the saved adapter."""
    started = time.perf_counter()
    result = train_lora_adapter(ModelSpec(str(base), device="cpu"), lambda epoch: variants[epoch], [], hp, output_dir)
    return sum(e.tokens for e in result.epochs), time.perf_counter() - started


def _trl(base: Path, variants: list[Pairs], hp: LoraHyperParams, output_dir: Path):
    """(model, tokens, seconds) of TRL's SFTTrainer, from the base's path to the saved adapter."""
    import torch
    from datasets import Dataset
    from peft import LoraConfig
    from trl import SFTConfig, SFTTrainer

    started = time.perf_counter()
    dataset = Dataset.from_dict({
        "prompt": [prompt for variant in variants for prompt, _ in variant],
        "completion": [completion for variant in variants for _, completion in variant],
    })
    lora = LoraConfig(
        r=hp.rank, lora_alpha=hp.alpha, lora_dropout=hp.dropout, init_lora_weights=hp.init,
        target_modules=target_modules_for(AutoConfig.from_pretrained(base).model_type), task_type="CAUSAL_LM",
    )
    args = SFTConfig(
        output_dir=str(output_dir),
        model_init_kwargs={"dtype": torch.float32},
        completion_only_loss=True,
        train_sampling_strategy="group_by_length",
        max_length=hp.max_length,
        per_device_train_batch_size=hp.batch_size,
        num_train_epochs=1,
        learning_rate=hp.learning_rate,
        lr_scheduler_type="linear",
        warmup_steps=0,
        weight_decay=0.0,
        optim="adamw_torch_fused",
        max_grad_norm=1.0,
        activation_checkpointing=False,  # TRL's default is on: it trades speed for memory a CPU run does not need
        bf16=False,
        seed=hp.seed,
        save_strategy="no",
        logging_strategy="no",
        report_to=[],
        disable_tqdm=True,
        use_cpu=True,
        dataloader_num_workers=0,
    )
    trainer = SFTTrainer(model=str(base), args=args, train_dataset=dataset, peft_config=lora)
    trainer.train()
    trainer.save_model(str(output_dir))
    seconds = time.perf_counter() - started
    return trainer.model, sum(len(ids) for ids in trainer.train_dataset["input_ids"]), seconds


def run(args: argparse.Namespace) -> float:
    if importlib.util.find_spec("trl") is None:
        raise RuntimeError("the TRL baseline needs trl: pip install -e '.[bench]'")
    limit_torch_threads()
    paths = DataPaths.from_env()
    dialogue = load_dialogue(paths.dialogue_csv)
    swapper = SynonymSwapper(load_synonym_groups(paths.synonyms_json))
    rows = 160 if args.quick else None
    hp = LoraHyperParams(rank=16, epochs=1 if args.quick else 2, batch_size=2)

    train = dialogue[dialogue["data_type"].isin(("train", "train_msg"))].head(rows)
    # as the pipeline's augmentation: no variant may read as a validation input
    held_out = frozenset(" ".join(t.split()) for t in dialogue.loc[dialogue["data_type"].isin(("valid", "valid_msg")),
                                                                     "input_data"])
    plain = task_split(train, "output_message", "train")
    variants = []
    for epoch in range(hp.epochs):
        inputs = swapper.variant(train["input_data"].tolist(), hp.seed, epoch, held_out)
        augmented = pd.Series(inputs, index=train.index)
        split = task_split(train, "output_message", "train", input_data=augmented)
        variants.append(list(zip(split["prompt"], split["completion"])))
    pairs = list(zip(plain["prompt"], plain["completion"]))

    # ABBA BAAB order: a load that drifts during the run (the CPU is shared, and one side's speed
    # can halve for a minute) weighs on both sides alike; four runs a side average it out.
    order = ["ours", "trl"] if args.quick else "ours trl trl ours trl ours ours trl".split()
    tokens = {"ours": 0, "trl": 0}
    seconds = {"ours": 0.0, "trl": 0.0}
    trained = {}
    with contextlib.ExitStack() as stack:
        workdir = Path(stack.enter_context(tempfile.TemporaryDirectory()))
        base = _base_model(paths, workdir)
        # Our trainer picks its threads by the base (one on a narrow base); TRL gets the same number, so the
        # ratio compares trainers, not thread counts.
        threads = lora_training_threads(AutoConfig.from_pretrained(base), "cpu")
        print(f"data: output_message train split of {paths.dialogue_csv}, {len(pairs)} examples x {hp.epochs} "
              f"synonym-augmented epoch(s); batch {hp.batch_size}, rank {hp.rank}; timed end to end; "
              f"{threads} torch thread(s) on both sides")
        stack.enter_context(torch_threads(threads))
        # Untimed warm-up of both sides on a few examples: the process's first training pays for imports,
        # kernel selection and allocations, which would otherwise land on whichever side runs first.
        warm_hp = dataclasses.replace(hp, epochs=1)
        _ours(base, [variants[0][:8]], warm_hp, workdir / "warm-ours")
        _trl(base, [variants[0][:8]], warm_hp, workdir / "warm-trl")
        for round_, name in enumerate(order):
            output_dir = workdir / f"{name}{round_}"
            if name == "ours":
                run_tokens, run_seconds = _ours(base, variants, hp, output_dir)
                trained.setdefault("ours", output_dir)
            else:
                model, run_tokens, run_seconds = _trl(base, variants, hp, output_dir)
                trained.setdefault("trl", model)
            tokens[name] += run_tokens
            seconds[name] += run_seconds
            print(f"  {name:4s} run: {run_tokens / run_seconds:8.1f} tokens/s ({run_tokens} tokens, {run_seconds:.1f} s)",
                  flush=True)

        tokenizer = AutoTokenizer.from_pretrained(base)
        scored, _ = encode_pairs(tokenizer, pairs, hp.max_length)
        ours_loss = evaluate_loss(load_adapter(trained["ours"])[0], scored, tokenizer.pad_token_id, "cpu")
        trl_loss = evaluate_loss(trained["trl"], scored, tokenizer.pad_token_id, "cpu")

    ours_tps = tokens["ours"] / seconds["ours"]
    trl_tps = tokens["trl"] / seconds["trl"]
    gap = abs(ours_loss - trl_loss) / trl_loss
    ratio = ours_tps / trl_tps
    print(f"ours: {ours_tps:8.1f} tokens/s  final loss {ours_loss:.4f}")
    print(f"trl:  {trl_tps:8.1f} tokens/s  final loss {trl_loss:.4f}  (SFTTrainer, completion-only loss, grouped by length)")
    print(f"loss gap {gap:.1%} ({'within' if gap <= LOSS_TOLERANCE else 'OUTSIDE'} {LOSS_TOLERANCE:.0%})")
    print(f"ratio={ratio:.2f}")
    return ratio
