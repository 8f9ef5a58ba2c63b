"""Group `models`: the base model of each task and the four LoRA adapters (one factory).

Training happens in core/base_lm.py and core/lora.py; this module reads inputs, calls them, and
turns their results into metadata. torch, transformers and peft are imported inside the asset
bodies so that loading the definitions stays fast.

No `from __future__ import annotations` here: Dagster reads the per-task Config classes from the
asset functions' annotations, which must therefore be real objects, not strings.
"""

import hashlib
import json
from pathlib import Path

import dagster as dg
import pandas as pd
from pydantic import Field, create_model

from ohlora_assets.core.formats import TASK_FORMATS, TASKS
from ohlora_assets.core.io import directory_hash
from ohlora_assets.core.progress import ProgressReporter
from ohlora_assets.core.device import limit_torch_threads
from ohlora_assets.metadata import saved_png
from ohlora_assets.resources import ArtifactStore, ModelProfile

GROUP = "models"
POOL = "accelerator"  # one slot (deploy/local/dagster.yaml): two trainings never share a GPU
EMBEDDED_LM = "embedded_lm"

# The original system's base models (the `full` profile); `profile.base_model_overrides` replaces any.
FULL_BASE_MODELS = {
    "output_message": "kakaocorp/kanana-1.5-2.1b-instruct-2505",
    "summary": "kakaocorp/kanana-1.5-2.1b-base",
    "memory": "EleutherAI/polyglot-ko-1.3b",
    "eyes_mouth_pose": "EleutherAI/polyglot-ko-1.3b",
}

# The original hyper-parameters per task: (LoRA rank, epochs, batch size).
ADAPTER_DEFAULTS = {
    "output_message": (16, 5, 2),
    "summary": (64, 10, 2),
    "memory": (64, 20, 4),
    "eyes_mouth_pose": (64, 30, 4),
}

# The embedded base (~2M parameters) overfits memory's 20 original epochs: the adapter then repeats a training
# row's memory item for unrelated prompts (copied-answer rate 0.122 at 20 epochs, 0.075 at 10, same checks green).
EMBEDDED_EPOCHS = {"memory": 10}

# The original learning rate suits 1-2B-parameter bases; the embedded base has ~2M parameters and needs
# larger steps (summary, 10 epochs on it: train loss 2.67 -> 2.38 at 3e-4, 2.67 -> 1.59 at 2e-3).
LEARNING_RATES = {"full": 3e-4, "embedded": 2e-3}

# profile.smoke: enough to run every code path (and the loss check, which needs two epochs) in seconds.
SMOKE_EPOCHS = 2
SMOKE_TRAIN_ROWS = 48
SMOKE_VALID_ROWS = 16
CHECK_PROMPTS = 10
# Near-greedy: the check asks whether the adapter's most likely answer has the format; how often
# sampled answers derail is the quality reports' business.
CHECK_TEMPERATURE = 0.1


def _progress_callback(log, label: str, epochs: int | None = None):
    """Feeds the trainers' per-step events to the throttled ProgressReporter (created on the first
    event, which carries the step total)."""
    reporter: list[ProgressReporter] = []

    def on_event(event: dict) -> None:
        if not reporter:
            reporter.append(ProgressReporter(log, total_steps=event["steps"], total_epochs=epochs, label=label))
        if event["event"] == "step":
            reporter[0].step(loss=event["loss"])
        else:
            extra = {"token_acc": event["token_accuracy"]}
            if event["valid_loss"] is not None:
                extra["valid_loss"] = event["valid_loss"]
            reporter[0].epoch_end(loss=event["loss"], **extra)

    return on_event


def _md_table(rows: list[dict]) -> dg.MetadataValue:
    # Floats formatted per cell: a table-wide floatfmt would also print the epoch numbers as floats.
    cells = [{k: f"{v:.4g}" if isinstance(v, float) else v for k, v in row.items()} for row in rows]
    return dg.MetadataValue.md(pd.DataFrame(cells).to_markdown(index=False))


def _loss_plot(path: Path, curves: dict[str, tuple[list[float], list[float]]], xlabel: str) -> dg.MetadataValue:
    """Save a loss-curve PNG at `path` and return Markdown that shows it inline in the UI."""
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(6, 3.5), dpi=100)
    for label, (xs, ys) in curves.items():
        axes.plot(xs, ys, marker="o", markersize=3, label=label)
    axes.set_xlabel(xlabel)
    axes.set_ylabel("loss (nats/token)")
    axes.grid(alpha=0.3)
    axes.legend()
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    plt.close(figure)
    return saved_png(path, buffer.getvalue(), "loss curve")


