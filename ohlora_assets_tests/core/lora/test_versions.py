"""An adapter version is its weights and the base it applies to (core/model_training.py)."""

import json
import shutil

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
