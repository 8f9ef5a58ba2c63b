"""When things run: jobs, the weekly schedule, and declarative automation over the asset graph.

Declarative automation, in one paragraph. Every raw CSV is an observable source whose data version
is the file's content hash. The sources carry `SOURCE_CONDITION`: the automation sensor observes
them when they have never been observed and then every `OBSERVE_CRON` tick (a hash of a few small
files; the settings that choose the bases likewise). The data branch carries `ASSET_CONDITION`: an
asset is requested when one of its parents got a *new data version* since the last tick (or is being
requested on this tick, so validation and the splits go in one run), when its own `code_version`
changed, or when it is missing; and never while a parent is missing or anything involved is in
progress. Training steps carry `TRAINING_CONDITION`, the same without "being requested": they run
only once an input's new data version is recorded, on the next tick. Everything downstream of them
(samples, reports, thresholds, promotion) carries `evaluation_condition`: it runs in the run that
trains its model and because of it, never a tick early on its own data parents with the old model.
An edited CSV therefore re-materializes exactly its downstream in two runs (validate; train,
evaluate and promote), an unchanged CSV (same hash) requests nothing, and neither a re-validated
file whose table came out the same (a blank row appended, a file back as it was) nor a retrain that
yields byte-identical weights ripples further.

Why not `AutomationCondition.eager()`: eager reacts to any new materialization of a parent, even
one with an unchanged data version, so re-running a model that came out identical would still
retrain everything below it. `ASSET_CONDITION` is eager with `newly_updated` replaced by
`data_version_changed` and `code_version_changed` added.

The conditions are applied centrally (`with_automation`, called on the project's Definitions), so
the asset modules need no automation code; an asset that sets its own condition keeps it. The two
experiments (`EXPERIMENTS`) get none: each trains several adapters, so they run when asked for
(`retrain_all`, or materialized from the UI), never because a CSV changed.

The sensors start stopped (OHLORA_AUTOMATION=on starts them running, or turn them on in the UI's
Automation page): with every asset missing, a first daemon start would otherwise retrain everything,
on the `full` profile hours of GPU time that nobody asked for.
"""

from __future__ import annotations

import os
import warnings
from typing import Iterable, Sequence

import dagster as dg

from dagster._core.storage.tags import AUTOMATION_CONDITION_TAG  # on every automation run; no public name in 1.13

from ohlora_assets.configs import ACCELERATOR_POOL
from ohlora_assets.resources import check_cron, flag

AC = dg.AutomationCondition

# --- tags: the queued run coordinator limits runs by these (see deploy/dagster.yaml) ---------

WORKLOAD_TAG = "ohlora/workload"
TRAINING_TAGS = {WORKLOAD_TAG: "training"}  # may train models: at most one such run at a time
REPORTS_TAGS = {WORKLOAD_TAG: "reports"}  # generation and evaluation on trained models
OBSERVE_TAGS = {WORKLOAD_TAG: "observe"}  # hashing the raw files: never queued behind training
# A run the training sensor launched is retried once, from its failed steps, by the daemon (`run_retries` in
# deploy/*/dagster.yaml): its request consumed the trigger, so without a retry a transient failure (a killed
# worker, an out-of-memory kill) would leave the model stale until the next edit. A second failure stays failed.
RETRY_TAGS = {"dagster/max_retries": "1", "dagster/retry_strategy": "FROM_FAILURE"}

# --- conditions ------------------------------------------------------------------------------

#: How often the automation sensor re-hashes the raw files (OHLORA_OBSERVE_CRON to change).
OBSERVE_CRON = os.environ.get("OHLORA_OBSERVE_CRON", "*/5 * * * *")
check_cron("OHLORA_OBSERVE_CRON")  # a typo named with the variable, not as dagster's check error

SOURCE_CONDITION = (
    (AC.missing().newly_true() | AC.cron_tick_passed(OBSERVE_CRON)) & ~AC.in_progress()
).with_label(f"observe when never observed or every {OBSERVE_CRON}")

# a parent whose data version changed since the last tick, unless the run that changed it also ran this asset
# (then this asset is already up to date with it)
_parent_data_changed = (AC.data_version_changed() & ~AC.executed_with_root_target()).with_label(
    "data_version_changed_without_root"
)


