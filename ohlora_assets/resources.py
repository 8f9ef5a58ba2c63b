"""Configuration as Dagster resources: where the data is, where artifacts go, which base models to use.

Every setting is an environment variable with a default (`SETTINGS`, the one list README's table
follows). `default_resources()` passes a set variable to the resource as `dg.EnvVar`, so the UI's
resource page names the variable a value came from and runs read it when they start; an unset one
gives the default. Outside Dagster (the `ohlora` command), `from_env()` reads the same variables.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import dagster as dg
from pydantic import Field

from ohlora_assets.core.settings import SettingsError
from ohlora_assets.io_manager import AtomicFilesystemIOManager
from ohlora_assets.pipes_clients import subprocess_training_client

PROJECT_ROOT = Path(__file__).resolve().parents[1]
SAMPLE_DATA = PROJECT_ROOT / "data"


def default_home() -> Path:
    """The artifact folder when OHLORA_HOME is unset, whatever the current directory.

    A source checkout (or editable install) keeps artifacts beside its code, in `<project>/.ohlora`;
    an installed wheel has no project folder, so it uses the user's data folder (XDG_DATA_HOME).
    """
    if (PROJECT_ROOT / "pyproject.toml").is_file():
        return PROJECT_ROOT / ".ohlora"
    return Path(os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share") / "ohlora"


@dataclass(frozen=True)
class Setting:
    variable: str
    default: str
    meaning: str


SETTINGS: dict[str, Setting] = {
    s.variable: s
    for s in (
        Setting("OHLORA_DIALOGUE_CSV", str(SAMPLE_DATA / "ohlora_dialogue.csv"), "v4 dialogue CSV"),
        Setting("OHLORA_ETHICS_CSV", str(SAMPLE_DATA / "ethics_dataset.csv"), "ethics prompts CSV"),
        Setting("OHLORA_ML_QA_CSV", str(SAMPLE_DATA / "ml_qa_rag_concept.csv"), "ML-tutor Q&A with retrieved concepts"),
        Setting("OHLORA_SYNONYMS_JSON", str(SAMPLE_DATA / "synonyms.json"), "synonym groups for augmentation"),
        Setting("OHLORA_HOME", str(default_home()), "artifact folder (models, reports, asset values)"),
        Setting("OHLORA_PROFILE", "embedded", "embedded (offline, CPU) | full (hub models, GPU when present)"),
        Setting("OHLORA_SMOKE", "0", "1: tiny budgets (CI)"),
        Setting("OHLORA_DEVICE", "auto", "auto | cpu | cuda | cuda:N"),
        Setting("OHLORA_BASE_MODELS", "", "task=model,task=model or a JSON object: replaces the profile's base models"),
        Setting("OHLORA_TRUST_REMOTE_CODE", "0", "1: let hub models run their own code"),
    )
}


def setting(variable: str) -> str:
    """The variable's value, or its default when unset."""
    return os.environ.get(variable, SETTINGS[variable].default)


def env_var_or_default(variable: str) -> str:
    """For a resource field: `dg.EnvVar(variable)` when it is set (resolved when a run starts, named
    in the UI), else the default."""
    return dg.EnvVar(variable) if variable in os.environ else SETTINGS[variable].default


_ON, _OFF = ("1", "true", "yes", "on"), ("", "0", "false", "no", "off")


def flag(variable: str, value: str | None = None) -> bool:
    """An on/off variable (`value`, else its setting): one of the spellings of on or off, or SettingsError naming
    it. A typo is not "on": `OHLORA_SMOKE=of` would open the promotion gate to smoke-trained models."""
    value = setting(variable) if value is None else value
    spelled = value.strip().lower()
    if spelled not in _ON + _OFF:
        off = ", ".join(repr(v) for v in _OFF)
        raise SettingsError(f"{variable}={value!r}: expected on ({', '.join(_ON)}) or off ({off})")
    return spelled in _ON


