"""Shared fixtures: resources on a temporary artifact folder, our sample data, and the upstream CSVs."""

from pathlib import Path

import dagster as dg
import pytest

from ohlora_assets.io_manager import AtomicFilesystemIOManager
from ohlora_assets.pipes_clients import subprocess_training_client
from ohlora_assets.resources import PROJECT_ROOT, ArtifactStore, DataPaths, ModelProfile

UPSTREAM = PROJECT_ROOT.parent / "shared" / "upstream"


def sample_paths(**overrides: str) -> DataPaths:
    """Our sample data in data/, with some files replaced."""
    data = PROJECT_ROOT / "data"
    fields = {
        "dialogue_csv": str(data / "ohlora_dialogue.csv"),
        "ethics_csv": str(data / "ethics_dataset.csv"),
        "ml_qa_csv": str(data / "ml_qa_rag_concept.csv"),
        "synonyms_json": str(data / "synonyms.json"),
    }
    return DataPaths(**{**fields, **overrides})


def make_resources(root: Path, paths: DataPaths | None = None, smoke: bool = True) -> dict[str, object]:
    store = ArtifactStore(root=str(root))
    return {
        "paths": paths or sample_paths(),
        "store": store,
        "profile": ModelProfile(smoke=smoke),
        "io_manager": AtomicFilesystemIOManager(base_dir=str(store.path("io"))),
        "pipes_client": subprocess_training_client(),
    }


@pytest.fixture
def resources(tmp_path: Path) -> dict[str, object]:
    return make_resources(tmp_path / "store")


@pytest.fixture
def upstream() -> Path:
    if not (UPSTREAM / "OhLoRA_fine_tuning_v4.csv").is_file():
        pytest.skip(f"the original author's CSVs are not at {UPSTREAM} (only CI and developers have ../shared)")
    return UPSTREAM


def step_failure(result: dg.ExecuteInProcessResult):
    """The error (a SerializableErrorInfo: `.message`, `.to_string()`) of the run's one failed step."""
    assert not result.success
    (failure,) = [e for e in result.all_events if e.event_type == dg.DagsterEventType.STEP_FAILURE]
    return failure.step_failure_data.error


def smoke_materialization(root: Path, assets: list, **materialize_kwargs) -> tuple:
    """(result, instance, resources) of one smoke-profile materialization of `assets` into the artifact folder
    `root`, on a fresh ephemeral instance, with one torch thread (smoke models are too small for a second
    thread to pay for its synchronization). `materialize_kwargs`: selection, run_config."""
    resources = make_resources(root)
    instance = dg.DagsterInstance.ephemeral()
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("OHLORA_TORCH_THREADS", "1")
        result = dg.materialize(assets, resources=resources, instance=instance, **materialize_kwargs)
    return result, instance, resources
