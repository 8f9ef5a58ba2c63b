"""Group `models`: the four LoRA adapters (one factory) and their blocking checks.

Training is core/lora/; recipes and budgets are core/recipes.py. Every training writes a
new immutable version (core/registry.py); the blocking checks judge that version, and only the promotion
assets (assets/serving.py) let it serve. An asset here reads its inputs, calls one core function, and turns
the result into metadata.

No `from __future__ import annotations` here: Dagster reads the per-task Config classes from the
asset functions' annotations, which must therefore be real objects, not strings.
"""


import dagster as dg
import pandas as pd

from ohlora_assets.configs import ACCELERATOR_POOL, KINDS, OWNERS, chosen_hyper_params, lora_config_class
from ohlora_assets.core.base_models import BaseModelRef
from ohlora_assets.core.device import limit_torch_threads
from ohlora_assets.core.formats import TASK_FORMATS, TASKS
from ohlora_assets.core.progress import ProgressReporter
from ohlora_assets.core.model_training import train_adapter_version
from ohlora_assets.core.recipes import ADAPTER_RECIPES
from ohlora_assets.launchers import LauncherConfig, artifact_root, materialized, run_through_pipes, training_profile
from ohlora_assets.metadata import md_table
from ohlora_assets.resources import ArtifactStore, ModelProfile
from ohlora_assets.versions import VERSION_KEY, candidate, registry

GROUP = "models"
CHECK_PROMPTS = 10
# Near-greedy: the check asks whether the adapter's most likely answer has the format; how often
# sampled answers derail is the quality reports' business.
CHECK_TEMPERATURE = 0.1


def _adapter_asset(task: str) -> dg.AssetsDefinition:
    name = f"adapter_{task}"
    Config = lora_config_class(
        f"{''.join(part.title() for part in task.split('_'))}AdapterConfig", ADAPTER_RECIPES[task], base=LauncherConfig
    )
    augmented_asset = "augmented_output_message_train" if task == "output_message" else None
    ins = {"base_models": dg.AssetIn("base_models"), "split": dg.AssetIn(f"{task}_split")}
    if augmented_asset:
        ins["augmented"] = dg.AssetIn(augmented_asset)

    def materialize(context, config, store: ArtifactStore, profile: ModelProfile, pipes_client, base_models: dict, split,
                    augmented=None):
        hyper_params = chosen_hyper_params(config)
        if config.launcher == "pipes":
            return run_through_pipes(
                context, pipes_client, store, profile, ["adapter", task], {"split": split, "augmented": augmented},
                base_model=base_models[task], hyper_params=hyper_params,
            )
        return materialized(train_adapter_version(
            task, split, augmented, BaseModelRef(**base_models[task]), hyper_params, training_profile(profile),
            artifact_root(store), ProgressReporter(context.log.info, label=name), context.log.info,
        ))

    spec = dict(
        name=name,
        group_name=GROUP, kinds=KINDS[GROUP], owners=OWNERS,
        code_version="3",
        pool=ACCELERATOR_POOL,
        ins=ins,
        description=(
            f"LoRA adapter for `{task}` as a plain PEFT directory (adapter_config.json, adapter_model.safetensors, "
            f"tokenizer); loss only on the completion after `### 답변:` up to `{TASK_FORMATS[task].end_mark}` and EOS."
            + (f" Trains on a fresh variant of `{augmented_asset}` each epoch." if augmented_asset else "")
        ),
    )
    # Only adapter_output_message reads the augmented train split: its signature says so.
    if augmented_asset:

        @dg.asset(**spec)
        def _adapter(
            context: dg.AssetExecutionContext, config: Config, store: ArtifactStore, profile: ModelProfile,
            pipes_client: dg.ResourceParam[dg.PipesClient], base_models: dict, split: pd.DataFrame, augmented: pd.DataFrame,
        ) -> dg.MaterializeResult:
            return materialize(context, config, store, profile, pipes_client, base_models, split, augmented)

    else:

        @dg.asset(**spec)
        def _adapter(
            context: dg.AssetExecutionContext, config: Config, store: ArtifactStore, profile: ModelProfile,
            pipes_client: dg.ResourceParam[dg.PipesClient], base_models: dict, split: pd.DataFrame,
        ) -> dg.MaterializeResult:
            return materialize(context, config, store, profile, pipes_client, base_models, split)

    return _adapter


def _adapter_checks(task: str) -> list[dg.AssetChecksDefinition]:
    name = f"adapter_{task}"
    fmt = TASK_FORMATS[task]

    @dg.asset_check(
        asset=name,
        name="generates_to_end_mark",
        additional_ins={"split": dg.AssetIn(f"{task}_split")},
        pool=ACCELERATOR_POOL,
        blocking=True,
        description=(
            f"The saved adapter loads with plain PEFT and, for {CHECK_PROMPTS} validation prompts, generates "
            f"(near-greedy, temperature {CHECK_TEMPERATURE}, the task's repetition penalty, as served) an answer "
            f"that stops at `{fmt.end_mark}`"
            + (" (an empty memory is a valid answer)." if task == "memory" else " with non-empty text before it.")
        ),
    )
    def _generates(
        context: dg.AssetCheckExecutionContext, store: ArtifactStore, profile: ModelProfile, split: pd.DataFrame
    ) -> dg.AssetCheckResult:
        limit_torch_threads()
        from ohlora_assets.core.adapter_checks import end_mark_check

        version = candidate(context, store, name)
        check = end_mark_check(
            version.path, task, split, CHECK_PROMPTS, CHECK_TEMPERATURE, profile.device, profile.trust_remote_code
        )
        registry(store, name).record_metrics(
            version.version, {"loads": True, "end_mark_rate": check.stopped / max(len(check.rows), 1)}
        )
        return dg.AssetCheckResult(
            passed=check.passed,
            # Smoke budgets are too small to learn the format: there a miss is a warning, not an error.
            severity=dg.AssetCheckSeverity.WARN if profile.smoke else dg.AssetCheckSeverity.ERROR,
            metadata={
                "prompts": len(check.rows),
                "stopped_at_end_mark": check.stopped,
                "well_formed": check.well_formed,
                "max_new_tokens": check.max_new_tokens,
                "samples": md_table(check.rows),
                VERSION_KEY: version.version,
            },
        )

    @dg.asset_check(
        asset=name, name="loss_decreased", blocking=True,
        description="The final epoch's train loss is below the first's (by at least 0.1%: less is no learning).",
    )
    def _loss_decreased(context: dg.AssetCheckExecutionContext, store: ArtifactStore) -> dg.AssetCheckResult:
        from ohlora_assets.core.lora import read_training_log
        from ohlora_assets.core.promotion import loss_decreased

        version = candidate(context, store, name)
        log = read_training_log(version.path)
        return dg.AssetCheckResult(
            passed=len(log.epochs) >= 2 and loss_decreased(log.first_train_loss, log.final_train_loss),
            metadata={"epochs": len(log.epochs), "first": log.first_train_loss, "final": log.final_train_loss,
                      VERSION_KEY: version.version},
        )

    return [_generates, _loss_decreased]


adapter_assets = [_adapter_asset(task) for task in TASKS]
adapter_checks = [check for task in TASKS for check in _adapter_checks(task)]