def _setting_checks() -> dict[str, Callable[[], None]]:
    """Each OHLORA_* setting a run reads, and how it is checked."""
    from ohlora_assets.core.base_models import check_overrides
    from ohlora_assets.core.device import check_device_name, configured_threads
    from ohlora_assets.core.recipes import PROFILES
    from ohlora_assets.core.tracking import check_tracking_settings

    def profile() -> None:
        if (name := setting("OHLORA_PROFILE")) not in PROFILES:
            raise SettingsError(f"OHLORA_PROFILE={name!r}: expected one of {', '.join(PROFILES)}")

    return {
        "OHLORA_SMOKE": lambda: flag("OHLORA_SMOKE"),
        "OHLORA_TRUST_REMOTE_CODE": lambda: flag("OHLORA_TRUST_REMOTE_CODE"),
        "OHLORA_PROFILE": profile,
        "OHLORA_DEVICE": lambda: check_device_name(setting("OHLORA_DEVICE")),
        "OHLORA_BASE_MODELS": lambda: check_overrides(parse_base_models(setting("OHLORA_BASE_MODELS"))),
        "OHLORA_TORCH_THREADS": configured_threads,
        "OHLORA_HOME": lambda: _check_home(setting("OHLORA_HOME")),
        "OHLORA_MLFLOW_URI": check_tracking_settings,
        # read by automation.py as it imports: checked here too, so that they are named with the others
        "OHLORA_AUTOMATION": lambda: flag("OHLORA_AUTOMATION", os.environ.get("OHLORA_AUTOMATION", "off")),
        "OHLORA_OBSERVE_CRON": lambda: check_cron("OHLORA_OBSERVE_CRON"),
    }


def check_settings(variables: Iterable[str] | None = None) -> None:
    """Every OHLORA_* setting a run reads (or those of `variables`), checked when the definitions load: a typo
    fails the load naming the variable, not a step deep in torch or pandas (or, worse, nowhere)."""
    checks = _setting_checks()
    problems = [problem for variable in (checks if variables is None else variables)
                for problem in _problem(checks[variable])]
    if problems:
        raise SettingsError("settings (environment variables; see README.md):\n  " + "\n  ".join(problems))


def _problem(check: Callable[[], None]) -> list[str]:
    try:
        check()
    except ValueError as error:
        return [str(error)]
    return []


def check_cron(variable: str) -> None:
    """SettingsError naming `variable` when it is set to something that is not a cron schedule."""
    if variable in os.environ:
        try:
            dg.AutomationCondition.cron_tick_passed(os.environ[variable])
        except Exception as error:  # dagster's check error names neither the variable nor the form
            raise SettingsError(f"{variable}={os.environ[variable]!r}: not a cron schedule (five fields, e.g. "
                                f"'*/5 * * * *'): {error}") from None


def _check_home(home: str) -> None:
    if not home.strip():
        raise SettingsError("OHLORA_HOME='': expected a folder (unset: the default); empty would write into the "
                            "current directory")
    for folder in (Path(home), *Path(home).parents):
        if folder.exists() and not folder.is_dir():
            raise SettingsError(f"OHLORA_HOME={home!r}: {folder} is a file, not a folder")


def parse_base_models(text: str) -> dict[str, str]:
    """`task=model,task=model` or a JSON object -> {task: hub id, `hub_id@revision` or local directory}."""
    text = text.strip()
    if not text:
        return {}
    if text.startswith("{"):
        try:
            parsed = json.loads(text)
        except json.JSONDecodeError as error:
            raise SettingsError(f"OHLORA_BASE_MODELS (base models): not a JSON object ({error}): {text!r}") from None
        if not isinstance(parsed, dict) or not all(isinstance(v, str) for v in parsed.values()):
            raise SettingsError(
                f"OHLORA_BASE_MODELS (base models): expected a JSON object of task -> model, got {text!r}")
        return parsed
    overrides = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        task, sep, model = item.partition("=")
        if not sep or not task.strip() or not model.strip():
            raise SettingsError(f"OHLORA_BASE_MODELS (base models): expected task=model, got {item!r} in {text!r}")
        overrides[task.strip()] = model.strip()
    return overrides


class _RunResource(dg.ConfigurableResource):
    """A resource every step of a run starts with: it checks the whole run's config first (`run_config.py`)."""

    def setup_for_execution(self, context: dg.InitResourceContext) -> None:
        if context.dagster_run is not None:
            from ohlora_assets.run_config import check_run_config

            check_run_config(context.dagster_run.run_config)


class DataPaths(_RunResource):
    """The user's input files. Defaults are our sample data in `data/`."""

    dialogue_csv: str = Field(description="v4 dialogue CSV (OHLORA_DIALOGUE_CSV)")
    ethics_csv: str = Field(description="ethics prompts CSV (OHLORA_ETHICS_CSV)")
    ml_qa_csv: str = Field(description="ML-tutor Q&A with retrieved concepts (OHLORA_ML_QA_CSV)")
    synonyms_json: str = Field(description="synonym groups for augmentation (OHLORA_SYNONYMS_JSON)")

    @classmethod
    def from_env(cls) -> "DataPaths":
        return cls(**{field: setting(variable) for field, variable in _PATH_VARIABLES.items()})

    @classmethod
    def configured(cls) -> "DataPaths":
        return cls(**{field: env_var_or_default(variable) for field, variable in _PATH_VARIABLES.items()})