# --- base models ------------------------------------------------------------------------------


def _override(value: str) -> dict:
    """An override is a local directory, or a hub id with an optional `@revision`."""
    if Path(value).is_dir():
        return {"model": str(Path(value).resolve()), "revision": None, "source": "local"}
    model, _, revision = value.partition("@")
    return {"model": model, "revision": revision or None, "source": "hub"}


@dg.asset(group_name=GROUP, code_version="2", pool=POOL)
def base_models(
    context: dg.AssetExecutionContext,
    store: ArtifactStore,
    profile: ModelProfile,
    dialogue_dataset: pd.DataFrame,
    ml_qa_dataset: pd.DataFrame,
) -> dg.Output:
    """The base model of each task: {task: {"model", "revision", "source"}}.

    `embedded`: a BPE tokenizer and a tiny Llama pretrained here, offline, on the train rows'
    texts (raw and task-formatted); every task maps to its absolute directory. `full`: the
    original hub models (nothing is downloaded until an adapter trains). In both profiles
    `profile.base_model_overrides` replaces a task's model with a local directory or `hub_id@revision`.
    """
    overrides = {task: _override(value) for task, value in profile.base_model_overrides.items()}
    unknown = set(overrides) - set(TASKS)
    if unknown:
        raise dg.Failure(f"base_model_overrides names unknown tasks {sorted(unknown)}; tasks are {list(TASKS)}")
    metadata: dict[str, object] = {}
    if profile.name == "embedded":
        limit_torch_threads()
        from ohlora_assets.core.base_lm import PretrainSpec, build_embedded_lm, pretraining_corpus

        spec = PretrainSpec.smoke() if profile.smoke else PretrainSpec()
        directory = store.model_dir("base_models") / EMBEDDED_LM
        texts = pretraining_corpus(dialogue_dataset, ml_qa_dataset)
        result = build_embedded_lm(
            texts, spec, directory, progress=_progress_callback(context.log.info, "embedded_lm pretraining"),
            device=profile.device,
        )
        defaults = {task: {"model": str(directory.resolve()), "revision": None, "source": "embedded"} for task in TASKS}
        steps, losses = zip(*result.loss_curve)
        metadata = {
            "parameters": result.parameters,
            "vocab_size": result.vocab_size,
            "corpus_texts": result.corpus_texts,
            "corpus_tokens": result.corpus_tokens,
            "pretraining": _md_table([{"field": k, "value": v} for k, v in vars(spec).items()]),
            "pretraining_wall_s": round(result.wall_s, 1),
            "tokens_per_s": round(result.tokens_per_s, 1),
            "peak_memory_mb": round(result.peak_memory_mb, 1),
            "first_loss": result.first_loss,
            "final_loss": result.final_loss,
            "loss_curve": _loss_plot(
                store.report_dir("base_models") / "pretraining_loss.png", {"pretraining": (steps, losses)}, "step"
            ),
            "path": dg.MetadataValue.path(str(directory)),
        }
        version = result.data_version
    elif profile.name == "full":
        defaults = {task: {"model": model, "revision": None, "source": "hub"} for task, model in FULL_BASE_MODELS.items()}
        version = ""
    else:
        raise dg.Failure(f"unknown profile {profile.name!r}: use 'embedded' or 'full'")
    models = {**defaults, **overrides}
    version = hashlib.sha256((version + json.dumps(models, sort_keys=True)).encode()).hexdigest()
    table = [{"task": task, **models[task]} for task in TASKS]
    return dg.Output(
        models,
        data_version=dg.DataVersion(version),
        metadata={"profile": profile.name, "base_models": _md_table(table), **metadata},
    )


# --- adapters: one factory for the four tasks -------------------------------------------------


def _revision(base: dict) -> str:
    """A hub model's requested revision; for a local directory, the hash of its weights."""
    if base["source"] == "hub":
        return base["revision"] or "main"
    return "sha256:" + directory_hash(base["model"])[:16]


