"""How asset code finds model versions: an asset's registry, and the candidate its latest run wrote.

A training asset writes a new immutable version (core/registry.py) and names it in its materialization's
`version` metadata; the checks, reports and the promotion asset downstream read that name from the
instance, so they judge exactly the version that run trained, whatever serves meanwhile.
"""

import json
from pathlib import Path

import dagster as dg

from ohlora_assets.core.base_models import BASE_REGISTRY
from ohlora_assets.core.model_training import VERSION_KEY
from ohlora_assets.core.registry import ModelRegistry, ModelVersion, version_in_path
from ohlora_assets.resources import ArtifactStore



def registry(store: ArtifactStore, asset_name: str) -> ModelRegistry:
    return ModelRegistry(store.path("models"), asset_name)


def candidate(instance: dg.DagsterInstance, store: ArtifactStore, asset_name: str) -> ModelVersion:
    """The version written by the asset's latest materialization."""
    event = instance.get_latest_materialization_event(dg.AssetKey(asset_name))
    metadata = event.asset_materialization.metadata if event and event.asset_materialization else {}
    if VERSION_KEY not in metadata:
        raise dg.Failure(f"{asset_name} has no materialization that wrote a model version: materialize it first")
    return registry(store, asset_name).get(metadata[VERSION_KEY].value)


def referenced_base_versions(store: ArtifactStore) -> set[str]:
    """The base_models versions some saved adapter (a version or an experiment's) was trained on: the base
    directory its adapter_config.json names. Pruning the base registry must keep them."""
    found = set()
    for config in store.path("models").rglob("adapter_config.json"):
        base = json.loads(config.read_text(encoding="utf-8")).get("base_model_name_or_path") or ""
        # by the registry's layout, not the absolute path: a moved OHLORA_HOME must still protect them
        if Path(base).is_absolute() and (inside := version_in_path(base, BASE_REGISTRY)):
            found.add(inside[0])
    return found
