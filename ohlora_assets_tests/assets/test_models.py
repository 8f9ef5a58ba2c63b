"""The models group on a real ephemeral instance, in the smoke profile: base model, four adapters, checks."""

import json
import re
from pathlib import Path

import dagster as dg
import pytest
from peft import PeftModel
from transformers import AutoModelForCausalLM

from ohlora_assets.assets import base_models, data, models
from ohlora_assets.core.base_models import EMBEDDED_LM
from ohlora_assets.core.promotion import MIN_LOSS_DECREASE
from ohlora_assets.core.recipes import SMOKE
from ohlora_assets.core.registry import ModelRegistry
from ohlora_assets.core.formats import TASKS
from ohlora_assets.core.io import directory_hash
from ohlora_assets.resources import ArtifactStore, ModelProfile
from ohlora_assets_tests.conftest import make_resources, smoke_materialization

DATA_ASSETS = dg.load_assets_from_modules([data])
MODEL_ASSETS = dg.load_assets_from_modules([base_models, models])
MODEL_CHECKS = dg.load_asset_checks_from_modules([models])
ADAPTERS = [f"adapter_{task}" for task in TASKS]


def _materializations(result: dg.ExecuteInProcessResult) -> dict[str, dg.AssetMaterialization]:
    return {e.asset_key.to_user_string(): e.materialization for e in result.get_asset_materialization_events()}


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory):
    """Data, base model, the four adapters and their checks, materialized once for this module."""
    result, instance, resources = smoke_materialization(
        tmp_path_factory.mktemp("store"), [*DATA_ASSETS, *MODEL_ASSETS, *MODEL_CHECKS],
        run_config={"ops": {"adapter_memory": {"config": {"rank": 4}}}},
    )
    return result, resources, instance


def test_whole_models_group_materializes_in_the_smoke_profile(smoke_run):
    result, resources, _ = smoke_run
    assert result.success
    store: ArtifactStore = resources["store"]
    base = result.output_for_node("base_models")
    meta = _materializations(result)
    # The base is an immutable version that serves at once (it has no gate; its adapters do).
    base_version = meta["base_models"].metadata["version"].value
    embedded = store.model_dir("base_models") / "versions" / base_version / EMBEDDED_LM
    assert ModelRegistry(store.path("models"), "base_models").serving_label() == base_version
    assert base == {task: {"model": str(embedded.resolve()), "revision": None, "source": "embedded"} for task in TASKS}
    assert meta["base_models"].metadata["final_loss"].value < meta["base_models"].metadata["first_loss"].value
    assert meta["base_models"].tags["dagster/data_version"] != ""

    for name in ADAPTERS:
        metadata = meta[name].metadata
        # Each training writes a version named by its weights; nothing serves before the promotion assets run.
        directory = Path(metadata["path"].value)
        assert directory == store.model_dir(name) / "versions" / metadata["version"].value
        assert ModelRegistry(store.path("models"), name).serving() is None
        # The data version is the hash of the saved weights.
        assert meta[name].tags["dagster/data_version"] == directory_hash(directory)
        assert metadata["base_model"].value == str(embedded.resolve())
        assert metadata["base_model_revision"].value == "sha256:" + directory_hash(embedded)[:16]
        assert metadata["tokens_per_s"].value > 0 and metadata["peak_memory_mb"].value > 0
        assert [record.data["epoch"] for record in metadata["per_epoch"].records] == list(range(1, SMOKE.adapter_epochs + 1))
        assert "data:image/png;base64," in metadata["loss_curve"].value
        # kept per version: a refused candidate's curve never replaces the serving version's
        assert (store.report_dir(name) / metadata["version"].value / "loss_curve.png").stat().st_size > 1000
        assert metadata["train_examples"].value == SMOKE.adapter_train_rows
        config = json.loads((directory / "adapter_config.json").read_text())
        assert config["base_model_name_or_path"] == str(embedded.resolve())

    # Run config reaches the trainer and is recorded; other tasks keep the original defaults.
    assert json.loads((Path(meta["adapter_memory"].metadata["path"].value) / "adapter_config.json").read_text())["r"] == 4
    assert json.loads((Path(meta["adapter_summary"].metadata["path"].value) / "adapter_config.json").read_text())["r"] == 64
    assert re.search(r"\|\s*rank\s*\|\s*4\s*\|", meta["adapter_memory"].metadata["hyper_parameters"].value)
    # Each training checkpointed its epochs (to resume a killed run) and removed the checkpoint once saved.
    assert not list(store.path("checkpoints").rglob("*.pt"))
    assert all(meta[name].metadata["resumed_epochs"].value == 0 for name in ADAPTERS)
    # Only output_message has labelled validation rows in our sample data.
    assert meta["adapter_output_message"].metadata["final_valid_loss"].value is not None


