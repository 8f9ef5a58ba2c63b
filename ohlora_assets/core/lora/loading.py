"""Loading a base model for training, and a saved adapter for generation, with plain transformers/PEFT."""

from __future__ import annotations

from pathlib import Path

from ohlora_assets.core.base_models import ModelSpec
from ohlora_assets.core.device import model_dtype, resolve_device


def load_base_model(source: ModelSpec, device: str):
    """(model on `device`, tokenizer) of a causal LM: a hub id or a local directory."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    kwargs = {"revision": source.revision, "trust_remote_code": source.trust_remote_code}
    tokenizer = AutoTokenizer.from_pretrained(source.model, **kwargs)
    model = AutoModelForCausalLM.from_pretrained(source.model, dtype=model_dtype(device), **kwargs).to(device)
    return model, tokenizer


def load_adapter(adapter_dir: str | Path, device: str = "cpu", trust_remote_code: bool = False):
    """(model, tokenizer) of a saved adapter with plain PEFT: the base model comes from adapter_config.json."""
    from peft import AutoPeftModelForCausalLM
    from transformers import AutoTokenizer

    device = resolve_device(device)
    model = AutoPeftModelForCausalLM.from_pretrained(
        str(adapter_dir), dtype=model_dtype(device), trust_remote_code=trust_remote_code
    )
    tokenizer = AutoTokenizer.from_pretrained(str(adapter_dir), trust_remote_code=trust_remote_code)
    return model.to(device).eval(), tokenizer
