"""How asset code finds model versions: an asset's registry, and the candidate its own run wrote.

A training asset writes a new immutable version (core/registry.py) and names it in its materialization's
`version` metadata; the checks, reports and the promotion asset downstream read that name from the
instance, this run's materialization first, so they judge exactly the version their run trained, whatever
serves meanwhile and whatever another run trains.
"""

import json
from pathlib import Path

import dagster as dg

from ohlora_assets.core.base_models import BASE_REGISTRY
from ohlora_assets.core.model_training import VERSION_KEY
from ohlora_assets.core.registry import DamagedRecord, ModelRegistry, ModelVersion, RegistryError, version_in_path
from ohlora_assets.resources import ArtifactStore


def registry(store: ArtifactStore, asset_name: str) -> ModelRegistry:
    return ModelRegistry(store.path("models"), asset_name)


def own_materialization(
    context: dg.AssetExecutionContext | dg.AssetCheckExecutionContext, key: dg.AssetKey
) -> dg.EventLogEntry | None:
    """The asset's latest materialization in this run or in the runs it re-executes (a re-execution from failure
    skips the training it does not repeat), else its latest on the instance (a check or report run on its own):
    two overlapping runs each judge, report on and promote what they trained, not each other's."""
    run = context.run
    while run is not None:
        records = context.instance.get_records_for_run(
            run.run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION, ascending=False
        ).records
        ours = (r.event_log_entry for r in records if r.event_log_entry.asset_materialization.asset_key == key)
        if (found := next(ours, None)) is not None:
            return found
        run = context.instance.get_run_by_id(run.parent_run_id) if run.parent_run_id else None
    return context.instance.get_latest_materialization_event(key)


def candidate(
    context: dg.AssetExecutionContext | dg.AssetCheckExecutionContext, store: ArtifactStore, asset_name: str
) -> ModelVersion:
    """The version the asset's materialization wrote (`own_materialization`: this run's, else the latest)."""
    event = own_materialization(context, dg.AssetKey(asset_name))
    metadata = event.asset_materialization.metadata if event and event.asset_materialization else {}
    if VERSION_KEY not in metadata:
        raise dg.Failure(f"{asset_name} has no materialization that wrote a model version: materialize it first")
    version = metadata[VERSION_KEY].value
    try:
        return registry(store, asset_name).get(version)
    except DamagedRecord:  # there, but its record unreadable: the error names the file
        raise
    except RegistryError as error:
        raise dg.Failure(f"{asset_name} {version}, which its last materialization wrote, is not in "
                         f"{store.path('models', asset_name)} ({error}): deleted by hand, or OHLORA_HOME is another "
                         f"folder now? Materialize {asset_name} again") from None


def compared_serving(versions: ModelRegistry, version: ModelVersion) -> ModelVersion | None:
    """The version a candidate is compared with: the serving one, unless that is the candidate itself."""
    serving = versions.serving()
    return serving if serving is not None and serving.version != version.version else None


def referenced_base_versions(store: ArtifactStore) -> set[str]:
    """The base_models versions some adapter version was trained on: the base directory its adapter_config.json
    names. Pruning the base registry must keep them. (The experiments' scratch adapters, under experiments/, are
    not loaded after their run.)"""
    found = set()
    for config in store.path("models").rglob("adapter_config.json"):
        base = json.loads(config.read_text(encoding="utf-8")).get("base_model_name_or_path") or ""
        # by the registry's layout, not the absolute path: a moved OHLORA_HOME must still protect them
        if Path(base).is_absolute() and (inside := version_in_path(base, BASE_REGISTRY)):
            found.add(inside[0])
    return found
