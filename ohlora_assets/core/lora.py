"""LoRA fine-tuning of a causal LM on (prompt, completion) pairs, saved as a plain PEFT adapter.

The trainer is a lean loop rather than the Hugging Face Trainer, because on a small CPU the
per-step overhead is what costs: every epoch is tokenized once up front (prompt and completion
separately, so training sees exactly the prompt tokens generation will see), batches are grouped
by length and right-padded to the batch's longest, the LM head runs only on the positions
whose next token is a completion token (the only ones the loss counts), each adapted layer is
one autograd node on CPU (FusedLoraLinear), and the LoRA tensors are one flat parameter for the
optimizer (FlatTrainables). What is saved is PEFT's own format, untouched by any of this.
"""

from __future__ import annotations

import json
import math
import random
import resource
import time
import weakref
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ohlora_assets.core.io import atomic_directory, directory_hash

Pairs = list[tuple[str, str]]
Progress = Callable[[dict], None]  # see train_lora_adapter

TRAINING_LOG = "training_log.json"

# LoRA targets per architecture: every projection of a Llama block; GPT-NeoX fuses q/k/v in one layer.
_LLAMA_PROJECTIONS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
TARGET_MODULES: dict[str, list[str]] = {
    "llama": _LLAMA_PROJECTIONS,
    "mistral": _LLAMA_PROJECTIONS,
    "qwen2": _LLAMA_PROJECTIONS,
    "gpt_neox": ["query_key_value"],
}


@dataclass(frozen=True)
class LoraHyperParams:
    rank: int
    alpha: int = 16
    dropout: float = 0.05
    init: str = "gaussian"
    learning_rate: float = 3e-4
    epochs: int = 1
    batch_size: int = 2
    seed: int = 0
    max_length: int = 256

    def __post_init__(self) -> None:
        for name in ("rank", "epochs", "batch_size", "max_length"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")


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


# ---------------------------------------------------------------------------------------------
# Tokenized examples and batches (shared with the base-model pretraining in core/base_lm.py)


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


def length_grouped_batches(examples: Sequence[Encoded], batch_size: int, rng: random.Random) -> list[list[int]]:
    """Shuffled batches of similar-length examples, so padding to the batch's longest costs little.

    Examples are shuffled, cut into windows of 64 batches, sorted by length inside each window,
    batched, and the batches shuffled again: the order is random, the padding small.
    """
    order = list(range(len(examples)))
    rng.shuffle(order)
    window = batch_size * 64
    batches = []
    for start in range(0, len(order), window):
        chunk = sorted(order[start : start + window], key=lambda i: len(examples[i].ids))
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


def completion_loss(model, ids: torch.Tensor, mask: torch.Tensor, targets: torch.Tensor):
    """(mean loss, label count, correct count) over the masked positions only.

    Computes logits = lm_head(last hidden state) on those positions alone, which is how Llama and
    GPT-NeoX compute them, and skips the vocabulary projection of every prompt and pad position.
    """
    lm = causal_lm_of(model)
    hidden = lm.base_model(input_ids=ids, use_cache=False).last_hidden_state[mask]
    logits = lm.get_output_embeddings()(hidden).float()
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


def resolve_device(device: str) -> str:
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return device


def peak_memory_mb(device: str) -> float:
    """Peak accelerator memory on CUDA; otherwise the process's peak resident set size."""
    if device.startswith("cuda"):
        return torch.cuda.max_memory_allocated() / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def linear_decay(optimizer: torch.optim.Optimizer, total_steps: int) -> torch.optim.lr_scheduler.LambdaLR:
    """Linear decay to zero over the run (the Hugging Face Trainer's default schedule)."""
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: max(0.0, 1 - step / max(total_steps, 1)))


# ---------------------------------------------------------------------------------------------
# LoRA training


