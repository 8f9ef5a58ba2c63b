"""Settings: every variable with its default, resolved by Dagster when a run starts (`dg.EnvVar`) and by
`from_env()` outside Dagster; the artifact folder does not depend on the current directory."""

from __future__ import annotations

import json

import dagster as dg
import pytest

from ohlora_assets.resources import (
    PROJECT_ROOT,
    SETTINGS,
    ArtifactStore,
    DataPaths,
    ModelProfile,
    SettingsError,
    check_settings,
    default_resources,
    flag,
    parse_base_models,
)


@pytest.fixture
def clean_env(monkeypatch):
    for variable in [*SETTINGS, "OHLORA_MLFLOW_URI", "MLFLOW_TRACKING_URI"]:
        monkeypatch.delenv(variable, raising=False)
    return monkeypatch


def _resolved(resources: dict) -> dict:
    """What an asset sees of the resources in a real run."""
    seen = {}

    @dg.asset
    def probe(paths: DataPaths, store: ArtifactStore, profile: ModelProfile):
        seen.update(
            ethics_csv=paths.ethics_csv, root=store.root, name=profile.name, smoke=profile.smoke, device=profile.device,
            overrides=profile.base_model_overrides, trust_remote_code=profile.trust_remote_code,
        )

    with dg.instance_for_test() as instance:
        assert dg.materialize([probe], resources=resources, instance=instance).success
    return seen


def test_unset_variables_give_the_defaults_whatever_the_current_directory(clean_env, tmp_path):
    clean_env.chdir(tmp_path)
    expected = {
        "ethics_csv": str(PROJECT_ROOT / "data" / "ethics_dataset.csv"), "root": str(PROJECT_ROOT / ".ohlora"),
        "name": "embedded", "smoke": False, "device": "auto", "overrides": {}, "trust_remote_code": False,
    }
    resources = default_resources()
    assert _resolved(resources) == expected
    assert resources["io_manager"].base_dir == str(PROJECT_ROOT / ".ohlora" / "io")
    profile = ModelProfile.from_env()
    assert (profile.name, profile.device, profile.base_model_overrides, profile.trust_remote_code) == ("embedded", "auto", {}, False)
    assert ArtifactStore.from_env().root == str(PROJECT_ROOT / ".ohlora")


def test_set_variables_are_env_vars_named_in_the_ui_and_resolved_when_a_run_starts(clean_env, tmp_path):
    settings = {
        "OHLORA_ETHICS_CSV": str(tmp_path / "mine.csv"),
        "OHLORA_HOME": str(tmp_path / "artifacts"),
        "OHLORA_PROFILE": "full",
        "OHLORA_SMOKE": "1",
        "OHLORA_DEVICE": "cpu",
        "OHLORA_BASE_MODELS": f"memory={tmp_path}, summary=kakaocorp/kanana-1.5-2.1b-base@abc123",
        "OHLORA_TRUST_REMOTE_CODE": "true",
    }
    for variable, value in settings.items():
        clean_env.setenv(variable, value)
    resources = default_resources()
    # the definitions hold the variable's name, not its value: the UI (which reads this snapshot of the
    # code location) shows where a value comes from
    from dagster._core.remote_representation.external_data import RepositorySnap, ResourceConfigEnvVarSnap

    snap = RepositorySnap.from_def(dg.Definitions(resources=resources).get_repository_def())
    shown = {(r.name, field): value for r in snap.resources for field, value in r.configured_values.items()}
    assert shown[("store", "root")] == ResourceConfigEnvVarSnap(name="OHLORA_HOME")
    assert shown[("profile", "device")] == ResourceConfigEnvVarSnap(name="OHLORA_DEVICE")
    assert shown[("profile", "base_models")] == ResourceConfigEnvVarSnap(name="OHLORA_BASE_MODELS")
    assert shown[("paths", "ethics_csv")] == ResourceConfigEnvVarSnap(name="OHLORA_ETHICS_CSV")
    overrides = {"memory": str(tmp_path), "summary": "kakaocorp/kanana-1.5-2.1b-base@abc123"}
    expected = {
        "ethics_csv": str(tmp_path / "mine.csv"), "root": str(tmp_path / "artifacts"), "name": "full", "smoke": True,
        "device": "cpu", "overrides": overrides, "trust_remote_code": True,
    }
    assert _resolved(resources) == expected
    # a run reads the variables when it starts, not when the definitions loaded
    clean_env.setenv("OHLORA_DEVICE", "cuda:1")
    assert _resolved(resources)["device"] == "cuda:1"

    # outside Dagster (the ohlora command) the same variables, including what from_env once ignored
    profile = ModelProfile.from_env()
    assert (profile.name, profile.smoke, profile.device, profile.trust_remote_code) == ("full", True, "cuda:1", True)
    assert profile.base_model_overrides == overrides


@pytest.mark.parametrize(
    "text, expected",
    [
        ("", {}),
        ("memory=/m", {"memory": "/m"}),
        (" memory = /m , ethics=klue/roberta-base@v1,", {"memory": "/m", "ethics": "klue/roberta-base@v1"}),
        ('{"summary": "a/b@c", "memory": "/d"}', {"summary": "a/b@c", "memory": "/d"}),
    ],
)
def test_base_models_as_pairs_or_json(text, expected):
    assert parse_base_models(text) == expected


@pytest.mark.parametrize("text", ["memory", "=model", "memory=", '["memory"]', '{"memory": 3}'])
def test_malformed_base_models_are_refused(text):
    with pytest.raises(ValueError):
        parse_base_models(text)


