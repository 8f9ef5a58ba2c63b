"""Training through Dagster Pipes in a real subprocess (`python -m ohlora_assets.pipes_training`), smoke profile.

The remote launcher must give what the in-process one gives for the same seed (the same weights, data version
and deterministic metadata), stream the progress lines back as logs, write a registry version that loads, and
turn a remote crash into a failed step that names the remote error and leaves the serving model as it was.
"""

import json
import os
import subprocess
import sys

import dagster as dg
import pytest

from ohlora_assets.assets import base_models, data, ethics, models
from ohlora_assets.core.registry import ModelRegistry
from ohlora_assets.pipes_clients import subprocess_training_client
from ohlora_assets.resources import PROJECT_ROOT
from ohlora_assets_tests.conftest import make_resources, step_failure

ASSETS = [*dg.load_assets_from_modules([data, base_models, models, ethics])]
# Values that depend on the weights and the data, not on the clock or the process.
ADAPTER_KEYS = ["version", "path", "hyper_parameters", "first_epoch_train_loss", "final_train_loss",
                "final_valid_loss", "steps", "trainable_params", "train_examples", "target_modules", "base_model"]
ETHICS_KEYS = ["version", "path", "base_model", "train_prompts", "epochs", "seed",
               "final_valid_loss", "final_valid_accuracy", "loss_per_epoch"]


@pytest.fixture(scope="module")
def upstream(tmp_path_factory):
    """The data group, the base models and the ethics pairs, materialized in process once."""
    resources = make_resources(tmp_path_factory.mktemp("store"))
    instance = dg.DagsterInstance.ephemeral()
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("OHLORA_TORCH_THREADS", "1")  # inherited by the Pipes subprocess
        result = dg.materialize(ASSETS, selection=dg.AssetSelection.groups("data") | dg.AssetSelection.assets(
            "base_models", "ethics_pairs"), resources=resources, instance=instance)
        assert result.success
        yield resources, instance


def _train(upstream, asset: str, raise_on_error: bool = True, **config) -> dg.ExecuteInProcessResult:
    resources, instance = upstream
    return dg.materialize(ASSETS, selection=[asset], resources=resources, instance=instance,
                          run_config={"ops": {asset: {"config": config}}}, raise_on_error=raise_on_error)


def _materialization(result: dg.ExecuteInProcessResult) -> tuple[dict, str]:
    (event,) = result.get_asset_materialization_events()
    materialization = event.materialization
    return {k: v.value for k, v in materialization.metadata.items()}, materialization.tags["dagster/data_version"]


def _messages(upstream, result: dg.ExecuteInProcessResult) -> list[str]:
    return [entry.user_message for entry in upstream[1].all_logs(result.run_id)]


def test_the_entry_point_imports_no_dagster_beyond_pipes():
    code = "import sys, ohlora_assets.pipes_training; print(sorted(m for m in sys.modules if m.split('.')[0] == 'dagster'))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={**os.environ, "PYTHONPATH": str(PROJECT_ROOT)}, cwd=PROJECT_ROOT)
    assert out.stdout.strip() == "[]"


@pytest.fixture(scope="module")
def adapter_runs(upstream):
    return _train(upstream, "adapter_memory", launcher="pipes"), _train(upstream, "adapter_memory")


def test_an_adapter_trained_through_pipes_equals_the_in_process_one_and_loads(upstream, adapter_runs):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    remote, local = adapter_runs
    messages = _messages(upstream, remote)
    assert any("[pipes] external process successfully opened" in m for m in messages)
    progress = [m for m in messages if m.startswith("adapter_memory: epoch")]
    assert progress and any("epoch end" in m for m in progress)
    (remote_meta, remote_data), (local_meta, local_data) = _materialization(remote), _materialization(local)
    assert remote_data == local_data and len(remote_data) == 64
    assert {k: remote_meta[k] for k in ADAPTER_KEYS} == {k: local_meta[k] for k in ADAPTER_KEYS}
    assert remote_meta["loss_curve"].startswith("![loss curve](data:image/png;base64,")
    assert f"wrote registry version {remote_meta['version']} (it serves only once promoted)" in messages
    store = upstream[0]["store"]
    version = ModelRegistry(store.path("models"), "adapter_memory").get(remote_meta["version"])
    assert version.data_version == remote_data and str(version.path) == remote_meta["path"]
    config = json.loads((version.path / "adapter_config.json").read_text(encoding="utf-8"))
    base = AutoModelForCausalLM.from_pretrained(config["base_model_name_or_path"])
    adapter = PeftModel.from_pretrained(base, version.path)
    assert any("lora_A" in name for name, _ in adapter.named_parameters())


def test_the_ethics_model_trained_through_pipes_equals_the_in_process_one_and_loads(upstream):
    from sentence_transformers import SentenceTransformer

    remote, local = _train(upstream, "ethics_sbert_model", launcher="pipes"), _train(upstream, "ethics_sbert_model")
    assert any(m.startswith("ethics_sbert_model:") for m in _messages(upstream, remote))
    (remote_meta, remote_data), (local_meta, local_data) = _materialization(remote), _materialization(local)
    assert remote_data == local_data
    assert {k: remote_meta[k] for k in ETHICS_KEYS} == {k: local_meta[k] for k in ETHICS_KEYS}
    model = SentenceTransformer(remote_meta["path"], device="cpu")
    assert model.encode(["안녕하세요"]).shape[0] == 1


def test_a_remote_crash_fails_the_step_with_its_error_and_leaves_serving_alone(upstream, adapter_runs):
    registry = ModelRegistry(upstream[0]["store"].path("models"), "adapter_memory")
    registry.promote(_materialization(adapter_runs[0])[0]["version"], "serving before the crash")
    before = (registry.serving_label(), [v.version for v in registry.versions()])
    # the remote machine's own setting is broken: the training fails there, after the Pipes session opened (a bad
    # run config value would be refused before the run started)
    resources, instance = upstream
    broken_remote = {**resources, "pipes_client": subprocess_training_client(env={"OHLORA_TORCH_THREADS": "0"})}
    result = dg.materialize(ASSETS, selection=["adapter_memory"], resources=broken_remote, instance=instance,
                            run_config={"ops": {"adapter_memory": {"config": {"launcher": "pipes"}}}},
                            raise_on_error=False)
    text = step_failure(result).to_string()
    assert "OHLORA_TORCH_THREADS" in text and "1 or more" in text and "remote training failed" in text
    assert (registry.serving_label(), [v.version for v in registry.versions()]) == before
    assert not list(registry.root.glob(".staging-*"))