def dropout_masks(rng: np.random.Generator, p: float, scale: float):
    """A function of a shape giving inverted-dropout masks with `scale` folded in, as float32 tensors.

    On CPU, torch's `bernoulli_` draws each element separately (it was 12% of a LoRA step on the
    embedded model); comparing 16 raw random bits with p is several times cheaper. Same distribution
    as `nn.Dropout(p)` up to p's rounding to 1/65536 (the keep scale uses the rounded p, so the
    expectation is exact). `scale` is the LoRA scaling, so the mask carries it for free.
    """
    threshold = round(p * 65536)
    kept = np.float32(scale * 65536 / (65536 - threshold))

    def draw(shape: tuple[int, ...]) -> torch.Tensor:
        if not threshold:  # no dropout: the mask is the scale alone, and no random bits are spent
            return torch.full(shape, float(kept))
        count = math.prod(shape)
        bits = rng.bit_generator.random_raw(-(-count // 4)).view(np.uint16)[:count]
        return torch.from_numpy(np.multiply(bits >= threshold, kept, dtype=np.float32)).view(shape)

    return draw


class FusedLoraLinear(torch.autograd.Function):
    """y = x W^T + b + ((x * mask) A^T) B^T as one autograd node, for a frozen base weight.

    `mask` is the dropout mask times the LoRA scaling (see dropout_masks), so no op of its own scales
    the LoRA branch. PEFT's eager path records ~8 nodes per layer (dropout, two linears, scaling,
    add, casts and views), and on a small model the per-op overhead, not the arithmetic, is what a
    step costs; the backward here is the five matmuls the chain rule needs and skips the base
    weight's input gradient when nothing upstream needs it (the first layer's projections).
    """

    @staticmethod
    def forward(ctx, x, weight, bias, lora_a, lora_b, mask):
        rows = x.reshape(-1, x.shape[-1])
        dropped = rows * mask
        low_rank = torch.mm(dropped, lora_a.t())
        out = torch.mm(rows, weight.t()) if bias is None else torch.addmm(bias, rows, weight.t())
        out.addmm_(low_rank, lora_b.t())
        ctx.save_for_backward(dropped, low_rank, weight, lora_a, lora_b, mask)
        return out.view(*x.shape[:-1], weight.shape[0])

    @staticmethod
    def backward(ctx, grad_out):
        dropped, low_rank, weight, lora_a, lora_b, mask = ctx.saved_tensors
        grad_rows = grad_out.reshape(-1, grad_out.shape[-1])
        grad_low_rank = torch.mm(grad_rows, lora_b)
        grad_a = torch.mm(grad_low_rank.t(), dropped)
        grad_b = torch.mm(grad_rows.t(), low_rank)
        grad_x = None
        if ctx.needs_input_grad[0]:
            grad_x = torch.mm(grad_rows, weight).addcmul_(torch.mm(grad_low_rank, lora_a), mask)
            grad_x = grad_x.view(*grad_out.shape[:-1], weight.shape[1])
        return grad_x, None, None, grad_a, grad_b, None


class _FusedTrainingForward:
    """A LoRA Linear's forward while training on CPU: FusedLoraLinear for the plain single-adapter
    case, PEFT's own forward otherwise (eval, no grad, merged, disabled, DoRA and other variants)."""

    def __init__(self, layer, rng: np.random.Generator):
        (self.adapter,) = layer.lora_A.keys()
        dropout = layer.lora_dropout[self.adapter]
        p = dropout.p if isinstance(dropout, torch.nn.Dropout) else 0.0
        self.layer = weakref.ref(layer)  # the layer holds this object: no reference cycle
        self.peft_forward = type(layer).forward
        self.masks = dropout_masks(rng, p, layer.scaling[self.adapter])

    def __call__(self, x: torch.Tensor, *args, **kwargs) -> torch.Tensor:
        layer = self.layer()
        fusable = layer.training and torch.is_grad_enabled() and not (layer.merged or layer.disable_adapters)
        if not fusable or args or kwargs or layer.active_adapters != [self.adapter]:
            return self.peft_forward(layer, x, *args, **kwargs)
        base = layer.base_layer
        return FusedLoraLinear.apply(
            x, base.weight, base.bias, layer.lora_A[self.adapter].weight, layer.lora_B[self.adapter].weight,
            self.masks((x.numel() // x.shape[-1], x.shape[-1])),
        )


def use_fused_lora_training(model, seed: int) -> int:
    """Route every plain LoRA Linear (one adapter, fp32 nn.Linear base, no variant or LoRA bias)
    through FusedLoraLinear while training; returns how many. CPU only: the masks come from NumPy.
    Saving is unaffected (same parameters), and eval/no-grad calls take PEFT's own path."""
    from peft.tuners.lora.layer import Linear as LoraLinear

    rng = np.random.default_rng(seed)
    fused = 0
    for module in model.modules():
        plain = (
            type(module) is LoraLinear
            and len(module.lora_A) == 1
            and not module.lora_variant
            and not any(getattr(module, "lora_bias", {}).values())
            and type(module.base_layer) is torch.nn.Linear
            and module.base_layer.weight.dtype == torch.float32
        )
        if plain:
            module.forward = _FusedTrainingForward(module, rng)
            fused += 1
    return fused


class FlatTrainables:
    """The trainable parameters as views into one flat tensor, and their gradients into another.

    A LoRA model has two small matrices per adapted layer (56 on the embedded model), so gradient
    clipping and AdamW otherwise loop over 56 tensors a step. Over one flat tensor they are one
    kernel each and compute the same thing (AdamW is elementwise; the norm is over all gradients).
    Autograd accumulates into an existing `.grad` in place, so the views keep receiving gradients:
    zero them with `zero_grad`, never by setting them to None.
    """

    def __init__(self, params: Sequence[torch.nn.Parameter]):
        self.params = list(params)
        flat = torch.cat([p.detach().reshape(-1) for p in self.params])
        self.param = torch.nn.Parameter(flat)
        self.param.grad = torch.zeros_like(flat)
        offset = 0
        for p in self.params:
            count = p.numel()
            p.data = flat[offset : offset + count].view_as(p)
            p.grad = self.param.grad[offset : offset + count].view_as(p)
            offset += count

    def zero_grad(self) -> None:
        self.param.grad.zero_()

    def release(self) -> None:
        """Give every parameter its own storage again (a saved state dict must not alias)."""
        for p in self.params:
            p.data = p.data.clone()
            p.grad = None


def target_modules_for(model_type: str) -> list[str] | None:
    """Our LoRA targets for an architecture; None lets PEFT use its own default for other types."""
    return TARGET_MODULES.get(model_type)


def load_base_model(base_model: str | Path, revision: str | None, device: str, trust_remote_code: bool = False):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    dtype = torch.bfloat16 if device.startswith("cuda") else torch.float32
    kwargs = {"revision": revision, "trust_remote_code": trust_remote_code}
    tokenizer = AutoTokenizer.from_pretrained(str(base_model), **kwargs)
    model = AutoModelForCausalLM.from_pretrained(str(base_model), dtype=dtype, **kwargs).to(device)
    return model, tokenizer


def train_lora_adapter(
    base_model: str | Path,
    train_examples: Callable[[int], Pairs] | Pairs,
    valid_examples: Pairs,
    hp: LoraHyperParams,
    output_dir: Path,
    progress: Progress | None = None,
    *,
    revision: str | None = None,
    device: str = "auto",
    trust_remote_code: bool = False,
) -> LoraTrainResult:
    """Train a LoRA adapter and save it as a plain PEFT directory at `output_dir`, atomically.

    `train_examples` is either a fixed list of (prompt, completion) pairs or a function of the
    epoch (a fresh augmented variant per epoch). The completion is what the loss counts; the
    tokenizer's EOS is appended to it. Everything random is seeded by hp.seed, so two runs on the
    same data and device give the same adapter. `progress` gets a dict per optimizer step
    ({"event": "step", epoch, step, steps, loss}) and per epoch ({"event": "epoch", ..., token_accuracy,
    valid_loss}); throttling is the receiver's business (see core/progress.py).
    """
    from peft import LoraConfig, get_peft_model

    if isinstance(train_examples, list) and not train_examples:
        raise ValueError("no training examples")
    device = resolve_device(device)
    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    base_model = str(base_model)
    model, tokenizer = load_base_model(base_model, revision, device, trust_remote_code)
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

    torch.manual_seed(hp.seed)
    targets = target_modules_for(model.config.model_type)
    config = LoraConfig(
        r=hp.rank,
        lora_alpha=hp.alpha,
        lora_dropout=hp.dropout,
        # "default" is PEFT's own init (Kaiming-uniform A, zero B); other names are PEFT's named inits.
        init_lora_weights=hp.init if hp.init != "default" else True,
        target_modules=targets,
        task_type="CAUSAL_LM",
        revision=revision,
    )
    model = get_peft_model(model, config)
    if device == "cpu":
        use_fused_lora_training(model, hp.seed)
    trainable, total = model.get_nb_trainable_parameters()
    trainables = FlatTrainables([p for p in model.parameters() if p.requires_grad])
    params = [trainables.param]
    optimizer = torch.optim.AdamW(params, lr=hp.learning_rate, weight_decay=0.0, fused=True)
    plans = [length_grouped_batches(data, hp.batch_size, random.Random(f"{hp.seed}:{e}")) for e, data in enumerate(epoch_data)]
    total_steps = sum(len(plan) for plan in plans)
    scheduler = linear_decay(optimizer, total_steps)

    stats: list[EpochStats] = []
    step, tokens_seen, train_time = 0, 0, 0.0
    started = time.perf_counter()
    model.train()
    for epoch, (data, plan) in enumerate(zip(epoch_data, plans)):
        epoch_start = time.perf_counter()
        loss_sum, label_count, correct_sum, epoch_tokens = 0.0, 0, 0, 0
        for batch_ids in plan:
            batch = [data[i] for i in batch_ids]
            loss, n, correct = completion_loss(model, *collate(batch, pad_id, device))
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            optimizer.step()
            scheduler.step()
            trainables.zero_grad()
            step += 1
            loss_sum += loss.item() * n
            label_count += n
            correct_sum += int(correct)
            epoch_tokens += sum(len(e.ids) for e in batch)
            if progress:
                progress({"event": "step", "epoch": epoch + 1, "step": step, "steps": total_steps, "loss": loss.item()})
        train_time += time.perf_counter() - epoch_start
        tokens_seen += epoch_tokens
        valid_loss = evaluate_loss(model, valid, pad_id, device)
        stats.append(EpochStats(epoch + 1, loss_sum / label_count, correct_sum / label_count, valid_loss,
                                epoch_tokens, time.perf_counter() - epoch_start))
        if progress:
            progress({"event": "epoch", "epoch": epoch + 1, "step": step, "steps": total_steps,
                      "loss": stats[-1].train_loss, "token_accuracy": stats[-1].token_accuracy, "valid_loss": valid_loss})

    result = LoraTrainResult(
        epochs=stats,
        tokens_per_s=tokens_seen / train_time,
        wall_s=time.perf_counter() - started,
        peak_memory_mb=peak_memory_mb(device),
        data_version="",
        base_model=base_model,
        revision=revision,
        device=device,
        target_modules=sorted(model.peft_config["default"].target_modules),
        trainable_params=trainable,
        total_params=total,
        train_examples=len(epoch_data[0]),
        valid_examples=len(valid),
        truncated_examples=truncated,
        steps=step,
        hyper_params=hp,
    )
    trainables.release()
    with atomic_directory(output_dir) as staging:
        model.save_pretrained(staging)
        tokenizer.save_pretrained(staging)
        result.data_version = directory_hash(staging)
        (staging / TRAINING_LOG).write_text(json.dumps(result.to_dict(), ensure_ascii=False, indent=2), encoding="utf-8")
    return result


# ---------------------------------------------------------------------------------------------
# Loading (generation lives in core/generation.py)


def load_adapter(adapter_dir: str | Path, device: str = "cpu", trust_remote_code: bool = False):
    """(model, tokenizer) of a saved adapter with plain PEFT: the base model comes from adapter_config.json."""
    from peft import AutoPeftModelForCausalLM
    from transformers import AutoTokenizer

    device = resolve_device(device)
    dtype = torch.bfloat16 if device.startswith("cuda") else torch.float32
    model = AutoPeftModelForCausalLM.from_pretrained(str(adapter_dir), dtype=dtype, trust_remote_code=trust_remote_code)
    tokenizer = AutoTokenizer.from_pretrained(str(adapter_dir), trust_remote_code=trust_remote_code)
    return model.to(device).eval(), tokenizer
