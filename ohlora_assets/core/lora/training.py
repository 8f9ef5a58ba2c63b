"""LoRA fine-tuning of a causal LM on (prompt, completion) pairs, saved as a plain PEFT adapter.

The trainer is a lean loop rather than the Hugging Face Trainer, because on a small CPU the
per-step overhead is what costs: every epoch is tokenized once up front (prompt and completion
separately, so training sees exactly the prompt tokens generation will see), batches are grouped
by length and right-padded to the batch's longest, the LM head runs only on the positions
whose next token is a completion token (the only ones the loss counts; batching.py), each adapted
layer is one autograd node on CPU (fused.py), and the LoRA tensors are one flat parameter for the
optimizer (flat.py). What is saved is PEFT's own format, untouched by any of this.

For large bases: bf16 autocast on CUDA, gradient accumulation and activation checkpointing
(LoraHyperParams), and a checkpoint after every epoch that a killed run resumes from
(checkpoint.py). With the default hyper-parameters, a CPU run trains the same weights with or
without checkpoints.
"""

from __future__ import annotations

import contextlib
import json
import random
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from ohlora_assets.core.base_models import ModelSpec
from ohlora_assets.core.device import lora_training_threads, peak_memory_mb, resolve_device, torch_threads
from ohlora_assets.core.io import directory_hash
from ohlora_assets.core.lora.batching import (
    Pairs,
    collate,
    completion_loss,
    encode_pairs,
    evaluate_loss,
    length_grouped_batches,
)
from ohlora_assets.core.lora.checkpoint import (
    capture_state,
    load_state,
    remove_state,
    restore_state,
    run_fingerprint,
    save_state,
)
from ohlora_assets.core.lora.flat import FlatTrainables
from ohlora_assets.core.lora.loading import load_base_model
from ohlora_assets.core.progress import Progress, ProgressEvent
from ohlora_assets.core.recipes import LoraHyperParams

TRAINING_LOG = "training_log.json"

# LoRA targets per architecture: every projection of a Llama block (Gemma-3 has the same seven; PEFT's own
# default for it is q and v only); GPT-NeoX fuses q/k/v in one layer.
_LLAMA_PROJECTIONS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
TARGET_MODULES: dict[str, list[str]] = {
    "llama": _LLAMA_PROJECTIONS,
    "mistral": _LLAMA_PROJECTIONS,
    "qwen2": _LLAMA_PROJECTIONS,
    "gemma3_text": _LLAMA_PROJECTIONS,
    "gpt_neox": ["query_key_value"],
}


@dataclass(frozen=True)
class EpochStats:
    epoch: int
    train_loss: float
    token_accuracy: float
    valid_loss: float | None
    tokens: int
    wall_s: float


@dataclass
class LoraTrainResult:
    epochs: list[EpochStats]
    tokens_per_s: float
    wall_s: float
    peak_memory_mb: float
    data_version: str
    base_model: str
    revision: str | None
    device: str
    target_modules: list[str]
    trainable_params: int
    total_params: int
    train_examples: int
    valid_examples: int
    truncated_examples: int
    steps: int
    hyper_params: LoraHyperParams
    resumed_epochs: int = 0  # epochs restored from a checkpoint rather than trained by this call

    @property
    def first_train_loss(self) -> float:
        return self.epochs[0].train_loss

    @property
    def final_train_loss(self) -> float:
        return self.epochs[-1].train_loss

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "LoraTrainResult":
        data = dict(data)
        data["epochs"] = [EpochStats(**e) for e in data["epochs"]]
        data["hyper_params"] = LoraHyperParams(**data["hyper_params"])
        return cls(**data)


def read_training_log(adapter_dir: str | Path) -> LoraTrainResult:
    return LoraTrainResult.from_dict(json.loads((Path(adapter_dir) / TRAINING_LOG).read_text(encoding="utf-8")))


def target_modules_for(model_type: str) -> list[str] | str:
    """Our LoRA targets for an architecture; for any other, every linear layer but the output head (PEFT's
    "all-linear"): PEFT's own defaults are q/v only for some types (gemma2, qwen3) and absent for many
    (phi3, exaone, granite, cohere, ...), which would fail or train a smaller adapter than our bases get."""
    return TARGET_MODULES.get(model_type, "all-linear")


