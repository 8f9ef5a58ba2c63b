"""Loading a base model for training, and a saved adapter for generation, with plain transformers/PEFT."""

from __future__ import annotations

from pathlib import Path

from ohlora_assets.core.base_models import ModelSpec, moved_built_base
from ohlora_assets.core.device import model_dtype, resolve_device


class BaseModelError(ValueError):
    """A base model folder that cannot be trained on, named with what is wrong and how to fix it."""


def check_base_folder(path: Path) -> None:
    """BaseModelError for a local folder that is not a whole causal LM with its tokenizer."""
    if (path / "adapter_config.json").is_file() and not (path / "config.json").is_file():
        # transformers would load the adapter's own base with the adapter attached: the new adapter would train
        # on that, then be saved naming the plain base, and serve without the old adapter.
        raise BaseModelError(f"{path} is a PEFT adapter, not a base model: give the model it was trained on, or "
                             "merge it first (PeftModel.merge_and_unload(), then save_pretrained)")
    if not (path / "config.json").is_file():
        raise BaseModelError(f"{path} has no config.json: not a transformers model folder (save_pretrained writes one)")
    if not any((path / name).is_file() for name in ("tokenizer.json", "tokenizer_config.json", "tokenizer.model")):
        raise BaseModelError(f"{path} has no tokenizer (tokenizer.json or tokenizer_config.json): save the "
                             "tokenizer beside the weights (tokenizer.save_pretrained)")


def load_base_model(source: ModelSpec, device: str):
    """(model on `device`, tokenizer) of a causal LM: a hub id or a local directory."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if Path(source.model).is_dir():
        check_base_folder(Path(source.model))
    kwargs = {"revision": source.revision, "trust_remote_code": source.trust_remote_code}
    tokenizer = AutoTokenizer.from_pretrained(source.model, **kwargs)
    if tokenizer.eos_token_id is None:  # every completion ends in EOS, and generation stops on it
        raise BaseModelError(f"{source.model}: its tokenizer has no eos_token; the adapters learn to end each "
                             "answer with it (set eos_token in tokenizer_config.json)")
    model = AutoModelForCausalLM.from_pretrained(source.model, dtype=model_dtype(device), **kwargs).to(device)
    return model, tokenizer


def moved_base(adapter_dir: Path) -> Path | None:
    """Where the base an adapter names now lies, when its folder moved with the artifact folder: the same place
    in the base_models registry beside an ancestor of the adapter (`moved_built_base`)."""
    import json

    named = json.loads((adapter_dir / "adapter_config.json").read_text(encoding="utf-8")).get("base_model_name_or_path")
    return moved_built_base(named, adapter_dir.resolve().parents) if named else None


def load_adapter(adapter_dir: str | Path, device: str = "cpu", trust_remote_code: bool = False):
    """(model, tokenizer) of a saved adapter with plain PEFT: the base model comes from adapter_config.json (or
    from where the artifact folder holds it now, `moved_base`)."""
    from peft import AutoPeftModelForCausalLM, PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    device = resolve_device(device)
    kwargs = {"dtype": model_dtype(device), "trust_remote_code": trust_remote_code}
    if (base := moved_base(Path(adapter_dir))) is not None:
        model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(base, **kwargs), str(adapter_dir))
    else:
        model = AutoPeftModelForCausalLM.from_pretrained(str(adapter_dir), **kwargs)
    tokenizer = AutoTokenizer.from_pretrained(str(adapter_dir), trust_remote_code=trust_remote_code)
    return model.to(device).eval(), tokenizer