def test_adapters_load_with_plain_peft(smoke_run):
    result, _, _ = smoke_run
    directory = Path(_materializations(result)["adapter_eyes_mouth_pose"].metadata["path"].value)
    config = json.loads((directory / "adapter_config.json").read_text())
    base = AutoModelForCausalLM.from_pretrained(config["base_model_name_or_path"])
    model = PeftModel.from_pretrained(base, directory)
    assert sum(p.numel() for n, p in model.named_parameters() if "lora_" in n) > 0


def test_checks_run_for_every_adapter(smoke_run):
    result, _, _ = smoke_run
    evaluations = {
        (e.asset_key.to_user_string(), e.check_name): e
        for e in result.get_asset_check_evaluations()
        if e.asset_key.to_user_string() in ADAPTERS
    }
    assert set(evaluations) == {(name, check) for name in ADAPTERS for check in ("generates_to_end_mark", "loss_decreased")}
    for name in ADAPTERS:
        generation = evaluations[(name, "generates_to_end_mark")].metadata
        assert generation["prompts"].value == models.CHECK_PROMPTS
        assert 0 <= generation["stopped_at_end_mark"].value <= models.CHECK_PROMPTS
        loss = evaluations[(name, "loss_decreased")]
        assert loss.passed == (loss.metadata["final"].value < loss.metadata["first"].value * (1 - MIN_LOSS_DECREASE))


def test_same_inputs_give_the_same_adapter(smoke_run):
    """Rematerializing an adapter on the same data and seed reproduces its weights (and data version)."""
    result, resources, instance = smoke_run
    before = _materializations(result)["adapter_summary"].tags["dagster/data_version"]
    again = dg.materialize(
        [*DATA_ASSETS, *MODEL_ASSETS], selection=["adapter_summary"], resources=resources, instance=instance
    )
    assert again.success
    assert _materializations(again)["adapter_summary"].tags["dagster/data_version"] == before


def test_full_profile_resolves_hub_ids_and_overrides_without_downloading(tmp_path):
    local = tmp_path / "my_polyglot"
    local.mkdir()
    resources = make_resources(tmp_path / "store")
    resources["profile"] = ModelProfile(
        name="full", base_model_overrides={"memory": str(local), "summary": "kakaocorp/kanana-1.5-2.1b-base@abc123"}
    )
    result = dg.materialize([*DATA_ASSETS, base_models.base_models], resources=resources, instance=dg.DagsterInstance.ephemeral())
    assert result.success
    base = result.output_for_node("base_models")
    assert base["output_message"] == {
        "model": "kakaocorp/kanana-1.5-2.1b-instruct-2505", "revision": None, "source": "hub"
    }
    assert base["summary"] == {"model": "kakaocorp/kanana-1.5-2.1b-base", "revision": "abc123", "source": "hub"}
    assert base["memory"] == {"model": str(local.resolve()), "revision": None, "source": "local"}
    assert base["eyes_mouth_pose"]["model"] == "EleutherAI/polyglot-ko-1.3b"
    assert not Path(resources["store"].model_dir("base_models")).exists()