def test_base_model_overrides_from_python_and_from_the_environment_agree(clean_env, tmp_path):
    overrides = {"memory": str(tmp_path)}
    clean_env.setenv("OHLORA_BASE_MODELS", json.dumps(overrides))
    assert ModelProfile(base_model_overrides=overrides).base_model_overrides == overrides
    assert ModelProfile.from_env().base_model_overrides == overrides


@pytest.mark.parametrize("text, on", [("1", True), ("true", True), ("yes", True), ("0", False), ("false", False), ("off", False), ("", False)])
def test_on_off_settings(clean_env, text, on):
    clean_env.setenv("OHLORA_SMOKE", text)
    clean_env.setenv("OHLORA_TRUST_REMOTE_CODE", text)
    profile = ModelProfile.from_env()
    assert profile.smoke is on and profile.trust_remote_code is on


def test_readme_lists_every_setting():
    readme = (PROJECT_ROOT / "README.md").read_text(encoding="utf-8")
    for variable in [*SETTINGS, "OHLORA_AUTOMATION", "OHLORA_OBSERVE_CRON", "OHLORA_TORCH_THREADS", "DAGSTER_HOME"]:
        assert f"| `{variable}`" in readme, variable


@pytest.mark.parametrize("typo", ["of", "fasle", "nope", "n", "enabled", "2"])
def test_an_on_off_setting_with_a_typo_is_refused_not_taken_for_on(clean_env, typo):
    # OHLORA_SMOKE=of once meant "on": smoke budgets, and a promotion gate open to smoke-trained models.
    clean_env.setenv("OHLORA_SMOKE", typo)
    with pytest.raises(ValueError, match=f"OHLORA_SMOKE='{typo}': expected on"):
        ModelProfile.from_env()
    with pytest.raises(ValueError, match="OHLORA_AUTOMATION"):
        flag("OHLORA_AUTOMATION", typo)


@pytest.mark.parametrize(
    "variable, value, expected",
    [
        ("OHLORA_PROFILE", "foo", "expected one of embedded, small, full"),
        ("OHLORA_PROFILE", "", "expected one of embedded, small, full"),
        ("OHLORA_DEVICE", "gpu0", "expected auto, cpu, cuda or cuda:N"),
        ("OHLORA_DEVICE", "mps", "expected auto, cpu, cuda or cuda:N"),
        ("OHLORA_BASE_MODELS", "memroy=/x", "unknown tasks ['memroy']"),
        ("OHLORA_BASE_MODELS", "{not json", "not a JSON object"),
        ("OHLORA_BASE_MODELS", "summary=/models/no-such-model", "is written as a folder, but there is no folder"),
        ("OHLORA_BASE_MODELS", "ethics=~/no-such-encoder", "is written as a folder, but there is no folder"),
        ("OHLORA_TORCH_THREADS", "0", "1 or more"),
        ("OHLORA_TORCH_THREADS", "abc", "1 or more"),
        ("OHLORA_HOME", "", "empty would write into the current directory"),
        ("OHLORA_HOME", "/etc/passwd/x", "/etc/passwd is a file"),
        ("OHLORA_TRUST_REMOTE_CODE", "nope", "expected on"),
        ("OHLORA_MLFLOW_URI", "htp://127.0.0.1:5000", "no MLflow tracking store has the scheme 'htp'"),
        ("MLFLOW_TRACKING_URI", "s3://bucket/runs", "no MLflow tracking store has the scheme 's3'"),
        # mlflow 3 refuses folder stores unless MLFLOW_ALLOW_FILE_STORE is set: every training would fail to track
        ("OHLORA_MLFLOW_URI", "/srv/mlruns", "this mlflow refuses folder stores"),
        ("OHLORA_MLFLOW_URI", "file:///srv/mlruns", "use sqlite:///<folder>/mlflow.db"),
    ],
)
def test_a_bad_setting_fails_the_definitions_load_naming_the_variable(clean_env, variable, value, expected):
    clean_env.setenv(variable, value)
    with pytest.raises(ValueError) as caught:
        default_resources()
    assert f"{variable}=" in str(caught.value) or variable in str(caught.value)
    assert expected in str(caught.value)


@pytest.mark.parametrize("uri", ["http://127.0.0.1:5000", "sqlite:///runs.db",
                                 "postgresql+psycopg2://ohlora@db/mlflow", "databricks"])
def test_tracking_uris_mlflow_opens_pass_the_check(clean_env, uri):
    clean_env.setenv("OHLORA_MLFLOW_URI", uri)
    check_settings()


def test_a_folder_store_passes_once_mlflow_is_told_to_open_it(clean_env):
    clean_env.setenv("OHLORA_MLFLOW_URI", "/srv/mlruns")
    clean_env.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    check_settings()


def test_every_problem_is_named_at_once(clean_env):
    clean_env.setenv("OHLORA_PROFILE", "Embedded")
    clean_env.setenv("OHLORA_DEVICE", "gpu")
    with pytest.raises(ValueError) as caught:
        check_settings()
    assert "OHLORA_PROFILE" in str(caught.value) and "OHLORA_DEVICE" in str(caught.value)


def test_a_cuda_device_this_machine_lacks_is_named(clean_env):
    import torch

    from ohlora_assets.core.device import resolve_device

    present = torch.cuda.device_count() if torch.cuda.is_available() else 0
    with pytest.raises(SettingsError, match=f"device 'cuda:{present}' \\(OHLORA_DEVICE.*has {present} CUDA"):
        resolve_device(f"cuda:{present}")