def _config_class(task: str) -> type[dg.Config]:
    """Run config of one adapter, defaulting to the task's original hyper-parameters."""
    rank, epochs, batch_size = ADAPTER_DEFAULTS[task]
    return create_model(
        f"{''.join(part.title() for part in task.split('_'))}AdapterConfig",
        __base__=dg.Config,
        rank=(int, Field(default=rank, description="LoRA rank")),
        alpha=(int, Field(default=16, description="LoRA alpha")),
        dropout=(float, Field(default=0.05, description="LoRA dropout")),
        init=(str, Field(default="gaussian", description="LoRA init (PEFT init_lora_weights)")),
        learning_rate=(
            float | None,
            Field(default=None, description="AdamW learning rate, linear decay; empty: the profile's (LEARNING_RATES)"),
        ),
        epochs=(
            int | None,
            Field(
                default=None,
                description=f"training epochs; empty: the original {epochs} (EMBEDDED_EPOCHS on the embedded profile), "
                "capped in the smoke profile",
            ),
        ),
        batch_size=(int, Field(default=batch_size, description="examples per optimizer step")),
        seed=(int, Field(default=0, description="seeds LoRA init, dropout and batch order")),
        max_length=(int, Field(default=256, description="tokens per example (the prompt is cut first)")),
    )


def adapter_epochs(task: str, profile: str, smoke: bool, configured: int | None) -> int:
    """The configured epochs, else the task's original count (EMBEDDED_EPOCHS on the embedded profile); capped in smoke."""
    epochs = configured or (EMBEDDED_EPOCHS.get(task) if profile == "embedded" else None) or ADAPTER_DEFAULTS[task][1]
    return min(epochs, SMOKE_EPOCHS) if smoke else epochs


def _pairs(frame: pd.DataFrame) -> list[tuple[str, str]]:
    return list(zip(frame["prompt"], frame["completion"]))


def adapter_training_data(task: str, split: pd.DataFrame, augmented: pd.DataFrame | None, smoke: bool):
    """(train examples: a list, or a function of the epoch; labelled validation pairs; row counts)."""
    train = split[split["split"] == "train"]
    valid = split[(split["split"] == "valid") & split["has_label"]]
    if smoke:
        train, valid = train.head(SMOKE_TRAIN_ROWS), valid.head(SMOKE_VALID_ROWS)
    if augmented is None:
        return _pairs(train), _pairs(valid), len(train)
    augmented = augmented[augmented["source_row"].isin(train["source_row"])]
    variants = [_pairs(augmented[augmented["epoch"] == e]) for e in sorted(augmented["epoch"].unique())]
    # More epochs than variants: epoch k trains on variant k % E.
    return (lambda epoch: variants[epoch % len(variants)]), _pairs(valid), len(variants[0])


def _adapter_asset(task: str) -> dg.AssetsDefinition:
    name = f"adapter_{task}"
    Config = _config_class(task)
    ins = {"base_models": dg.AssetIn("base_models"), "split": dg.AssetIn(f"{task}_split")}
    if task == "output_message":
        ins["augmented"] = dg.AssetIn("augmented_output_message_train")

    @dg.asset(
        name=name,
        group_name=GROUP,
        code_version="3",
        pool=POOL,
        ins=ins,
        description=(
            f"LoRA adapter for `{task}` as a plain PEFT directory (adapter_config.json, adapter_model.safetensors, "
            f"tokenizer); loss only on the completion after `### 답변:` up to `{TASK_FORMATS[task].end_mark}` and EOS."
            + (" Trains on a fresh synonym-augmented variant each epoch." if task == "output_message" else "")
        ),
    )
    def _adapter(
        context: dg.AssetExecutionContext,
        config: Config,
        store: ArtifactStore,
        profile: ModelProfile,
        base_models: dict,
        split: pd.DataFrame,
        **augmented: pd.DataFrame,
    ) -> dg.MaterializeResult:
        limit_torch_threads()
        from ohlora_assets.core.lora import LoraHyperParams, train_lora_adapter

        chosen = config.model_dump()
        chosen["learning_rate"] = config.learning_rate or LEARNING_RATES[profile.name]
        chosen["epochs"] = adapter_epochs(task, profile.name, profile.smoke, config.epochs)
        hp = LoraHyperParams(**chosen)
        train, valid, train_rows = adapter_training_data(task, split, augmented.get("augmented"), profile.smoke)
        base = base_models[task]
        context.log.info(f"{name}: {train_rows} train rows, {len(valid)} labelled valid rows, base {base['model']}")
        directory = store.model_dir(name)
        result = train_lora_adapter(
            base["model"], train, valid, hp, directory,
            progress=_progress_callback(context.log.info, name, hp.epochs),
            revision=base["revision"], device=profile.device, trust_remote_code=profile.trust_remote_code,
        )
        epochs = [vars(e) for e in result.epochs]
        curves = {"train": ([e.epoch for e in result.epochs], [e.train_loss for e in result.epochs])}
        if result.epochs[-1].valid_loss is not None:
            curves["valid"] = ([e.epoch for e in result.epochs], [e.valid_loss for e in result.epochs])
        return dg.MaterializeResult(
            data_version=dg.DataVersion(result.data_version),
            metadata={
                "hyper_parameters": _md_table([{"name": k, "value": v} for k, v in vars(hp).items()]),
                "smoke_caps": profile.smoke,
                "base_model": base["model"],
                "base_model_revision": _revision(base),
                "base_model_source": base["source"],
                "per_epoch": _md_table(epochs),
                "loss_curve": _loss_plot(store.report_dir(name) / "loss_curve.png", curves, "epoch"),
                "first_epoch_train_loss": result.first_train_loss,
                "final_train_loss": result.final_train_loss,
                "final_token_accuracy": result.epochs[-1].token_accuracy,
                "final_valid_loss": result.epochs[-1].valid_loss if result.valid_examples else None,
                "tokens_per_s": round(result.tokens_per_s, 1),
                "wall_s": round(result.wall_s, 1),
                "peak_memory_mb": round(result.peak_memory_mb, 1),
                "device": result.device,
                "train_examples": result.train_examples,
                "valid_examples_with_labels": result.valid_examples,
                "truncated_examples": result.truncated_examples,
                "steps": result.steps,
                "trainable_params": result.trainable_params,
                "target_modules": ", ".join(result.target_modules),
                "path": dg.MetadataValue.path(str(directory)),
            },
        )

    return _adapter