def train_lora_adapter(
    source: ModelSpec,
    train_examples: Callable[[int], Pairs] | Pairs,
    valid_examples: Pairs,
    hp: LoraHyperParams,
    output_dir: Path,
    progress: Progress | None = None,
    checkpoint_dir: Path | None = None,
) -> LoraTrainResult:
    """Train a LoRA adapter on `source`'s base and save it as a plain PEFT directory into `output_dir`.

    `output_dir` should be a staging directory (`ModelRegistry.write_version`, `core.io.atomic_directory`):
    the files are written into it directly, and a reader must never see it half-written.

    `train_examples` is either a fixed list of (prompt, completion) pairs or a function of the
    epoch (a fresh augmented variant per epoch). The completion is what the loss counts; the
    tokenizer's EOS is appended to it. Everything random is seeded by hp.seed, so two runs on the
    same data and device give the same adapter. `progress` gets a ProgressEvent per optimizer step
    and one with epoch_end=True per epoch (metrics token_accuracy and valid_loss); throttling is the
    receiver's business (see core/progress.py).

    With `checkpoint_dir`, the state after every epoch is saved there (checkpoint.py), and a call
    whose checkpoint_dir holds a checkpoint of the same run (hyper-parameters, base, device, data)
    continues after that checkpoint's last epoch, ending with the adapter an uninterrupted run
    gives; a checkpoint of another run is ignored (logged) and overwritten. It must outlive a killed
    process, so it is not inside `output_dir` (a staging directory is discarded with its run). The
    checkpoint is deleted once the adapter is saved. On the CPU the training runs on
    `core.device.lora_training_threads` threads (one for a narrow base), restored afterwards.
    """
    if isinstance(train_examples, list) and not train_examples:
        raise ValueError("no training examples")
    device = resolve_device(source.device)
    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    model, tokenizer = load_base_model(source, device)
    with torch_threads(lora_training_threads(model.config, device)):
        return _train_loaded(
            model, tokenizer, source, device, train_examples, valid_examples, hp, Path(output_dir), progress,
            checkpoint_dir,
        )


