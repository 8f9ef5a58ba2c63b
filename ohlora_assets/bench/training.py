"""`ohlora bench training`: our LoRA trainer against an upstream-style Hugging Face Trainer run.

Both train the same LoRA (rank 16, alpha 16, dropout 0.05, gaussian init, lr 3e-4, linear decay,
batch 2, seed 0) on the same tiny model and the same output_message split with synonym
augmentation, in one process:

- ours: `train_lora_adapter`, with every epoch's augmented variant tokenized up front;
- baseline: `transformers.Trainer` with a collator that decodes each batch, swaps synonyms in the
  user input, re-encodes, masks the prompt and pads to the batch's longest (how the original
  project augmented on the fly).

Throughput is real (non-pad) tokens per second of training. Both models are then scored by one
function on the same un-augmented examples, so "equal final loss" compares like with like. The
last line printed is `ratio=<ours/baseline>`.
"""

from __future__ import annotations

import argparse
import dataclasses
import random
import tempfile
import time
from pathlib import Path

import pandas as pd
import torch
from transformers import AutoTokenizer

from ohlora_assets.core.augment import SynonymSwapper, load_synonym_groups
from ohlora_assets.core.formats import ANSWER_MARK, task_split
from ohlora_assets.core.base_models import ModelSpec
from ohlora_assets.core.lora import LoraHyperParams, encode_pairs, evaluate_loss, load_adapter, train_lora_adapter
from ohlora_assets.core.device import limit_torch_threads
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


class AugmentingCollator:
    """The upstream-style collator: decode, swap synonyms in the user input, re-encode, pad."""

    def __init__(self, tokenizer, swapper: SynonymSwapper, seed: int):
        self.tokenizer = tokenizer
        self.swapper = swapper
        self.rng = random.Random(seed)
        self.tokens = 0

    def __call__(self, features: list[dict]) -> dict[str, torch.Tensor]:
        ids, labels = [], []
        for feature in features:
            text = self.tokenizer.decode(feature["input_ids"], skip_special_tokens=True)
            user_input, _, answer = text.partition(ANSWER_MARK)
            prompt = self.swapper.swap(user_input, self.rng) + ANSWER_MARK
            prompt_ids = self.tokenizer(prompt)["input_ids"]
            answer_ids = self.tokenizer(answer, add_special_tokens=False)["input_ids"] + [self.tokenizer.eos_token_id]
            ids.append(prompt_ids + answer_ids)
            labels.append([-100] * len(prompt_ids) + answer_ids)
        longest = max(map(len, ids))
        pad = self.tokenizer.pad_token_id
        self.tokens += sum(map(len, ids))
        return {
            "input_ids": torch.tensor([x + [pad] * (longest - len(x)) for x in ids]),
            "attention_mask": torch.tensor([[1] * len(x) + [0] * (longest - len(x)) for x in ids]),
            "labels": torch.tensor([y + [-100] * (longest - len(y)) for y in labels]),
        }


