"""Train one model into a new registry version and describe it: the one training path of every launcher.

The training assets call these functions in process; `ohlora_assets.pipes_training` calls them inside a
Dagster Pipes session on another machine. Both get the same `TrainedVersion`: the version written, its data
version (the weights' hash; with the base's identity for a base of the user's own) and metadata as plain values,
where `Markdown` and `Path` values say how to show them (`ohlora_assets.launchers` turns them into Dagster
metadata, the Pipes entry point into Pipes metadata).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from ohlora_assets.core.base_models import ETHICS_OVERRIDE, BaseModelRef, base_model_revision, relocated
from ohlora_assets.core.device import limit_torch_threads, resolve_device
from ohlora_assets.core.formats import training_pairs
from ohlora_assets.core.io import atomic_write_bytes, directory_hash
from ohlora_assets.core.progress import Progress
from ohlora_assets.core.recipes import Budget
from ohlora_assets.core.registry import ModelRegistry
from ohlora_assets.core.render import loss_curve_png, markdown_table, png_with_path
from ohlora_assets.core.tracking import tracking_run

ETHICS_MODEL = "ethics_sbert_model"
VERSION_KEY = "version"


class Markdown(str):
    """A metadata value shown as Markdown."""


class Url(str):
    """A metadata value shown as a link."""


class Table(list):
    """A metadata value shown as a sortable table: a list of rows (dicts of plain values)."""


# In a version's notes: trained on smoke budgets, promoted through an open gate (configs.GateConfig.tolerances).
SMOKE_NOTE = " (smoke budgets: served through an open gate)"


def _rounded(value: float | None, digits: int = 4) -> float | None:
    """A float for reading (`digits` significant digits)."""
    return None if value is None else float(f"{value:.{digits}g}")


@dataclass(frozen=True)
class TrainingProfile:
    """What a training needs from the model profile (resources.ModelProfile), as plain values."""

    name: str = "embedded"
    smoke: bool = False
    device: str = "auto"
    base_model_overrides: dict[str, str] = field(default_factory=dict)
    trust_remote_code: bool = False

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class TrainedVersion:
    version: str
    path: Path
    data_version: str
    metadata: dict[str, Any]


# The MLflow tag that names the registry version a tracked training wrote.
VERSION_TAG = "ohlora.version"


def _tracked(tracked) -> dict[str, Any]:
    """The MLflow run for the metadata, when tracking is on (core/tracking.py): its address, its id, or why this
    training was not (wholly) tracked."""
    if tracked.problem:
        return {"mlflow_run": f"not tracked: {tracked.problem}"}
    if tracked.run_url:
        return {"mlflow_run": Url(tracked.run_url)}
    return {"mlflow_run": tracked.run_id} if tracked.run_id else {}


def adapter_name(task: str) -> str:
    return f"adapter_{task}"


def _saved_png(path: Path, png: bytes, alt: str) -> Markdown:
    """Save the PNG atomically at `path`; Markdown that shows it inline (a data URI), with the path beneath."""
    atomic_write_bytes(path, png)
    return Markdown(png_with_path(png, alt, path))


def train_adapter_version(
    task: str,
    split: pd.DataFrame,
    augmented: pd.DataFrame | None,
    base: BaseModelRef,
    configured: dict[str, Any],
    profile: TrainingProfile,
    artifact_root: Path,
    progress: Progress | None,
    log: Callable[[str], None],
) -> TrainedVersion:
    """Train the task's LoRA adapter (`configured`: the run config's LoRA fields, None = recipe's) into a new
    version of its registry under `<artifact_root>/models`, and describe it; `log` gets one line on its inputs."""
    limit_torch_threads()
    from ohlora_assets.core.lora import train_lora_adapter

    name = adapter_name(task)
    base = relocated(base, artifact_root / "models")
    budget = Budget.on(profile.name, profile.smoke, profile.device)
    hp = budget.adapter(task, configured, base.source)
    train, valid, train_rows = training_pairs(
        split, augmented, budget.limit("adapter_train_rows"), budget.limit("adapter_valid_rows")
    )
    log(f"{name}: {train_rows} train rows, {len(valid)} labelled valid rows, base {base.model}")
    registry = ModelRegistry(artifact_root / "models", name)
    params = {**vars(hp), "base_model": base.model, "profile": profile.name, "smoke": profile.smoke}
    with tracking_run(name, params) as tracked:
        with registry.write_version(notes=f"base {base.model}{SMOKE_NOTE if profile.smoke else ''}") as pending:
            # A killed training resumes from its last finished epoch (the checkpoint names its base and data).
            result = train_lora_adapter(
                base.spec(profile.device, profile.trust_remote_code), train, valid, hp, pending.path,
                tracked.progress(progress), checkpoint_dir=artifact_root / "checkpoints" / name,
            )
            pending.metrics = {"first_train_loss": result.first_train_loss, "final_train_loss": result.final_train_loss,
                               "final_valid_loss": result.epochs[-1].valid_loss}
            if base.source in ("local", "hub"):
                # A version is its weights and the base it applies to (adapter_config.json names it): the same
                # weights trained on a base moved to another folder must not reuse the version that names the
                # old one. (The pipeline's own bases live in base_models versions, which change with their weights.)
                weights = directory_hash(pending.path)
                pending.data_version = hashlib.sha256(f"{weights}|{base.model}|{base.revision}".encode()).hexdigest()
        directory = registry.get(pending.version).path
        tracked.set_tags({VERSION_TAG: pending.version})
        tracked.log_artifact_dir(directory, "adapter")
    epochs = [e.epoch for e in result.epochs]
    curves = {"train": (epochs, [e.train_loss for e in result.epochs])}
    if result.epochs[-1].valid_loss is not None:
        curves["valid"] = (epochs, [e.valid_loss for e in result.epochs])
    metadata = {
        "hyper_parameters": Markdown(markdown_table([{"name": k, "value": v} for k, v in vars(hp).items()])),
        "budget_caps": Table([{"ceiling": k, "value": v} for k, v in vars(budget.caps).items() if v is not None])
        if budget.caps else "none: the recipes as they are",
        "base_model": base.model,
        "base_model_revision": base_model_revision(base),
        "base_model_source": base.source,
        "per_epoch": Table(vars(e) for e in result.epochs),
        # Beside the version's other reports: a candidate the gate refuses must not replace the serving one's.
        "loss_curve": _saved_png(
            artifact_root / "reports" / name / pending.version / "loss_curve.png", loss_curve_png(curves, "epoch"),
            "loss curve",
        ),
        "first_epoch_train_loss": _rounded(result.first_train_loss),
        "final_train_loss": _rounded(result.final_train_loss),
        "final_token_accuracy": _rounded(result.epochs[-1].token_accuracy),
        "final_valid_loss": _rounded(result.epochs[-1].valid_loss) if result.valid_examples else None,
        "tokens_per_s": round(result.tokens_per_s, 1),
        "wall_s": round(result.wall_s, 1),
        "peak_memory_mb": round(result.peak_memory_mb, 1),
        "device": result.device,
        "train_examples": result.train_examples,
        "valid_examples_with_labels": result.valid_examples,
        "truncated_examples": result.truncated_examples,
        "steps": result.steps,
        "resumed_epochs": result.resumed_epochs,
        "trainable_params": result.trainable_params,
        "target_modules": ", ".join(result.target_modules),
        "path": directory,
        VERSION_KEY: pending.version,
        **_tracked(tracked),
    }
    return TrainedVersion(pending.version, directory, result.data_version, metadata)


def train_ethics_version(
    pairs: pd.DataFrame, profile: TrainingProfile, artifact_root: Path, progress: Progress | None = None
) -> TrainedVersion:
    """Fine-tune the S-BERT ethics model on the train pairs into a new version of its registry, and describe it."""
    limit_torch_threads()
    from ohlora_assets.core.ethics.training import train_ethics_model

    registry = ModelRegistry(artifact_root / "models", ETHICS_MODEL)
    with tracking_run(ETHICS_MODEL, {"profile": profile.name, "smoke": profile.smoke}) as tracked:
        with registry.write_version(notes=f"profile {profile.name}{SMOKE_NOTE if profile.smoke else ''}") as pending:
            trained = train_ethics_model(
                pairs,
                pending.path,
                profile=profile.name,
                smoke=profile.smoke,
                override=profile.base_model_overrides.get(ETHICS_OVERRIDE),
                device=resolve_device(profile.device),
                trust_remote_code=profile.trust_remote_code,
                progress=tracked.progress(progress),
            )
        target = registry.get(pending.version).path
        tracked.set_tags({VERSION_TAG: pending.version})
        tracked.log_artifact_dir(target, "model")
    history = trained.history
    curve = pd.DataFrame(
        {
            "epoch": range(1, len(history.train_loss) + 1),
            "train_loss": history.train_loss,
            "valid_loss": history.valid_loss,
            "valid_accuracy": history.valid_accuracy,
        }
    )
    metadata = {
        "path": target,
        VERSION_KEY: pending.version,
        "base_model": trained.base,
        "profile": profile.name + (" (smoke)" if profile.smoke else ""),
        "train_prompts": history.train_prompts,
        "valid_prompts": history.valid_prompts,
        "epochs": trained.settings.epochs,
        "learning_rate": trained.settings.learning_rate,
        "seed": trained.settings.seed,
        "forward_precision": "bf16 autocast" if trained.settings.bf16 else "fp32",
        "final_valid_loss": float(history.valid_loss[-1]),
        "final_valid_accuracy": float(history.valid_accuracy[-1]),
        "training_seconds": round(history.seconds, 1),
        "loss_per_epoch": Table(curve.to_dict("records")),
        **_tracked(tracked),
    }
    return TrainedVersion(pending.version, target, directory_hash(target), metadata)