def _train_loaded(
    model,
    tokenizer,
    source: ModelSpec,
    device: str,
    train_examples: Callable[[int], Pairs] | Pairs,
    valid_examples: Pairs,
    hp: LoraHyperParams,
    output_dir: Path,
    progress: Progress | None,
    checkpoint_dir: Path | None,
) -> LoraTrainResult:
    """`train_lora_adapter` once the base is loaded and the threads are set."""
    from peft import LoraConfig, get_peft_model
    from transformers import get_linear_schedule_with_warmup

    from ohlora_assets.core.lora.fused import register_fused_layers, use_fused_dropout

    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id

    epoch_data, truncated = [], 0
    for epoch in range(hp.epochs):
        pairs = train_examples(epoch) if callable(train_examples) else train_examples
        if not pairs:
            raise ValueError(f"no training examples for epoch {epoch}")
        if callable(train_examples) or epoch == 0:
            encoded, cut = encode_pairs(tokenizer, pairs, hp.max_length)
            truncated = max(truncated, cut)
        epoch_data.append(encoded)
    valid, _ = encode_pairs(tokenizer, valid_examples, hp.max_length)

    fingerprint = (
        run_fingerprint(asdict(hp), source.model, source.revision, device, epoch_data, valid)
        if checkpoint_dir is not None
        else None
    )
    torch.manual_seed(hp.seed)
    config = LoraConfig(
        r=hp.rank,
        lora_alpha=hp.alpha,
        lora_dropout=hp.dropout,
        # "default" is PEFT's own init (Kaiming-uniform A, zero B); other names are PEFT's named inits.
        init_lora_weights=hp.init if hp.init != "default" else True,
        target_modules=target_modules_for(model.config.model_type),
        task_type="CAUSAL_LM",
        revision=source.revision,
    )
    # The fused layers draw their dropout masks on the CPU, from a NumPy generator that activation
    # checkpointing would not rewind for its recomputation (it restores torch's): with
    # checkpointing, PEFT's own layers run, whose nn.Dropout uses torch's generator.
    fused = device == "cpu" and not hp.gradient_checkpointing
    if fused:
        register_fused_layers(config)
    if hp.gradient_checkpointing:  # non-reentrant: no input needs requires_grad for the LoRA grads to flow
        model.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
    model = get_peft_model(model, config)
    dropout_rng = np.random.default_rng(hp.seed) if fused else None
    if fused:
        use_fused_dropout(model, dropout_rng)
    trainable, total = model.get_nb_trainable_parameters()
    trainables = FlatTrainables([p for p in model.parameters() if p.requires_grad])
    params = [trainables.param]
    optimizer = torch.optim.AdamW(params, lr=hp.learning_rate, weight_decay=0.0, fused=True)
    plans = [
        length_grouped_batches([len(e.ids) for e in data], hp.batch_size, random.Random(f"{hp.seed}:{epoch}"))
        for epoch, data in enumerate(epoch_data)
    ]
    # An optimizer step per grad_accumulation consecutive micro-batches (the epoch's last step may have fewer).
    epoch_steps = [[plan[i : i + hp.grad_accumulation] for i in range(0, len(plan), hp.grad_accumulation)] for plan in plans]
    total_steps = sum(len(steps) for steps in epoch_steps)
    # Linear decay to zero over the run's optimizer steps, the Hugging Face Trainer's default.
    scheduler = get_linear_schedule_with_warmup(optimizer, 0, total_steps)

    stats: list[EpochStats] = []
    step, tokens_seen, train_time = 0, 0, 0.0
    resumed = load_state(checkpoint_dir, fingerprint) if checkpoint_dir is not None else None
    if resumed is not None:
        restore_state(resumed, trainables.param, optimizer, scheduler, dropout_rng)
        stats, step = [EpochStats(**s) for s in resumed.epoch_stats], resumed.step
    started = time.perf_counter()
    model.train()
    for epoch in range(len(stats), hp.epochs):
        data = epoch_data[epoch]
        epoch_start = time.perf_counter()
        loss_sum, label_count, correct_sum, epoch_tokens = 0.0, 0, 0, 0
        for micro_batches in epoch_steps[epoch]:
            collated = [collate([data[i] for i in ids], pad_id, device) for ids in micro_batches]
            step_labels = sum(int(mask.sum()) for _, mask, _ in collated)
            step_loss = 0.0
            for batch in collated:
                with _mixed_precision(device):
                    loss, n, correct = completion_loss(model, *batch)
                # Each micro-batch's mean loss weighted by its share of the step's labels: the step's gradient
                # is that of one batch holding them all, up to rounding (without accumulation the factor is 1.0).
                scaled = loss * (n / step_labels)
                scaled.backward()
                step_loss += scaled.item()
                loss_sum += loss.item() * n
                label_count += n
                correct_sum += int(correct)
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            optimizer.step()
            scheduler.step()
            trainables.zero_grad()
            step += 1
            epoch_tokens += sum(len(data[i].ids) for ids in micro_batches for i in ids)
            if progress:
                progress(ProgressEvent(done=step, total=total_steps, epoch=epoch + 1, epochs=hp.epochs, loss=step_loss))
        train_time += time.perf_counter() - epoch_start
        tokens_seen += epoch_tokens
        with _mixed_precision(device):
            valid_loss = evaluate_loss(model, valid, pad_id, device)
        stats.append(EpochStats(epoch + 1, loss_sum / label_count, correct_sum / label_count, valid_loss,
                                epoch_tokens, time.perf_counter() - epoch_start))
        if checkpoint_dir is not None:  # before the epoch's event: whoever hears it may stop the process
            save_state(checkpoint_dir, capture_state(
                fingerprint, epoch + 1, step, [asdict(s) for s in stats], trainables.param, optimizer, scheduler,
                dropout_rng,
            ))
        if progress:
            progress(ProgressEvent(
                done=step, total=total_steps, epoch=epoch + 1, epochs=hp.epochs, loss=stats[-1].train_loss,
                epoch_end=True, metrics={"token_accuracy": stats[-1].token_accuracy, "valid_loss": valid_loss},
            ))

    result = LoraTrainResult(
        epochs=stats,
        tokens_per_s=tokens_seen / train_time if train_time else 0.0,  # 0 when every epoch was restored
        wall_s=time.perf_counter() - started,
        peak_memory_mb=peak_memory_mb(device),
        data_version="",
        base_model=source.model,
        revision=source.revision,
        device=device,
        target_modules=sorted(model.peft_config["default"].target_modules),
        trainable_params=trainable,
        total_params=total,
        train_examples=len(epoch_data[0]),
        valid_examples=len(valid),
        truncated_examples=truncated,
        steps=step,
        hyper_params=hp,
        resumed_epochs=resumed.epochs_done if resumed is not None else 0,
    )
    trainables.release()
    output_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(output_dir)
    tokenizer.save_pretrained(output_dir)
    result.data_version = directory_hash(output_dir)
    (output_dir / TRAINING_LOG).write_text(json.dumps(result.to_dict(), ensure_ascii=False, indent=2), encoding="utf-8")
    if checkpoint_dir is not None:
        remove_state(checkpoint_dir)
    return result


def _mixed_precision(device: str):
    """bf16 autocast on CUDA (the weights stay in the dtype they were loaded in); nothing elsewhere."""
    return torch.autocast("cuda", dtype=torch.bfloat16) if device.startswith("cuda") else contextlib.nullcontext()
