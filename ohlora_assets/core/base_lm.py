"""The embedded base model: a BPE tokenizer and a tiny Llama pretrained offline on our own corpus.

The adapters start from it, so it is pretrained on what they will see: the raw Korean texts and the
task-formatted training texts (prompt, answer and end mark) of the train rows. Validation rows are
left out so that validation losses downstream stay honest.
"""

from __future__ import annotations

import json
import math
import random
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import pandas as pd
import torch

from ohlora_assets.core.device import peak_memory_mb, resolve_device
from ohlora_assets.core.formats import TASK_FORMATS, TASKS, task_split
from ohlora_assets.core.io import atomic_directory, directory_hash
from ohlora_assets.core.lora.batching import collate, completion_loss, encode_pairs, length_grouped_batches
from ohlora_assets.core.progress import Progress, ProgressEvent
from ohlora_assets.core.tokenizer import build_bpe_tokenizer

SPECIAL_TOKENS = {"bos_token": "<s>", "eos_token": "</s>", "pad_token": "<pad>", "unk_token": "<unk>"}
PRETRAIN_LOG = "pretrain_log.json"


@dataclass(frozen=True)
class PretrainSpec:
    """Model size and pretraining budget. The default takes a few minutes on 2 CPU cores."""

    vocab_size: int = 3000
    hidden_size: int = 192
    intermediate_size: int = 512
    num_layers: int = 4
    num_heads: int = 4
    max_length: int = 192
    batch_size: int = 16
    # Measured on the bundled data: at 600 steps one summary check prompt got an empty answer, at 900
    # the base memorised enough that 23% of output_message answers copied an unrelated training
    # answer; 750 passes every adapter's end-mark check on 30 prompts with copy rates 0.08-0.09.
    steps: int = 750
    learning_rate: float = 3e-3
    warmup_steps: int = 20
    seed: int = 0

    @classmethod
    def smoke(cls) -> "PretrainSpec":
        """Seconds: enough to exercise every code path, not to learn much."""
        return cls(vocab_size=1000, hidden_size=64, intermediate_size=128, num_layers=2, num_heads=2, steps=40)


@dataclass
class PretrainResult:
    parameters: int
    vocab_size: int
    corpus_texts: int
    corpus_tokens: int
    steps: int
    tokens_seen: int
    wall_s: float
    tokens_per_s: float
    peak_memory_mb: float
    loss_curve: list[tuple[int, float]]
    data_version: str = ""
    spec: PretrainSpec = field(default_factory=PretrainSpec)

    @property
    def first_loss(self) -> float:
        return self.loss_curve[0][1]

    @property
    def final_loss(self) -> float:
        return self.loss_curve[-1][1]


@dataclass(frozen=True)
class PretrainingCorpus:
    """What the embedded base model reads.

    `documents` are the task-formatted training texts (prompt, answer, end mark): whole examples,
    trained to end with EOS. `fragments` are the raw texts (a user message, an answer, a summary):
    parts of a conversation, trained without EOS, so the base does not learn that a bare answer
    ends the text: downstream, an answer is followed by its end mark.
    """

    documents: list[str]
    fragments: list[str]


def pretraining_corpus(dialogue: pd.DataFrame, ml_qa: pd.DataFrame) -> PretrainingCorpus:
    """Raw texts and task-formatted training texts (with a non-empty answer) of the train rows, in a fixed order."""
    train_dialogue = dialogue[dialogue["data_type"].str.startswith("train")]
    fragments = [
        text
        for column in ("input_data", "output_message", "summary", "memory")
        for text in train_dialogue[column]
        if text.strip()
    ]
    documents = []
    for task in TASKS:
        split = task_split(dialogue, task, "train")
        end_mark = TASK_FORMATS[task].end_mark
        # Empty answers (most memory rows) are left to the memory adapter: pretrained, they teach the base
        # that `(요약 시작) ### 답변:` is followed by nothing, a marker the summary task shares.
        documents += [
            prompt + completion
            for prompt, completion in zip(split["prompt"], split["completion"])
            if completion.strip() != end_mark
        ]
    train_qa = ml_qa[ml_qa["data_type"] == "train"]
    fragments += [
        text
        for column in ("user_question", "rag_retrieved_data", "output_message")
        for text in train_qa[column]
        if text.strip()
    ]
    return PretrainingCorpus(documents=documents, fragments=fragments)