# The same, by a run the automation sensors launched. Those runs name their assets, so `executed_with_root_target`
# tells whether this asset was in it; a whole job's run (retrain_all, the schedule, `make run`) names none, so its
# own parents' new versions would look like another run's.
_parent_changed_by_automation = (
    _parent_data_changed & AC.executed_with_tags(tag_keys={AUTOMATION_CONDITION_TAG})
).with_label("data_version_changed_by_automation_without_root")


def _eager_on(
    parent_trigger: dg.AutomationCondition, changed_by_automation: dg.AutomationCondition
) -> dg.AutomationCondition:
    # A parent that automation changes while this asset's own run is in progress: that run read the parent before
    # the change, so its materialization must not count as handling it (an edit during a training would never be
    # trained on). Held until this asset is requested again, which the end of that run allows.
    changed_while_running = (changed_by_automation & AC.in_progress()).since(AC.newly_requested()).with_label(
        "a parent changed while it ran"
    )
    return (
        AC.in_latest_time_window()
        & ((AC.newly_missing() | parent_trigger | AC.code_version_changed()).since_last_handled()
           | changed_while_running)
        & ~AC.any_deps_missing()
        & ~AC.any_deps_in_progress()
        & ~AC.in_progress()
    )


_parent_changed_or_requested = _parent_data_changed | AC.will_be_requested()

# The data branch: also when a parent is requested on this very tick, so validation and the splits go in one run.
_any_parent_changed_by_automation = AC.any_deps_match(_parent_changed_by_automation)
ASSET_CONDITION = _eager_on(
    AC.any_deps_match(_parent_changed_or_requested).with_label("any_deps_data_version_changed_or_requested"),
    _any_parent_changed_by_automation,
).with_label("ohlora: eager on new data versions")
# Training waits for its input's new data version itself: a parent re-run on this tick may come out the same (a
# blank row appended, a file back as it was), and a retrain on that bet costs minutes here, GPU hours on `full`.
TRAINING_CONDITION = _eager_on(
    AC.any_deps_match(_parent_data_changed).with_label("any_deps_data_version_changed"),
    _any_parent_changed_by_automation,
).with_label("ohlora: trains on new data versions only")


def evaluation_condition(trained: dg.AssetSelection) -> dg.AutomationCondition:
    """What evaluates and promotes a model (samples, reports, thresholds, promotion): in the run that trains it, and
    only because of it. Their other parents (the split or dataset they score) are left out, or they would run a
    tick early with the old model (and a promotion would judge it again)."""
    return _eager_on(
        AC.any_deps_match(_parent_changed_or_requested).allow(trained.downstream())
        .with_label("any_trained_deps_data_version_changed_or_requested"),
        AC.any_deps_match(_parent_changed_by_automation).allow(trained.downstream()),
    ).with_label("ohlora: with the model it evaluates")


#: Materialized only on request: each trains several adapters to compare settings.
EXPERIMENTS = frozenset({dg.AssetKey("lora_rank_experiment"), dg.AssetKey("rag_concept_experiment")})


def _trains(assets: dg.AssetsDefinition) -> bool:
    """A training step: in the accelerator pool, and not in the reports group (whose pool steps generate)."""
    return assets.node_def.pool == ACCELERATOR_POOL and "reports" not in set(assets.group_names_by_key.values())


def _with_condition(assets: dg.AssetsDefinition, condition: dg.AutomationCondition) -> dg.AssetsDefinition:
    def default(spec: dg.AssetSpec) -> dg.AssetSpec:
        if spec.automation_condition is not None or spec.key in EXPERIMENTS:
            return spec
        return spec.replace_attributes(automation_condition=condition)

    [mapped] = dg.map_asset_specs(default, [assets])
    return mapped


def with_automation(loaded: Iterable[object]) -> list[object]:
    """The loaded definitions with a condition on every asset that sets none of its own, except the experiments:
    `TRAINING_CONDITION` on the training steps, `evaluation_condition` on everything downstream of them, and
    `ASSET_CONDITION` on the data branch above; observable sources keep `SOURCE_CONDITION` from their factories.

    `dg.map_asset_specs` refuses the observable sources (SourceAsset objects), so they pass around it.
    """
    loaded = list(loaded)
    specs = [item for item in loaded if isinstance(item, dg.AssetsDefinition)]
    others = [item for item in loaded if not isinstance(item, dg.AssetsDefinition)]
    training_keys = {key for assets in specs if _trains(assets) for key in assets.keys}
    parents = {key: deps for assets in specs for key, deps in assets.asset_deps.items()}
    below, frontier = set(), training_keys
    while frontier:  # every asset downstream of a training step
        frontier = {key for key, deps in parents.items() if deps & frontier} - below
        below |= frontier
    evaluation = evaluation_condition(dg.AssetSelection.assets(*training_keys))

    def condition(assets: dg.AssetsDefinition) -> dg.AutomationCondition:
        if _trains(assets):
            return TRAINING_CONDITION
        return evaluation if set(assets.keys) & below else ASSET_CONDITION

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", dg.PreviewWarning)
        return [*(_with_condition(assets, condition(assets)) for assets in specs), *others]