def _adapter_checks(task: str) -> list[dg.AssetChecksDefinition]:
    name = f"adapter_{task}"
    fmt = TASK_FORMATS[task]

    @dg.asset_check(
        asset=name,
        name="generates_to_end_mark",
        additional_ins={"split": dg.AssetIn(f"{task}_split")},
        pool=POOL,
        description=(
            f"The saved adapter loads with plain PEFT and, for {CHECK_PROMPTS} validation prompts, generates "
            f"(near-greedy, temperature {CHECK_TEMPERATURE}) an answer that stops at `{fmt.end_mark}`"
            + (" (an empty memory is a valid answer)." if task == "memory" else " with non-empty text before it.")
        ),
    )
    def _generates(store: ArtifactStore, profile: ModelProfile, split: pd.DataFrame) -> dg.AssetCheckResult:
        limit_torch_threads()
        from ohlora_assets.core.generation import SamplingSettings, generate_answers, merged_for_inference
        from ohlora_assets.core.lora import load_adapter

        model, tokenizer = load_adapter(store.model_dir(name), profile.device, profile.trust_remote_code)
        prompts = split.loc[split["split"] == "valid", "prompt"].head(CHECK_PROMPTS).tolist()
        # An answer longer than every training answer has failed to stop: no need to wait longer.
        completions = split.loc[split["split"] == "train", "completion"].tolist()
        longest = max(len(ids) for ids in tokenizer(completions, add_special_tokens=False)["input_ids"])
        settings = SamplingSettings(temperature=CHECK_TEMPERATURE, max_new_tokens=longest + 8, max_retries=0)
        run = generate_answers(merged_for_inference(model), tokenizer, prompts, task, 1, settings)
        rows = [
            {
                "prompt": prompt,
                "generated": answer.raw,
                "ok": fmt.end_mark in answer.raw and (task == "memory" or answer.answer != ""),
            }
            for prompt, answer in zip(prompts, run.answers)
        ]
        stopped = sum(row["ok"] for row in rows)
        return dg.AssetCheckResult(
            passed=len(rows) == CHECK_PROMPTS and stopped == len(rows),
            # Smoke budgets are too small to learn the format: there a miss is a warning, not an error.
            severity=dg.AssetCheckSeverity.WARN if profile.smoke else dg.AssetCheckSeverity.ERROR,
            metadata={
                "prompts": len(rows),
                "stopped_at_end_mark": stopped,
                "well_formed": sum(a.valid for a in run.answers),
                "max_new_tokens": settings.max_new_tokens,
                "samples": _md_table(rows),
            },
        )

    @dg.asset_check(asset=name, name="loss_decreased", description="The final epoch's train loss is below the first's.")
    def _loss_decreased(store: ArtifactStore) -> dg.AssetCheckResult:
        from ohlora_assets.core.lora import read_training_log

        log = read_training_log(store.model_dir(name))
        return dg.AssetCheckResult(
            passed=len(log.epochs) >= 2 and log.final_train_loss < log.first_train_loss,
            metadata={"epochs": len(log.epochs), "first": log.first_train_loss, "final": log.final_train_loss},
        )

    return [_generates, _loss_decreased]


adapter_assets = [_adapter_asset(task) for task in TASKS]
adapter_checks = [check for task in TASKS for check in _adapter_checks(task)]
