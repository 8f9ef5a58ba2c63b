"""Run configuration shared by the asset modules: the pool that training and generation steps take, and
Config classes built from the core recipes so that a LoRA
hyper-parameter or a sampling setting is declared once (core/recipes.LoraHyperParams,
core/generation.SamplingSettings) and only described here.

No `from __future__ import annotations`: Dagster reads these classes' annotations at run time.
"""

from dataclasses import fields
from typing import Any

import dagster as dg
from pydantic import Field, create_model

from ohlora_assets.core.recipes import LoraHyperParams

# One slot (deploy/local/dagster.yaml): two trainings or generations never share the accelerator.
ACCELERATOR_POOL = "accelerator"
# Who answers for the assets, and the libraries each group runs on (the UI shows them as owners and kinds).
OWNERS = ["team:ohlora-ml"]
KINDS = {
    "data": {"pandas", "pandera"},
    "models": {"pytorch", "huggingface"},
    "ethics": {"pytorch", "huggingface"},
    "reports": {"pytorch", "huggingface", "pandas"},
    "serving": {"python"},
}

_LORA_DESCRIPTIONS = {
    "rank": "LoRA rank",
    "alpha": "LoRA alpha",
    "dropout": "LoRA dropout",
    "init": "LoRA init (PEFT init_lora_weights; 'default' is PEFT's own)",
    "learning_rate": "AdamW learning rate, linear decay; empty: the profile's (core/recipes.LORA_LEARNING_RATES)",
    "epochs": "training epochs; empty: the recipe's (core/recipes.py), capped in the smoke profile",
    "batch_size": "examples per optimizer step",
    "seed": "seeds LoRA init, dropout and batch order",
    "max_length": "tokens per example (the prompt is cut first)",
    "grad_accumulation": "micro-batches of batch_size per optimizer step (effective batch = batch_size x this)",
    "gradient_checkpointing": "recompute activations in the backward pass: less memory, slower (large bases on GPU)",
}
# Left empty by default: the profile decides (Budget.adapter / Budget.experiment).
_PROFILE_DEFAULTS = {"learning_rate": float | None, "epochs": int | None}


def lora_fields(recipe: LoraHyperParams, omit: tuple[str, ...] = ()) -> dict[str, Any]:
    """pydantic field definitions of every LoraHyperParams field, defaulting to `recipe`."""
    result: dict[str, Any] = {}
    for field in fields(LoraHyperParams):
        if field.name in omit:
            continue
        description = _LORA_DESCRIPTIONS[field.name]
        if field.name in _PROFILE_DEFAULTS:
            result[field.name] = (_PROFILE_DEFAULTS[field.name], Field(default=None, description=description))
        else:
            result[field.name] = (type(getattr(recipe, field.name)), Field(default=getattr(recipe, field.name), description=description))
    return result


def lora_config_class(
    name: str, recipe: LoraHyperParams, base: type[dg.Config] = dg.Config, omit: tuple[str, ...] = (), **extra: Any
) -> type[dg.Config]:
    """A run-config class with the LoRA fields of `recipe` but `omit` (learning rate and epochs empty: the
    profile's) and `extra` pydantic field definitions, which replace LoRA fields of the same name."""
    return create_model(name, __base__=base, **lora_fields(recipe, omit=omit + tuple(extra)), **extra)


def chosen_hyper_params(config: dg.Config, **fixed: Any) -> dict[str, Any]:
    """The LoRA fields a run config sets (None: the recipe's or the profile's), with `fixed` values on top."""
    return {**{f.name: getattr(config, f.name, None) for f in fields(LoraHyperParams)}, **fixed}


class SamplingConfig(dg.Config):
    """How answers are drawn (core/generation.SamplingSettings)."""

    temperature: float = Field(default=0.6, description="sampling temperature (the original's)")
    max_new_tokens: int = Field(default=96, description="tokens per answer before it counts as unterminated")
    max_retries: int = Field(default=3, description="new tries for an empty or malformed answer")
    prompt_batch_size: int = Field(default=64, description="prompts per generate call")
    seed: int = Field(default=0, description="seeds the sampling")
    repetition_penalty: float | None = Field(
        default=None, description="divides the logits of tokens the answer already holds; empty: the task's"
    )

    def settings(self):
        from ohlora_assets.core.generation import SamplingSettings

        return SamplingSettings(
            temperature=self.temperature, max_new_tokens=self.max_new_tokens, max_retries=self.max_retries,
            prompt_batch_size=self.prompt_batch_size, seed=self.seed, repetition_penalty=self.repetition_penalty,
        )


class GateConfig(dg.Config):
    """How much worse than the serving version a candidate may be (core/promotion.Tolerances): run config of the
    reports, which judge the candidate and record these beside its figures for the promotion to decide with. The
    smoke profile's models are too small to judge: there every tolerance is open and only "loads, and training
    lowered the loss" decides."""

    # Rates, floors and tolerances are shares in [0, 1] (0.05, not 5): a value outside lets any candidate serve.
    quality_rate_tolerance: float = Field(default=0.05, ge=0, le=1, description="absolute, per failure-mode rate")
    min_end_mark_rate: float = Field(
        default=1.0, ge=0, le=1, description="share of check prompts that must stop at the end mark"
    )
    ethics_accuracy_tolerance: float = Field(default=0.02, ge=0, le=1, description="accuracy below serving allowed")
    ethics_recall_tolerance: float = Field(
        default=0.05, ge=0, le=1, description="per-category recall below serving allowed"
    )
    accuracy_floor: float = Field(default=0.80, ge=0, le=1, description="ethics accuracy no version may fall under")
    recall_floor: float = Field(default=0.50, ge=0, le=1, description="per-category recall no version may fall under")

    def tolerances(self, smoke: bool):
        from ohlora_assets.core.promotion import Tolerances

        if smoke:
            return Tolerances(quality_rate=1.0, min_end_mark_rate=0.0, ethics_accuracy=1.0, ethics_recall=1.0,
                              accuracy_floor=0.0, recall_floor=0.0)
        return Tolerances(
            quality_rate=self.quality_rate_tolerance, min_end_mark_rate=self.min_end_mark_rate,
            ethics_accuracy=self.ethics_accuracy_tolerance, ethics_recall=self.ethics_recall_tolerance,
            accuracy_floor=self.accuracy_floor, recall_floor=self.recall_floor,
        )


class PromotionConfig(dg.Config):
    """What a promotion asset keeps; it decides with the tolerances the candidate's report judged it by."""

    keep_versions: int = Field(
        default=5, ge=0, description="versions kept besides the serving one and its rollback target"
    )
