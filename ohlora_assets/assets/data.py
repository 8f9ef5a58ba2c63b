"""Group `data`: raw CSVs as observable sources -> validated datasets -> per-task splits -> augmentation.

Validation is a blocking check emitted by the dataset asset itself, and a failure raises before
the asset stores anything: downstream never runs on bad data and the previous good output stays.
"""


import hashlib
from typing import Callable

import dagster as dg
import pandas as pd
from dagster_pandera import pandera_schema_to_dagster_type

from ohlora_assets.automation import SOURCE_CONDITION
from ohlora_assets.core import schemas
from ohlora_assets.core.augment import SynonymSwapper, load_synonym_groups
from ohlora_assets.core.formats import TASK_FORMATS, TASKS, task_split
from ohlora_assets.core.io import DataIssue, DataValidationError, content_hash
from ohlora_assets.resources import DataPaths

GROUP = "data"
SAMPLE_ROWS = 5


def _markdown_sample(frame: pd.DataFrame, rows: int = SAMPLE_ROWS) -> dg.MetadataValue:
    return dg.MetadataValue.md(frame.head(rows).to_markdown(index=False))


def _issues_table(issues: list[DataIssue]) -> dg.MetadataValue:
    table = pd.DataFrame([{"file": i.file, "row": i.row, "column": i.column, "problem": i.message} for i in issues])
    return dg.MetadataValue.md(table.to_markdown(index=False))


def _frame_version(frame: pd.DataFrame) -> dg.DataVersion:
    """A content hash, so an unchanged table does not make its downstream stale."""
    return dg.DataVersion(hashlib.sha256(pd.util.hash_pandas_object(frame, index=True).values.tobytes()).hexdigest())


# --- raw sources: the data version is the file's content hash --------------------------------


def _raw_source(name: str, path_field: str, description: str) -> dg.SourceAsset:
    @dg.observable_source_asset(
        name=name, group_name=GROUP, description=description, automation_condition=SOURCE_CONDITION
    )
    def _observe(paths: DataPaths) -> dg.ObserveResult:
        path = getattr(paths, path_field)
        try:
            version = content_hash(path)
        except FileNotFoundError:
            raise dg.Failure(f"{path}: file not found (set it in the `paths` resource or its environment variable)")
        return dg.ObserveResult(data_version=dg.DataVersion(version), metadata={"path": dg.MetadataValue.path(path)})

    return _observe


raw_dialogue_csv = _raw_source("raw_dialogue_csv", "dialogue_csv", "The v4 dialogue CSV the user edits.")
raw_ethics_csv = _raw_source("raw_ethics_csv", "ethics_csv", "The ethics prompts CSV (type,user_prompt,category).")
raw_ml_qa_csv = _raw_source("raw_ml_qa_csv", "ml_qa_csv", "ML-tutor questions with retrieved concepts.")
raw_synonyms_json = _raw_source("raw_synonyms_json", "synonyms_json", "Synonym groups for input augmentation.")


# --- validated datasets: one factory for the three CSVs --------------------------------------


def _validated_dataset(
    name: str,
    raw: dg.SourceAsset,
    path_field: str,
    load: Callable[[str], pd.DataFrame],
    schema,
    summary: Callable[[pd.DataFrame], dict[str, int]],
    description: str,
):
    check_name = "schema_valid"

    @dg.asset(
        name=name,
        group_name=GROUP,
        deps=[raw],
        code_version="1",
        description=description,
        dagster_type=pandera_schema_to_dagster_type(schema),
        check_specs=[
            dg.AssetCheckSpec(
                check_name,
                asset=name,
                blocking=True,
                description="Every row passes the pandera schema; failures name file, row and column.",
            )
        ],
    )
    def _dataset(context: dg.AssetExecutionContext, paths: DataPaths):
        path = getattr(paths, path_field)
        try:
            frame = load(path)
        except DataValidationError as err:
            yield dg.AssetCheckResult(
                check_name=check_name,
                passed=False,
                severity=dg.AssetCheckSeverity.ERROR,
                metadata={"failures": len(err.issues), "issues": _issues_table(err.issues)},
            )
            # Raising stops the step before its output is stored: the last good dataset stays.
            raise dg.Failure(description=str(err), metadata={"issues": _issues_table(err.issues)}) from None
        yield dg.AssetCheckResult(check_name=check_name, passed=True, metadata={"rows": len(frame)})
        counts = summary(frame)
        context.log.info(f"{path}: {len(frame)} rows, {counts}")
        yield dg.Output(
            frame,
            data_version=_frame_version(frame),
            metadata={
                "path": dg.MetadataValue.path(path),
                "dagster/row_count": len(frame),
                **{f"rows/{key}": value for key, value in counts.items()},
                "sample": _markdown_sample(frame),
            },
        )

    return _dataset


