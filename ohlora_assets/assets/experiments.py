"""Group `reports`, the experiments: LoRA rank 16 vs 64, and training with vs without a retrieved concept.

Both train their own adapters beside the served ones (core/experiments/) and report side by side. Neither
feeds a served model, so neither runs under eager automation (ohlora_assets/automation.py).

No `from __future__ import annotations` here: Dagster reads Config classes from the annotations.
"""

import shutil
from pathlib import Path

import dagster as dg
import pandas as pd
from pydantic import Field

from ohlora_assets.configs import ACCELERATOR_POOL, KINDS, OWNERS, SamplingConfig, chosen_hyper_params, lora_config_class
from ohlora_assets.core.base_models import BaseModelRef, relocated
from ohlora_assets.core.device import limit_torch_threads
from ohlora_assets.core.formats import training_pairs
from ohlora_assets.core.progress import ProgressReporter
from ohlora_assets.core.recipes import ADAPTER_RECIPES, RAG_CONCEPT_RECIPE, RANK_EXPERIMENT_RANKS
from ohlora_assets.metadata import caps_metadata, md_table, metric_metadata, number, png_value, table
from ohlora_assets.resources import ArtifactStore, ModelProfile

GROUP = "reports"
SEED_RAG_ACCURACY = "Seed's figures for scale: 100% with the concept, 80% without."

LoraRankExperimentConfig = lora_config_class(
    "LoraRankExperimentConfig",
    ADAPTER_RECIPES["output_message"],
    base=SamplingConfig,
    omit=("rank",),
    ranks=(list[int], Field(default=list(RANK_EXPERIMENT_RANKS), min_length=1, description="LoRA ranks to compare")),
    answers_per_prompt=(int, Field(default=4, ge=1, description="answers drawn per validation prompt")),
    max_prompts=(int, Field(default=0, ge=0, description="use only the first N validation prompts (0: all)")),
)

RagConceptExperimentConfig = lora_config_class(
    "RagConceptExperimentConfig",
    RAG_CONCEPT_RECIPE,
    base=SamplingConfig,
    answers_per_question=(int, Field(default=4, ge=1, description="answers drawn per validation question")),
    max_new_tokens=(int, Field(default=128, description="tokens per answer before it counts as unterminated")),
)


def _base(base_models: dict, store: ArtifactStore) -> BaseModelRef:
    """Both experiments train on output_message's base."""
    return relocated(BaseModelRef(**base_models["output_message"]), store.path("models"))


def _scratch(store: ArtifactStore, name: str) -> Path:
    """The experiment's scratch folder, emptied: a variant the config no longer names leaves nothing behind. (The
    scratch of earlier releases, under models/, where `ohlora models list` took it for a model, goes too.)"""
    folder = store.experiment_dir(name)
    for scratch in (folder, store.model_dir(name)):
        shutil.rmtree(scratch, ignore_errors=True)
    return folder


@dg.asset(
    group_name=GROUP, kinds=KINDS[GROUP], owners=OWNERS,
    code_version="3",
    pool=ACCELERATOR_POOL,
    ins={
        "base_models": dg.AssetIn("base_models"),
        "split": dg.AssetIn("output_message_split"),
        "augmented": dg.AssetIn("augmented_output_message_train"),
    },
)
def lora_rank_experiment(
    context: dg.AssetExecutionContext,
    config: LoraRankExperimentConfig,
    store: ArtifactStore,
    profile: ModelProfile,
    base_models: dict,
    split: pd.DataFrame,
    augmented: pd.DataFrame,
) -> dg.MaterializeResult:
    """output_message trained at each rank (default 16 and 64) on the same data, seed and epochs as
    `adapter_output_message`, then sampled on the validation prompts: quality metrics side by side."""
    limit_torch_threads()
    from ohlora_assets.core.experiments.rank import run_lora_rank_experiment
    from ohlora_assets.core.io import publish_files
    from ohlora_assets.core.quality import quality_plot, side_by_side_markdown
    from ohlora_assets.core.render import markdown_table

    budget = profile.budget()
    train, valid_pairs, _ = training_pairs(split, augmented, budget.limit("adapter_train_rows"),
                                           budget.limit("adapter_valid_rows"))
    prompts = split[split["split"] == "valid"].reset_index(drop=True).head(budget.prompts(config.max_prompts))
    answers = budget.answers(config.answers_per_prompt)
    base = _base(base_models, store)
    hps = {r: budget.experiment(ADAPTER_RECIPES["output_message"], chosen_hyper_params(config, rank=r), base.source)
           for r in config.ranks}
    result = run_lora_rank_experiment(
        base.spec(profile.device, profile.trust_remote_code), train, valid_pairs, prompts, split[split["split"] == "train"],
        hps, answers,
        budget.sampling(config.settings()), _scratch(store, "lora_rank_experiment"),
        ProgressReporter(context.log.info, label="lora_rank_experiment"),
    )
    out = store.report_dir("lora_rank_experiment")
    names = {rank: f"rank {rank}" for rank in config.ranks}
    report = side_by_side_markdown({names[r]: m for r, m in result.metrics.items()})
    training_rows = [
        {"rank": r, "trainable_params": t.trainable_params, "final_train_loss": t.final_train_loss,
         "final_valid_loss": t.epochs[-1].valid_loss, "train_wall_s": t.wall_s} for r, t in result.training.items()
    ]
    plot = quality_plot({names[r]: m for r, m in result.metrics.items()},
                        {names[r]: f["latency_s"].tolist() for r, f in result.flagged.items()}, "LoRA rank")
    publish_files(out, {
        "answers.parquet": pd.concat([f.assign(rank=r) for r, f in result.flagged.items()]).to_parquet(),
        "report.md": f"# LoRA rank experiment\n\n{report}\n\n{markdown_table(training_rows)}\n".encode(),
        "ranks.png": plot,
    })
    return dg.MaterializeResult(
        metadata={
            "report": dg.MetadataValue.md(report),
            "training": table(training_rows),
            "plot": png_value(plot, "ranks", out / "ranks.png"),
            "prompts": len(prompts),
            "answers_per_prompt": answers,
            "epochs": next(iter(hps.values())).epochs,
            "budget_caps": caps_metadata(budget.caps),
            **{f"rank_{r}/{k}": v for r, m in result.metrics.items() for k, v in metric_metadata(m).items()},
            "path": dg.MetadataValue.path(str(out / "report.md")),
        }
    )