# --- jobs --------------------------------------------------------------------------------------

with warnings.catch_warnings():
    warnings.simplefilter("ignore", dg.BetaWarning)  # `include_sources` is beta; the selection is plain
    SOURCES = dg.AssetSelection.all(include_sources=True) - dg.AssetSelection.all()

retrain_all = dg.define_asset_job(
    "retrain_all",
    # Observing the raw files first records their content hashes, so staleness is known afterwards.
    selection=dg.AssetSelection.all() | SOURCES,
    tags=TRAINING_TAGS,
    description="Every asset and every check: validate the data, train every model, write every report.",
)

# the ethics group and whatever it reads from the data group (ethics_dataset) ...
_ETHICS_BRANCH = dg.AssetSelection.groups("ethics").upstream() & dg.AssetSelection.groups("data", "ethics")

ethics_only = dg.define_asset_job(
    "ethics_only",
    # ... observing the sources it reads first (raw_ethics_csv, ethics_base_settings), as retrain_all does, and
    # promoting the model it trains when the gate passes (else the gate would go on scoring with the old one)
    selection=_ETHICS_BRANCH | _ETHICS_BRANCH.upstream_source_assets()
    | dg.AssetSelection.assets("serving_ethics_sbert_model"),
    tags=TRAINING_TAGS,
    description="The ethics gate: the validated ethics dataset, the S-BERT model, thresholds and report, and its "
                "promotion when every check passed.",
)

reports_only = dg.define_asset_job(
    "reports_only",
    # The experiments live in the reports group but train adapters of their own: they run with retrain_all.
    selection=dg.AssetSelection.groups("reports") - dg.AssetSelection.assets(*EXPERIMENTS),
    tags=REPORTS_TAGS,
    description="Regenerate the quality reports from the current models (no training; the experiments train, "
                "so they run with retrain_all).",
)

JOBS = [retrain_all, ethics_only, reports_only]

# --- schedules ---------------------------------------------------------------------------------

weekly_retrain = dg.ScheduleDefinition(
    name="weekly_retrain_all",
    job=retrain_all,
    cron_schedule="0 3 * * 0",  # Sunday 03:00 UTC
    execution_timezone="UTC",
    tags=TRAINING_TAGS,
    default_status=dg.DefaultScheduleStatus.STOPPED,
    description="A full retrain every Sunday 03:00 UTC (turn it on in the UI or with `dagster schedule start`).",
)

SCHEDULES: list[dg.ScheduleDefinition] = [weekly_retrain]

# --- sensors (declarative automation) ------------------------------------------------------------

#: Read when the definitions load: a sensor's default status is part of the code location.
AUTOMATION_ON = flag("OHLORA_AUTOMATION", os.environ.get("OHLORA_AUTOMATION", "off"))
_automation_status = dg.DefaultSensorStatus.RUNNING if AUTOMATION_ON else dg.DefaultSensorStatus.STOPPED


observe_raw_files = dg.AutomationConditionSensorDefinition(
    "observe_raw_files",
    target=SOURCES,
    run_tags=OBSERVE_TAGS,  # an observation that failed is simply made again at the next cron tick
    default_status=_automation_status,
    minimum_interval_seconds=30,
    description="Observes the raw CSV/JSON sources (content hash) so that edits are noticed.",
)

rematerialize_stale = dg.AutomationConditionSensorDefinition(
    "rematerialize_stale",
    target=dg.AssetSelection.all() - dg.AssetSelection.assets(*EXPERIMENTS),
    run_tags={**TRAINING_TAGS, **RETRY_TAGS},
    default_status=_automation_status,
    minimum_interval_seconds=30,
    description="Re-materializes exactly the assets whose parents got a new data version (a failed run is retried "
    "once, from its failed steps).",
)

SENSORS: Sequence[dg.SensorDefinition] = [observe_raw_files, rematerialize_stale]
