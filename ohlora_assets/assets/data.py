"""Group `data`: raw files as observable sources -> validated datasets -> per-task splits -> augmentation.

Every input file (the three CSVs and the synonyms JSON) has a validated asset with the same blocking
`schema_valid` check, emitted by the asset itself: a failure lists every problem (file, row, column,
fix) and raises before the asset stores anything, so downstream never runs on bad data and the
previous good output stays. Observing a raw file never fails: an unreadable path is recorded with
its problem (and a data version of its own), the other files are still observed, and the dataset's
check then reports the problem in its table.
"""


import hashlib
import json
from pathlib import Path
from typing import Any, Callable

import dagster as dg
import pandas as pd
from dagster._core.definitions.data_version import DATA_VERSION_TAG, get_input_data_version_tag  # no public names
from dagster_pandera import pandera_schema_to_dagster_type
from pydantic import Field

from ohlora_assets.configs import KINDS, OWNERS
from ohlora_assets.automation import SOURCE_CONDITION
from ohlora_assets.core import schemas
from ohlora_assets.core.augment import SynonymGroups, SynonymSwapper, read_synonym_groups
from ohlora_assets.core.formats import TASK_FORMATS, TASKS, task_split
from ohlora_assets.core.data_issues import DataIssue, DataValidationError, by_kind, more_rows
from ohlora_assets.core.input_files import DEFAULT_MAX_CELL_CHARS
from ohlora_assets.core.text_decoding import path_problem
from ohlora_assets.core.io import content_hash
from ohlora_assets.metadata import issues_table, md_table
from ohlora_assets.resources import DataPaths

GROUP = "data"
SAMPLE_ROWS = 5
CHECK_NAME = "schema_valid"
CHECK_DESCRIPTION = "The file is readable and every row passes its rules; failures name file, row, column and fix."


def _markdown_sample(frame: pd.DataFrame, rows: int = SAMPLE_ROWS) -> dg.MetadataValue:
    return md_table(frame.head(rows))


def _log_notes(context: dg.AssetExecutionContext, notes: list[DataIssue]) -> None:
    """Each kind of note in the run's log as the table shows it: one event per note would be thousands of rows in
    the instance's event log (a greeting with many answers is a note per row)."""
    for shown, rest in by_kind(notes):
        for note in shown:
            context.log.warning(str(note))
        if rest:
            context.log.warning(f"{more_rows(rest)} notes like the one above: see the schema_valid check's table")


def _frame_version(frame: pd.DataFrame) -> dg.DataVersion:
    """A content hash, so an unchanged table does not make its downstream stale."""
    return dg.DataVersion(hashlib.sha256(pd.util.hash_pandas_object(frame, index=True).values.tobytes()).hexdigest())


# --- raw sources: the data version is the file's content hash --------------------------------


def _raw_source(name: str, path_field: str, description: str) -> dg.SourceAsset:
    @dg.observable_source_asset(
        name=name, group_name=GROUP, description=description, automation_condition=SOURCE_CONDITION
    )
    def _observe(context: dg.OpExecutionContext, paths: DataPaths) -> dg.ObserveResult:
        path = getattr(paths, path_field)
        metadata: dict[str, Any] = {"path": dg.MetadataValue.path(path)}
        try:
            version = content_hash(path)
        except OSError as err:
            problem, fix = path_problem(err, Path(path))
            context.log.error(f"{path}: {problem} (fix: {fix})")
            # A version of its own: fixing the path changes it, and the dataset's check reports it.
            version = "unreadable-" + hashlib.sha256(problem.encode()).hexdigest()[:16]
            metadata["problem"] = dg.MetadataValue.text(f"{problem} (fix: {fix})")
        return dg.ObserveResult(data_version=dg.DataVersion(version), metadata=metadata)

    return _observe