@dg.asset(
    group_name=GROUP, kinds=KINDS[GROUP], owners=OWNERS,
    code_version="3",
    pool=ACCELERATOR_POOL,
    ins={"base_models": dg.AssetIn("base_models"), "ml_qa_dataset": dg.AssetIn("ml_qa_dataset")},
)
def rag_concept_experiment(
    context: dg.AssetExecutionContext,
    config: RagConceptExperimentConfig,
    store: ArtifactStore,
    profile: ModelProfile,
    base_models: dict,
    ml_qa_dataset: pd.DataFrame,
) -> dg.MaterializeResult:
    """An ML-tutor adapter trained twice on the same questions, with `(제공된 정보) {concept} (사용자 질문)
    {question}` and with the bare question; accuracy = answers containing every key fact / answers drawn,
    per question, and its mean. The seed reported 100% with the concept and 80% without."""
    limit_torch_threads()
    from ohlora_assets.core.experiments.rag_concept import (
        RagConceptSettings,
        accuracy_plot,
        per_question_markdown,
        run_rag_concept_experiment,
    )
    from ohlora_assets.core.io import publish_files

    budget = profile.budget()
    base = _base(base_models, store)
    settings = RagConceptSettings(
        hp=budget.experiment(RAG_CONCEPT_RECIPE, chosen_hyper_params(config), base.source),
        answers_per_question=budget.answers(config.answers_per_question),
        sampling=budget.sampling(config.settings()),
        max_train_rows=budget.limit("experiment_train_rows"),
        max_questions=budget.limit("prompts"),
    )
    result = run_rag_concept_experiment(
        base.spec(profile.device, profile.trust_remote_code), ml_qa_dataset, settings,
        _scratch(store, "rag_concept_experiment"), ProgressReporter(context.log.info, label="rag_concept_experiment"),
    )
    out = store.report_dir("rag_concept_experiment")
    per_question = per_question_markdown(result.per_question)
    summary = md_table(
        [
            {"": "accuracy", **{v: f"{a:.1%}" for v, a in result.accuracy.items()}},
            {"": "final train loss", **{v: f"{t.final_train_loss:.4f}" for v, t in result.training.items()}},
        ]
    ).value + f"\n\n{SEED_RAG_ACCURACY}"
    plot = accuracy_plot(result.per_question)
    publish_files(out, {
        "per_question.parquet": result.per_question.to_parquet(),
        "answers.parquet": result.answers.to_parquet(),
        "report.md": f"# RAG-concept experiment\n\n{summary}\n\n{per_question}\n".encode(),
        "accuracy.png": plot,
    })
    return dg.MaterializeResult(
        metadata={
            "accuracy_with_concept": number(result.accuracy["with_concept"]),
            "accuracy_without_concept": number(result.accuracy["without_concept"]),
            "summary": dg.MetadataValue.md(summary),
            "per_question": dg.MetadataValue.md(per_question),
            "plot": png_value(plot, "accuracy per question", out / "accuracy.png"),
            "questions": len(result.per_question),
            "answers_per_question": settings.answers_per_question,
            "epochs": settings.hp.epochs,
            "key_facts_derived_from_concept": result.derived_key_facts,
            "budget_caps": caps_metadata(budget.caps),
            "path": dg.MetadataValue.path(str(out / "report.md")),
        }
    )
