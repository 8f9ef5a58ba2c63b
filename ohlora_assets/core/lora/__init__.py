"""LoRA adapters: training (training.py) on tokenized batches (batching.py), saved and loaded as plain
PEFT (loading.py). The fused CPU layer (fused.py, which imports peft) is imported by training alone.

    from ohlora_assets.core.lora import LoraHyperParams, train_lora_adapter, load_adapter
"""

from ohlora_assets.core.lora.batching import (
    Encoded,
    Pairs,
    causal_lm_of,
    collate,
    completion_loss,
    encode_pairs,
    evaluate_loss,
    length_grouped_batches,
)
from ohlora_assets.core.lora.flat import FlatTrainables
from ohlora_assets.core.lora.loading import load_adapter, load_base_model
from ohlora_assets.core.lora.training import (
    TARGET_MODULES,
    TRAINING_LOG,
    EpochStats,
    LoraHyperParams,
    LoraTrainResult,
    read_training_log,
    target_modules_for,
    train_lora_adapter,
)

__all__ = [
    "TARGET_MODULES",
    "TRAINING_LOG",
    "Encoded",
    "EpochStats",
    "FlatTrainables",
    "LoraHyperParams",
    "LoraTrainResult",
    "Pairs",
    "causal_lm_of",
    "collate",
    "completion_loss",
    "encode_pairs",
    "evaluate_loss",
    "length_grouped_batches",
    "load_adapter",
    "load_base_model",
    "read_training_log",
    "target_modules_for",
    "train_lora_adapter",
]