dialogue_dataset = _validated_dataset(
    "dialogue_dataset",
    raw_dialogue_csv,
    "dialogue_csv",
    schemas.load_dialogue,
    schemas.DIALOGUE_SCHEMA,
    lambda f: f["data_type"].value_counts().to_dict(),
    "The v4 dialogue rows, validated.",
)
ethics_dataset = _validated_dataset(
    "ethics_dataset",
    raw_ethics_csv,
    "ethics_csv",
    schemas.load_ethics,
    schemas.ETHICS_SCHEMA,
    lambda f: (f["type"] + "/" + f["category"]).value_counts().to_dict(),
    "Ethics prompts with their category, validated.",
)
ml_qa_dataset = _validated_dataset(
    "ml_qa_dataset",
    raw_ml_qa_csv,
    "ml_qa_csv",
    schemas.load_ml_qa,
    schemas.ML_QA_SCHEMA,
    lambda f: f["data_type"].value_counts().to_dict(),
    "ML-tutor questions, retrieved concepts and reference answers (RAG-concept experiment).",
)


# --- per-task splits: one output per task, each with its own data version --------------------


@dg.multi_asset(
    group_name=GROUP,
    code_version="1",
    outs={
        f"{task}_split": dg.AssetOut(
            description=f"`{task}` (prompt, completion) pairs, train and valid, in the v4 text format.",
            code_version="1",
        )
        for task in TASKS
    },
    can_subset=True,
)
def task_splits(context: dg.AssetExecutionContext, dialogue_dataset: pd.DataFrame):
    """Each split's data version is its content hash: an edit that changes only summaries
    leaves the other three splits, and so their adapters, up to date."""
    for task in TASKS:
        output = f"{task}_split"
        if output not in context.selected_output_names:
            continue
        frame = pd.concat(
            [task_split(dialogue_dataset, task, split).assign(split=split) for split in ("train", "valid")],
            ignore_index=True,
        )[["split", "source_row", "prompt", "completion", "has_label"]]
        counts = frame["split"].value_counts()
        yield dg.Output(
            frame,
            output_name=output,
            data_version=_frame_version(frame),
            metadata={
                "train_rows": int(counts.get("train", 0)),
                "valid_prompts": int(counts.get("valid", 0)),
                "valid_with_labels": int(frame.loc[frame["split"] == "valid", "has_label"].sum()),
                "end_mark": TASK_FORMATS[task].end_mark,
                "sample": _markdown_sample(frame[frame["split"] == "train"][["prompt", "completion"]]),
            },
        )


class AugmentationConfig(dg.Config):
    epochs: int = 5  # one variant per output_message training epoch
    seed: int = 0


@dg.asset(group_name=GROUP, code_version="1", deps=[raw_synonyms_json])
def augmented_output_message_train(
    config: AugmentationConfig, paths: DataPaths, dialogue_dataset: pd.DataFrame
) -> dg.Output:
    """A seeded synonym-swapped variant of the output_message train split per epoch.

    Only the user's input is augmented; the answer the model learns stays as written."""
    swapper = SynonymSwapper(load_synonym_groups(paths.synonyms_json))
    train = dialogue_dataset[dialogue_dataset["data_type"].isin(TASK_FORMATS["output_message"].train_types)]
    variants = []
    for epoch in range(config.epochs):
        augmented = pd.Series(swapper.variant(train["input_data"].tolist(), config.seed, epoch), index=train.index)
        split = task_split(dialogue_dataset, "output_message", "train", input_data=augmented)
        variants.append(split.assign(epoch=epoch)[["epoch", "source_row", "prompt", "completion"]])
    frame = pd.concat(variants, ignore_index=True)
    original = task_split(dialogue_dataset, "output_message", "train")["prompt"]
    changed = [int((v["prompt"].to_numpy() != original.to_numpy()).sum()) for v in variants]
    return dg.Output(
        frame,
        data_version=_frame_version(frame),
        metadata={
            "epochs": config.epochs,
            "rows_per_epoch": len(original),
            "changed_prompts_per_epoch": dg.MetadataValue.json(changed),
            "sample": _markdown_sample(
                frame[frame["prompt"].to_numpy() != pd.concat([original] * config.epochs).to_numpy()]
            ),
        },
    )
