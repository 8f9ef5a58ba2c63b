"""Configuration as Dagster resources: where the data is, where artifacts go, which base models to use.

Every field defaults from an environment variable so that the common case (your own CSVs, another
artifact folder, the `full` profile) needs no code and no run config.
"""

from __future__ import annotations

import os
from pathlib import Path

import dagster as dg
from pydantic import Field

PROJECT_ROOT = Path(__file__).resolve().parents[1]
SAMPLE_DATA = PROJECT_ROOT / "data"


def _env(name: str, default: str | Path) -> str:
    return os.environ.get(name, str(default))


class DataPaths(dg.ConfigurableResource):
    """The user's input files. Defaults are our sample data in `data/`."""

    dialogue_csv: str = Field(description="v4 dialogue CSV (OHLORA_DIALOGUE_CSV)")
    ethics_csv: str = Field(description="ethics prompts CSV (OHLORA_ETHICS_CSV)")
    ml_qa_csv: str = Field(description="ML-tutor Q&A with retrieved concepts (OHLORA_ML_QA_CSV)")
    synonyms_json: str = Field(description="synonym groups for augmentation (OHLORA_SYNONYMS_JSON)")

    @classmethod
    def from_env(cls) -> "DataPaths":
        return cls(
            dialogue_csv=_env("OHLORA_DIALOGUE_CSV", SAMPLE_DATA / "ohlora_dialogue.csv"),
            ethics_csv=_env("OHLORA_ETHICS_CSV", SAMPLE_DATA / "ethics_dataset.csv"),
            ml_qa_csv=_env("OHLORA_ML_QA_CSV", SAMPLE_DATA / "ml_qa_rag_concept.csv"),
            synonyms_json=_env("OHLORA_SYNONYMS_JSON", SAMPLE_DATA / "synonyms.json"),
        )


class ArtifactStore(dg.ConfigurableResource):
    """The folder that holds models and reports, laid out as `<root>/<kind>/<name>`."""

    root: str = Field(description="artifact folder (OHLORA_HOME)")

    @classmethod
    def from_env(cls) -> "ArtifactStore":
        return cls(root=_env("OHLORA_HOME", Path.cwd() / ".ohlora"))

    def path(self, *parts: str) -> Path:
        return Path(self.root).joinpath(*parts)

    def model_dir(self, asset_name: str) -> Path:
        """Where a model asset keeps its current artifact (replaced atomically on success)."""
        return self.path("models", asset_name)

    def report_dir(self, asset_name: str) -> Path:
        """Where a report asset keeps its files (tables, plots)."""
        return self.path("reports", asset_name)


class ModelProfile(dg.ConfigurableResource):
    """Which base models and how much compute: `embedded` (offline CPU) or `full` (hub models, GPU).

    `smoke` shrinks every budget (pretraining steps, epochs, rows, prompts) to seconds, for CI's
    full-graph run and the tests; the code path is the same.
    """

    name: str = Field(default="embedded", description="embedded | full (OHLORA_PROFILE)")
    smoke: bool = Field(default=False, description="tiny budgets for CI (OHLORA_SMOKE=1)")
    device: str = Field(default="auto", description="auto | cpu | cuda")
    base_model_overrides: dict[str, str] = Field(
        default_factory=dict, description="task -> hub id or local directory, replacing the profile's default"
    )
    trust_remote_code: bool = Field(default=False, description="let hub models run their own code")

    @classmethod
    def from_env(cls) -> "ModelProfile":
        return cls(
            name=_env("OHLORA_PROFILE", "embedded"),
            smoke=_env("OHLORA_SMOKE", "0") not in ("", "0", "false", "False"),
        )


def default_resources() -> dict[str, object]:
    store = ArtifactStore.from_env()
    return {
        "paths": DataPaths.from_env(),
        "store": store,
        "profile": ModelProfile.from_env(),
        "io_manager": dg.FilesystemIOManager(base_dir=str(store.path("io"))),
    }