def _baseline(base: Path, pairs: list[tuple[str, str]], swapper: SynonymSwapper, hp: LoraHyperParams, workdir: Path):
    """(model, tokens, seconds) of the Hugging Face Trainer run."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer, Trainer, TrainingArguments

    tokenizer = AutoTokenizer.from_pretrained(base)
    model = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32)
    torch.manual_seed(hp.seed)
    model = get_peft_model(
        model,
        LoraConfig(r=hp.rank, lora_alpha=hp.alpha, lora_dropout=hp.dropout, init_lora_weights=hp.init,
                   target_modules=["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
                   task_type="CAUSAL_LM"),
    )
    dataset = [{"input_ids": tokenizer(prompt + completion)["input_ids"]} for prompt, completion in pairs]
    collator = AugmentingCollator(tokenizer, swapper, hp.seed)
    args = TrainingArguments(
        output_dir=str(workdir / "trainer"),
        per_device_train_batch_size=hp.batch_size,
        num_train_epochs=hp.epochs,
        learning_rate=hp.learning_rate,
        lr_scheduler_type="linear",
        weight_decay=0.0,
        max_grad_norm=1.0,
        seed=hp.seed,
        save_strategy="no",
        logging_strategy="no",
        report_to=[],
        remove_unused_columns=False,
        disable_tqdm=True,
        use_cpu=True,
        dataloader_num_workers=0,
    )
    trainer = Trainer(model=model, args=args, train_dataset=dataset, data_collator=collator)
    started = time.perf_counter()
    trainer.train()
    return model, collator.tokens, time.perf_counter() - started


def run(args: argparse.Namespace) -> float:
    limit_torch_threads()
    paths = DataPaths.from_env()
    dialogue = load_dialogue(paths.dialogue_csv)
    swapper = SynonymSwapper(load_synonym_groups(paths.synonyms_json))
    rows = 160 if args.quick else None
    hp = LoraHyperParams(rank=16, epochs=1 if args.quick else 2, batch_size=2)

    train = dialogue[dialogue["data_type"].isin(("train", "train_msg"))].head(rows)
    plain = task_split(train, "output_message", "train")
    variants = []
    for epoch in range(hp.epochs):
        augmented = pd.Series(swapper.variant(train["input_data"].tolist(), hp.seed, epoch), index=train.index)
        split = task_split(train, "output_message", "train", input_data=augmented)
        variants.append(list(zip(split["prompt"], split["completion"])))
    pairs = list(zip(plain["prompt"], plain["completion"]))

    # ABBA BAAB order: a load that drifts during the run (the CPU is shared, and one side's speed
    # can halve for a minute) weighs on both sides alike; four runs a side average it out.
    order = ["ours", "baseline"] if args.quick else "ours baseline baseline ours baseline ours ours baseline".split()
    tokens = {"ours": 0, "baseline": 0}
    seconds = {"ours": 0.0, "baseline": 0.0}
    trained = {}
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        base = _base_model(paths, workdir)
        print(f"base model {base}; {len(pairs)} examples x {hp.epochs} epoch(s), batch {hp.batch_size}, rank {hp.rank}")
        for round_, name in enumerate(order):
            if name == "ours":
                result = train_lora_adapter(
                    ModelSpec(str(base), device="cpu"), lambda epoch: variants[epoch], [], hp, workdir / f"ours{round_}"
                )
                run_tokens = sum(e.tokens for e in result.epochs)
                run_seconds = run_tokens / result.tokens_per_s
                trained.setdefault("ours", load_adapter(workdir / f"ours{round_}")[0])
            else:
                model, run_tokens, run_seconds = _baseline(base, pairs, swapper, hp, workdir)
                trained.setdefault("baseline", model)
            tokens[name] += run_tokens
            seconds[name] += run_seconds
            print(f"  {name:8s} run: {run_tokens / run_seconds:8.1f} tokens/s ({run_seconds:.1f} s)", flush=True)

        tokenizer = AutoTokenizer.from_pretrained(base)
        scored, _ = encode_pairs(tokenizer, pairs, hp.max_length)
        ours_loss = evaluate_loss(trained["ours"], scored, tokenizer.pad_token_id, "cpu")
        baseline_loss = evaluate_loss(trained["baseline"], scored, tokenizer.pad_token_id, "cpu")

    ours_tps = tokens["ours"] / seconds["ours"]
    baseline_tps = tokens["baseline"] / seconds["baseline"]
    gap = abs(ours_loss - baseline_loss) / baseline_loss
    ratio = ours_tps / baseline_tps
    print(f"ours:     {ours_tps:8.1f} tokens/s  final loss {ours_loss:.4f}")
    print(f"baseline: {baseline_tps:8.1f} tokens/s  final loss {baseline_loss:.4f}")
    print(f"loss gap {gap:.1%} ({'within' if gap <= LOSS_TOLERANCE else 'OUTSIDE'} {LOSS_TOLERANCE:.0%})")
    print(f"ratio={ratio:.2f}")
    return ratio