def _warmup_cosine(spec: PretrainSpec) -> Callable[[int], float]:
    """The learning-rate factor of each step: linear warmup to 1, cosine decay to 0.1 at spec.steps.

    Not transformers' `get_cosine_with_min_lr_schedule_with_warmup(min_lr_rate=0.1)`, which gives the
    same factors after the warmup but warms up from 0 (`step / warmup`: the first step does not
    learn) where this one starts at 1/warmup (`(step + 1) / warmup`). Switching would change the
    pretrained weights, hence the embedded base model and every adapter trained on it.
    """

    def factor(step: int) -> float:
        if step < spec.warmup_steps:
            return (step + 1) / spec.warmup_steps
        progress = (step - spec.warmup_steps) / max(spec.steps - spec.warmup_steps, 1)
        return 0.1 + 0.45 * (1 + math.cos(math.pi * min(progress, 1.0)))

    return factor


def build_embedded_lm(
    corpus: PretrainingCorpus,
    spec: PretrainSpec,
    output_dir: Path,
    progress: Progress | None = None,
    device: str = "auto",
) -> PretrainResult:
    """Train the tokenizer and pretrain a tiny Llama on `corpus`; save both at `output_dir`, atomically.

    The directory loads with AutoModelForCausalLM / AutoTokenizer.from_pretrained. Seeded: the same
    texts and spec give the same weights on the same device. `progress` gets a ProgressEvent per
    optimizer step.
    """
    from transformers import GenerationConfig, LlamaConfig, LlamaForCausalLM

    device = resolve_device(device)
    texts = corpus.documents + corpus.fragments
    tokenizer = build_bpe_tokenizer(texts, spec.vocab_size, SPECIAL_TOKENS)
    # Each text is one sequence from BOS, the shape every prompt downstream has; documents end with EOS.
    documents, _ = encode_pairs(tokenizer, [("", text) for text in corpus.documents], spec.max_length)
    fragments, _ = encode_pairs(tokenizer, [("", text) for text in corpus.fragments], spec.max_length, end_with_eos=False)
    examples = documents + fragments

    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=spec.hidden_size,
        intermediate_size=spec.intermediate_size,
        num_hidden_layers=spec.num_layers,
        num_attention_heads=spec.num_heads,
        num_key_value_heads=spec.num_heads,
        max_position_embeddings=spec.max_length,
        tie_word_embeddings=True,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(spec.seed)
    model = LlamaForCausalLM(config).to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=spec.learning_rate, weight_decay=0.01, betas=(0.9, 0.95), fused=True)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, _warmup_cosine(spec))

    rng = random.Random(spec.seed)
    plan: list[list[int]] = []
    curve: list[tuple[int, float]] = []
    window_loss, window_labels, tokens_seen = 0.0, 0, 0
    log_every = max(spec.steps // 20, 1)
    started = time.perf_counter()
    model.train()
    for step in range(1, spec.steps + 1):
        if not plan:
            plan = length_grouped_batches([len(e.ids) for e in examples], spec.batch_size, rng)
        batch = [examples[i] for i in plan.pop()]
        loss, n, _ = completion_loss(model, *collate(batch, tokenizer.pad_token_id, device))
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0, foreach=True)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        window_loss += loss.item() * n
        window_labels += n
        tokens_seen += sum(len(e.ids) for e in batch)
        if step % log_every == 0 or step == spec.steps:
            curve.append((step, window_loss / window_labels))
            window_loss, window_labels = 0.0, 0
        if progress:
            progress(ProgressEvent(done=step, total=spec.steps, loss=loss.item()))
    wall_s = time.perf_counter() - started

    result = PretrainResult(
        parameters=sum(p.numel() for p in model.parameters()),
        vocab_size=len(tokenizer),
        corpus_texts=len(texts),
        corpus_tokens=sum(len(e.ids) for e in examples),
        steps=spec.steps,
        tokens_seen=tokens_seen,
        wall_s=wall_s,
        tokens_per_s=tokens_seen / wall_s,
        peak_memory_mb=peak_memory_mb(device),
        loss_curve=curve,
        spec=spec,
    )
    model.generation_config = GenerationConfig(
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id
    )
    with atomic_directory(output_dir) as staging:
        model.save_pretrained(staging)
        tokenizer.save_pretrained(staging)
        result.data_version = directory_hash(staging)
        (staging / PRETRAIN_LOG).write_text(json.dumps(asdict(result), indent=2), encoding="utf-8")
    return result