raw_dialogue_csv = _raw_source("raw_dialogue_csv", "dialogue_csv", "The v4 dialogue CSV the user edits.")
raw_ethics_csv = _raw_source("raw_ethics_csv", "ethics_csv", "The ethics prompts CSV (type,user_prompt,category).")
raw_ml_qa_csv = _raw_source("raw_ml_qa_csv", "ml_qa_csv", "ML-tutor questions with retrieved concepts.")
raw_synonyms_json = _raw_source("raw_synonyms_json", "synonyms_json", "Synonym groups for input augmentation.")


# --- validated inputs: one factory for every file ----------------------------------------------


def _file_hash(path: str) -> str | None:
    """The content hash an observation records, or None for a path the reader will name as unreadable."""
    try:
        return content_hash(path)
    except OSError:
        return None


class InputLimits(dg.Config):
    max_cell_chars: int = Field(
        default=DEFAULT_MAX_CELL_CHARS, ge=1, description="longer cells (or synonyms) are rejected"
    )


def _raise_changed(path: str) -> None:
    raise dg.Failure(description=f"{path} changed while it was read (saved again mid-run?): run again")


Reader = Callable[[str, int], tuple[Any, list[DataIssue]]]
Describer = Callable[[Any], tuple[dg.DataVersion, dict[str, Any]]]


def _validated_input(
    name: str, raw: dg.SourceAsset, path_field: str, read: Reader, describe: Describer, description: str, **asset_args
):
    @dg.asset(
        name=name,
        group_name=GROUP, kinds=KINDS[GROUP], owners=OWNERS,
        deps=[raw],
        code_version="2",
        description=description,
        check_specs=[dg.AssetCheckSpec(CHECK_NAME, asset=name, blocking=True, description=CHECK_DESCRIPTION)],
        **asset_args,
    )
    def _dataset(context: dg.AssetExecutionContext, config: InputLimits, paths: DataPaths):
        path = getattr(paths, path_field)
        read_hash = _file_hash(path)
        try:
            value, notes = read(path, config.max_cell_chars)
        except DataValidationError as err:
            if _file_hash(path) != read_hash:  # saved while read: the half-written file is not the user's data
                _raise_changed(path)
            yield dg.AssetCheckResult(
                check_name=CHECK_NAME,
                passed=False,
                severity=dg.AssetCheckSeverity.ERROR,
                metadata={"failures": len(err.issues), "issues": issues_table(err.issues)},
            )
            # Raising stops the step before its output is stored: the last good dataset stays.
            raise dg.Failure(description=str(err), metadata={"issues": issues_table(err.issues)}) from None
        if _file_hash(path) != read_hash:
            _raise_changed(path)
        # The source's data version is what this step read, not what was last observed (Dagster fixes that at
        # step start): materialized after an edit without an observation, the dataset would otherwise carry the
        # old file's version, and look fresh once the edit was undone although it holds the edit. So the step
        # records an observation of what it read, and names that version as its input's.
        context.log_event(dg.AssetObservation(
            asset_key=raw.key, tags={DATA_VERSION_TAG: read_hash}, metadata={"read_by": name, "path": path}
        ))
        noted = {"notes": issues_table(notes)} if notes else {}
        _log_notes(context, notes)
        version, metadata = describe(value)
        yield dg.AssetCheckResult(check_name=CHECK_NAME, passed=True, metadata={"notes_count": len(notes), **noted})
        metadata = {"path": dg.MetadataValue.path(path), "file_hash": read_hash, **metadata, **noted}
        yield dg.Output(value, data_version=version, metadata=metadata,
                        tags={get_input_data_version_tag(raw.key): read_hash})

    return _dataset


