"""An adapter version is its weights and the base it applies to (core/model_training.py)."""

import json
import shutil
from pathlib import Path

import pandas as pd

from ohlora_assets.core.base_models import parse_override
from ohlora_assets.core.lora import load_adapter
from ohlora_assets.core.model_training import TrainingProfile, train_adapter_version

from .conftest import PAIRS


def _train(base_dir, home):
    split = pd.DataFrame({"source_row": range(len(PAIRS)), "prompt": [p for p, _ in PAIRS],
                          "completion": [c for _, c in PAIRS], "has_label": True, "split": "train"})
    profile = TrainingProfile(name="full", smoke=True, device="cpu")
    return train_adapter_version("output_message", split, None, parse_override(str(base_dir)), {"epochs": 1},
                                 profile, home, None, lambda line: None)


def test_the_same_weights_on_a_moved_base_are_a_new_version_naming_the_new_folder(base, tmp_path):
    """A user moves their base model to another disk and retrains: same data, seed and weights, but the
    version must name the folder that exists, or it would never load again."""
    old, new = tmp_path / "disk1" / "lm", tmp_path / "disk2" / "lm"
    shutil.copytree(base, old)
    first = _train(old, tmp_path / "home")
    shutil.move(old, new)
    second = _train(new, tmp_path / "home")
    assert second.version != first.version
    config = json.loads((second.path / "adapter_config.json").read_text())
    assert config["base_model_name_or_path"] == str(new)
    load_adapter(second.path)
    assert _train(new, tmp_path / "home").version == second.version  # still one version per weights and base


def test_an_adapter_still_loads_after_the_artifact_folder_moved(base, tmp_path):
    """Adapters name their base by absolute path; a restored or re-mounted OHLORA_HOME moves both."""
    from ohlora_assets.core.base_models import ModelSpec
    from ohlora_assets.core.lora import LoraHyperParams, train_lora_adapter
    from ohlora_assets.core.registry import version_in_path

    models = tmp_path / "home" / "models"
    built = models / "base_models" / "versions" / "0123456789abcdef" / "embedded_lm"
    shutil.copytree(base, built)
    adapter = models / "adapter_memory" / "versions" / "fedcba9876543210"
    train_lora_adapter(ModelSpec(str(built), device="cpu"), PAIRS, [], LoraHyperParams(rank=2, epochs=1), adapter)
    shutil.move(tmp_path / "home", tmp_path / "restored")
    moved = tmp_path / "restored" / "models" / "adapter_memory" / "versions" / "fedcba9876543210"
    named = json.loads((moved / "adapter_config.json").read_text())["base_model_name_or_path"]
    assert named == str(built) and not built.exists()
    model, _ = load_adapter(moved)
    assert model.peft_config["default"].r == 2
    assert version_in_path(named, "base_models") == ("0123456789abcdef", Path("embedded_lm"))  # what prune keeps
