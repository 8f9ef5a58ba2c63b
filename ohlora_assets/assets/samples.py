"""Group `reports`: answers sampled from each adapter's candidate version (one factory).

`<task>_inference_samples` draws answers for every validation prompt with the candidate adapter version (the
one its run's training wrote, versions.own_materialization) and keeps them per version, for that version's
quality report (assets/reports.py) and, once it serves, for its successors' reports.

No `from __future__ import annotations` here: Dagster reads Config classes from the annotations.
"""

import dagster as dg
import pandas as pd
from pydantic import Field

from ohlora_assets.configs import ACCELERATOR_POOL, KINDS, OWNERS, SamplingConfig
from ohlora_assets.core.device import limit_torch_threads
from ohlora_assets.core.formats import TASK_FORMATS, TASKS
from ohlora_assets.core.progress import ProgressReporter
from ohlora_assets.core.quality import prompt_question
from ohlora_assets.core.samples import SAMPLES_FILE
from ohlora_assets.metadata import caps_metadata, md_table
from ohlora_assets.resources import ArtifactStore, ModelProfile
from ohlora_assets.versions import VERSION_KEY, candidate

GROUP = "reports"


class InferenceSamplesConfig(SamplingConfig):
    answers_per_prompt: int = Field(default=4, ge=1, description="answers drawn per validation prompt")
    max_prompts: int = Field(default=0, ge=0, description="use only the first N validation prompts (0: all)")



def _samples_asset(task: str) -> dg.AssetsDefinition:
    adapter, name = f"adapter_{task}", f"{task}_inference_samples"

    @dg.asset(
        name=name,
        group_name=GROUP, kinds=KINDS[GROUP], owners=OWNERS,
        code_version="2",
        pool=ACCELERATOR_POOL,
        deps=[adapter],
        ins={"split": dg.AssetIn(f"{task}_split")},
        description=(
            f"Answers of `{adapter}` to every `{task}` validation prompt (the training text up to `### 답변:`), "
            f"sampled in batches and stopped at `{TASK_FORMATS[task].end_mark}`, with retries, tokens and latency "
            f"per answer. Table: `{SAMPLES_FILE}` in the report folder."
        ),
    )
    def _samples(
        context: dg.AssetExecutionContext, config: InferenceSamplesConfig, store: ArtifactStore, profile: ModelProfile,
        split: pd.DataFrame,
    ) -> dg.MaterializeResult:
        limit_torch_threads()
        from ohlora_assets.core.generation import generate_answers, merged_for_inference
        from ohlora_assets.core.lora import load_adapter
        from ohlora_assets.core.samples import answers_table, save_samples

        budget = profile.budget()
        valid = split[split["split"] == "valid"].reset_index(drop=True).head(budget.prompts(config.max_prompts))
        answers = budget.answers(config.answers_per_prompt)
        version = candidate(context, store, adapter)
        model, tokenizer = load_adapter(version.path, profile.device, profile.trust_remote_code)
        run = generate_answers(
            merged_for_inference(model), tokenizer, valid["prompt"].tolist(), task, answers,
            budget.sampling(config.settings()), progress=ProgressReporter(context.log.info, label=name),
        )
        frame = answers_table(run, valid)
        folder = store.report_dir(name) / version.version
        save_samples(folder, frame, {**run.summary(), "run_id": context.run_id})
        shown = frame[["source_row", "answer_index", "answer", "retries", "output_tokens", "latency_s"]].head(40)
        shown.insert(1, "question", frame["prompt"].head(40).map(lambda p: prompt_question(task, p)[:60]))
        return dg.MaterializeResult(
            metadata={
                "prompts": len(valid),
                "answers": len(frame),
                "answers_per_prompt": answers,
                "retries": int(frame["retries"].sum()),
                "give_ups": int(frame["gave_up"].sum()),
                "generate_calls": run.calls,
                "wall_s": round(run.wall_s, 2),
                "answers_per_s": round(run.answers_per_s, 2),
                "tokens_per_s": round(run.tokens_per_s, 1),
                "budget_caps": caps_metadata(budget.caps),
                "samples": md_table(shown, digits=3),
                "dagster/row_count": len(frame),
                "path": dg.MetadataValue.path(str(folder / SAMPLES_FILE)),
                VERSION_KEY: version.version,
            }
        )

    return _samples


samples_assets = [_samples_asset(task) for task in TASKS]