def _csv_dataset(name: str, raw: dg.SourceAsset, path_field: str, spec: schemas.InputSpec, split_of, description):
    def read(path: str, max_cell_chars: int) -> tuple[pd.DataFrame, list[DataIssue]]:
        table = schemas.load(spec, path, max_cell_chars)
        return table.frame, table.notes

    def describe(frame: pd.DataFrame) -> tuple[dg.DataVersion, dict[str, Any]]:
        counts = split_of(frame).value_counts().to_dict()
        return _frame_version(frame), {
            "dagster/row_count": len(frame),
            **{f"rows/{key}": value for key, value in counts.items()},
            "sample": _markdown_sample(frame),
        }

    return _validated_input(
        name, raw, path_field, read, describe, description, dagster_type=pandera_schema_to_dagster_type(spec.schema)
    )


dialogue_dataset = _csv_dataset(
    "dialogue_dataset", raw_dialogue_csv, "dialogue_csv", schemas.DIALOGUE, lambda f: f["data_type"],
    "The v4 dialogue rows, validated.",
)
ethics_dataset = _csv_dataset(
    "ethics_dataset", raw_ethics_csv, "ethics_csv", schemas.ETHICS, lambda f: f["type"] + "/" + f["category"],
    "Ethics prompts with their category, validated.",
)
ml_qa_dataset = _csv_dataset(
    "ml_qa_dataset", raw_ml_qa_csv, "ml_qa_csv", schemas.ML_QA, lambda f: f["data_type"],
    "ML-tutor questions, retrieved concepts and reference answers (RAG-concept experiment).",
)


def _describe_groups(groups: SynonymGroups) -> tuple[dg.DataVersion, dict[str, Any]]:
    version = hashlib.sha256(json.dumps(groups, ensure_ascii=False).encode()).hexdigest()
    return dg.DataVersion(version), {"groups": len(groups), "words": sum(map(len, groups))}


synonym_groups = _validated_input(
    "synonym_groups", raw_synonyms_json, "synonyms_json", read_synonym_groups, _describe_groups,
    "Synonym groups (two or more words each, no word in two groups), validated.",
)


# --- per-task splits: one output per task, each with its own data version --------------------


@dg.multi_asset(
    group_name=GROUP,
    code_version="1",
    outs={
        f"{task}_split": dg.AssetOut(
            description=f"`{task}` (prompt, completion) pairs, train and valid, in the v4 text format.",
            code_version="1",
            kinds=KINDS[GROUP],
            owners=OWNERS,
            is_required=False,  # a subset (one split picked in the UI) yields only what was selected
        )
        for task in TASKS
    },
    can_subset=True,
)
def task_splits(context: dg.AssetExecutionContext, dialogue_dataset: pd.DataFrame):
    """Each split's data version is its content hash: an edit that changes only summaries leaves the other three
    splits up to date (their adapters too, unless the edit also rebuilds the embedded base, which is pretrained on
    the training rows)."""
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
    epochs: int = Field(default=5, ge=1, description="one variant per output_message training epoch")
    seed: int = Field(default=0, ge=0)


@dg.asset(group_name=GROUP, kinds=KINDS[GROUP], owners=OWNERS, code_version="3")
def augmented_output_message_train(
    config: AugmentationConfig, dialogue_dataset: pd.DataFrame, synonym_groups: SynonymGroups
) -> dg.Output:
    """A seeded synonym-swapped variant of the output_message train split per epoch.

    Only the user's own words are augmented (not the time tag, memory prefix or summary wrapper); the answer the
    model learns stays as written, and no variant reads as a validation input."""
    swapper = SynonymSwapper(synonym_groups)
    fmt = TASK_FORMATS["output_message"]
    train = dialogue_dataset[dialogue_dataset["data_type"].isin(fmt.train_types)]
    valid = dialogue_dataset[dialogue_dataset["data_type"].isin(fmt.valid_types)]
    held_out = frozenset(" ".join(text.split()) for text in valid["input_data"])
    variants = []
    for epoch in range(config.epochs):
        inputs = swapper.variant(train["input_data"].tolist(), config.seed, epoch, held_out)
        augmented = pd.Series(inputs, index=train.index)
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