_PATH_VARIABLES = {
    "dialogue_csv": "OHLORA_DIALOGUE_CSV",
    "ethics_csv": "OHLORA_ETHICS_CSV",
    "ml_qa_csv": "OHLORA_ML_QA_CSV",
    "synonyms_json": "OHLORA_SYNONYMS_JSON",
}


class ArtifactStore(_RunResource):
    """The folder that holds models and reports, laid out as `<root>/<kind>/<name>`."""

    root: str = Field(description="artifact folder (OHLORA_HOME)")

    @classmethod
    def from_env(cls) -> "ArtifactStore":
        return cls(root=setting("OHLORA_HOME"))

    @classmethod
    def configured(cls) -> "ArtifactStore":
        return cls(root=env_var_or_default("OHLORA_HOME"))

    def path(self, *parts: str) -> Path:
        return Path(self.root).joinpath(*parts)

    def model_dir(self, asset_name: str) -> Path:
        """A model asset's registry folder: its immutable `versions/` and the `serving.json` pointer."""
        return self.path("models", asset_name)

    def experiment_dir(self, asset_name: str) -> Path:
        """An experiment's scratch adapters: no registry (nothing of theirs serves), emptied as each run starts."""
        return self.path("experiments", asset_name)

    def report_dir(self, asset_name: str) -> Path:
        """Where a report asset keeps its files (tables, plots)."""
        return self.path("reports", asset_name)


class ModelProfile(_RunResource):
    """Which base models and how much compute: `embedded` (offline CPU), `small` (Gemma-3-270M from the
    `[small]` extra, offline; CPU budgets without a GPU) or `full` (hub models, GPU).

    `smoke` shrinks every budget (pretraining steps, epochs, rows, prompts) to seconds, for CI's
    full-graph run and the tests; the code path is the same.
    """

    name: str = Field(default="embedded", description="embedded | small | full (OHLORA_PROFILE)")
    # Dagster resolves `dg.EnvVar` only into str and int fields, so the two on/off fields are read
    # from the environment when the definitions load (their descriptions name the variable).
    smoke: bool = Field(default=False, description="tiny budgets for CI (OHLORA_SMOKE=1, read at load)")
    device: str = Field(default="auto", description="auto | cpu | cuda | cuda:N (OHLORA_DEVICE)")
    base_models: str = Field(
        default="",
        description="task=model,task=model or JSON; a model is a hub id, hub_id@revision or a local directory, "
        "replacing the profile's default for that task (OHLORA_BASE_MODELS)",
    )
    trust_remote_code: bool = Field(
        default=False, description="let hub models run their own code (OHLORA_TRUST_REMOTE_CODE=1, read at load)"
    )

    def __init__(self, *, base_model_overrides: dict[str, str] | None = None, **fields):
        """`base_model_overrides={task: model}` is the Python spelling of `base_models`."""
        if base_model_overrides:
            fields["base_models"] = json.dumps(base_model_overrides)
        super().__init__(**fields)

    def budget(self):
        """The profile's core.recipes.Budget on the device this run resolves to (imports torch)."""
        from ohlora_assets.core.recipes import Budget

        return Budget.on(self.name, self.smoke, self.device)

    @property
    def base_model_overrides(self) -> dict[str, str]:
        """task -> hub id, `hub_id@revision` or local directory."""
        return parse_base_models(self.base_models)

    @classmethod
    def from_env(cls) -> "ModelProfile":
        return cls(**{**cls._flags(), **{f: setting(v) for f, v in _PROFILE_VARIABLES.items()}})

    @classmethod
    def configured(cls) -> "ModelProfile":
        return cls(**{**cls._flags(), **{f: env_var_or_default(v) for f, v in _PROFILE_VARIABLES.items()}})

    @staticmethod
    def _flags() -> dict[str, bool]:
        return {
            "smoke": flag("OHLORA_SMOKE"),
            "trust_remote_code": flag("OHLORA_TRUST_REMOTE_CODE"),
        }


_PROFILE_VARIABLES = {"name": "OHLORA_PROFILE", "device": "OHLORA_DEVICE", "base_models": "OHLORA_BASE_MODELS"}


def default_resources() -> dict[str, object]:
    """The project's resources, configured from the environment (see `SETTINGS`)."""
    check_settings()  # a malformed value fails the load, not a run hours later
    return {
        "paths": DataPaths.configured(),
        "store": ArtifactStore.configured(),
        "profile": ModelProfile.configured(),
        # asset values live beside the artifacts; the IO manager's folder is fixed when the definitions load
        "io_manager": AtomicFilesystemIOManager(base_dir=str(ArtifactStore.from_env().path("io"))),
        # the training assets' `launcher: pipes` (ohlora_assets/launchers.py); deploy/README.md swaps in
        # a Kubernetes or Docker client for GPU machines
        "pipes_client": subprocess_training_client(),
    }
