"""Gemma-3-270M (the `small` profile's base): the GGUF package's file becomes a plain HF directory,
and a LoRA adapter trains on it, reloads with plain PEFT and generates. Skipped without the extra,
whose absence must give an error that names it.

This is the CI smoke test of a real pretrained checkpoint: one conversion per session (~1.5 min on two
cores), a two-step LoRA run and a few generated tokens. It checks that the path works, not quality.
"""

import importlib.util
import json
import sys
import time
from pathlib import Path

import pytest
import torch
from peft import AutoPeftModelForCausalLM
from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

from ohlora_assets.core.base_models import ModelSpec
from ohlora_assets.core.device import limit_torch_threads
from ohlora_assets.core.formats import TASK_FORMATS
from ohlora_assets.core.gemma import (
    GGUF_DISTRIBUTION,
    GGUF_MODULE,
    INSTALL_HINT,
    NOTICE_FILE,
    SOURCE_RECORD,
    TERMS_FILE,
    SmallExtraMissing,
    convert_to_hf,
    gguf_file,
)
from ohlora_assets.core.generation import SamplingSettings, generate_answers
from ohlora_assets.core.io import directory_hash
from ohlora_assets.core.lora import LoraHyperParams, encode_pairs, target_modules_for, train_lora_adapter

needs_small = pytest.mark.skipif(
    importlib.util.find_spec(GGUF_MODULE) is None or importlib.util.find_spec("gguf") is None,
    reason=f"needs the `small` extra ({GGUF_DISTRIBUTION} and gguf): {INSTALL_HINT}",
)

FORMAT = TASK_FORMATS["output_message"]
# Our own tiny dialogue in the v4 output_message format.
PAIRS = [
    (FORMAT.prompt({"input_data": question}), FORMAT.completion(answer))
    for question, answer in [
        ("안녕", "안녕! 오늘 하루는 어땠어?"),
        ("오늘 비 온대", "우산 꼭 챙겨! 감기 조심하고"),
        ("배고파", "맛있는 거 먹으러 가자!"),
        ("주말에 뭐 해?", "나는 책 읽으면서 쉴 거야"),
    ]
]


def test_without_the_package_the_error_names_the_extra(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, GGUF_MODULE, None)  # what an uninstalled package looks like to import
    with pytest.raises(SmallExtraMissing, match=r"pip install -e '\.\[small\]'"):
        gguf_file(tmp_path)
    with pytest.raises(SmallExtraMissing, match=GGUF_DISTRIBUTION):
        convert_to_hf(tmp_path / "gemma")
    assert not (tmp_path / "gemma").exists()


@pytest.fixture(scope="session")
def gemma(tmp_path_factory):
    """The converted base, once per session (the GGUF is assembled beside it, not in ~/.cache)."""
    root = tmp_path_factory.mktemp("gemma")
    limit_torch_threads()  # OHLORA_TORCH_THREADS, default 2: the figures printed below are for CI's two cores
    started = time.perf_counter()
    result = convert_to_hf(root / "gemma3_270m", cache_dir=root / "gguf")
    print(f"\nconversion: {time.perf_counter() - started:.1f} s wall ({result.wall_s:.1f} s recorded)")
    return result


@pytest.fixture(scope="session")
def tokenizer(gemma):
    return AutoTokenizer.from_pretrained(gemma.directory)


@needs_small
@pytest.mark.slow
def test_the_converted_directory_is_a_plain_gemma3_that_loads_without_gguf(gemma, tokenizer):
    directory = gemma.directory
    gemma_path = Path(directory)
    config = json.loads((gemma_path / "config.json").read_text())
    assert "quantization_config" not in config
    assert not list(gemma_path.glob("*.gguf"))
    model = AutoModelForCausalLM.from_pretrained(directory)  # no gguf_file: safetensors only
    assert type(model).__name__ == "Gemma3ForCausalLM" and model.config.model_type == "gemma3_text"
    assert model.dtype == torch.float32
    parameters = sum(p.numel() for p in model.parameters())
    assert parameters == gemma.parameters and 265e6 < parameters < 271e6
    assert (tokenizer.eos_token, tokenizer.pad_token) == ("<eos>", "<pad>")
    assert (tokenizer.eos_token_id, tokenizer.pad_token_id) == (gemma.eos_token_id, gemma.pad_token_id) == (1, 0)
    assert gemma.vocab_size == model.config.vocab_size == 262144
    assert gemma.data_version == directory_hash(directory)
    # The Gemma terms travel with the derived weights.
    assert (gemma_path / TERMS_FILE).stat().st_size > 10_000
    assert "ai.google.dev/gemma/terms" in (gemma_path / NOTICE_FILE).read_text()

    again = convert_to_hf(directory)
    assert not again.converted and again.data_version == gemma.data_version
    record = json.loads((gemma_path / SOURCE_RECORD).read_text())
    assert record["source_sha256"] == gemma.source_sha256 and len(gemma.source_sha256) == 64


@needs_small
@pytest.mark.slow
def test_v4_prompts_tokenize_with_bos_and_completions_end_with_eos(tokenizer):
    (encoded,), truncated = encode_pairs(tokenizer, PAIRS[:1], 48)
    prompt_tokens = tokenizer.convert_ids_to_tokens(encoded.ids[: encoded.n_prompt])
    assert truncated == 0
    assert prompt_tokens[0] == "<bos>" and prompt_tokens[-2:] == ["▁답변", ":"]
    assert encoded.ids[-1] == tokenizer.eos_token_id
    # The completion is short: Korean is not spelled out byte by byte in Gemma's vocabulary.
    assert len(encoded.ids) - encoded.n_prompt < 20


@needs_small
def test_lora_targets_every_projection_of_a_gemma3_block(gemma):
    config = AutoConfig.from_pretrained(gemma.directory)
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config)
    block = model.model.layers[0]
    projections = {name.rsplit(".", 1)[-1] for name, m in block.named_modules() if isinstance(m, torch.nn.Linear)}
    assert projections == {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"}
    assert set(target_modules_for(config.model_type) or []) == projections


@needs_small
@pytest.mark.slow
def test_a_lora_adapter_trains_reloads_with_plain_peft_and_generates(gemma, tmp_path):
    adapter_dir = tmp_path / "adapter"
    hp = LoraHyperParams(rank=4, epochs=1, batch_size=2, max_length=48)
    result = train_lora_adapter(ModelSpec(gemma.directory, device="cpu"), PAIRS, PAIRS[:2], hp, adapter_dir)
    assert result.steps == 2 and result.train_examples == 4 and result.truncated_examples == 0
    assert 0 < result.final_train_loss < 20 and result.epochs[0].valid_loss is not None
    assert 0 < result.trainable_params < result.total_params / 100
    print(
        f"\nLoRA: {result.epochs[0].wall_s / result.steps:.2f} s/step (batch 2, validation included), "
        f"{result.tokens_per_s:.0f} tokens/s, loss {result.final_train_loss:.3f}, targets {result.target_modules}, "
        f"trainable {result.trainable_params}, peak RSS {result.peak_memory_mb:.0f} MB"
    )

    # Plain PEFT: the base comes from adapter_config.json, the converted directory.
    model = AutoPeftModelForCausalLM.from_pretrained(str(adapter_dir))
    assert model.peft_config["default"].base_model_name_or_path == gemma.directory
    tokenizer = AutoTokenizer.from_pretrained(str(adapter_dir))
    run = generate_answers(model, tokenizer, [p for p, _ in PAIRS[:2]], "output_message", 1,
                           SamplingSettings(temperature=0.6, max_new_tokens=12, max_retries=0))
    assert len(run.answers) == 2 and run.generated_tokens > 0
    assert all(a.raw.strip() for a in run.answers)
    # Two steps teach no end mark; whether one was reached is reported, not required.
    print(f"generation: {run.tokens_per_s:.1f} tokens/s, reached the end mark: "
          f"{[a.terminated for a in run.answers]}, raw: {[a.raw for a in run.answers]}")


@needs_small
def test_the_small_profile_serves_the_converted_base_to_every_task(gemma, tmp_path):
    """base_models on `small` reuses a serving conversion of the same GGUF (registered here from the session's,
    hard-linked), maps every task to it, and records the conversion and the Gemma terms."""
    import os
    import shutil

    import dagster as dg

    from ohlora_assets.assets import base_models, data
    from ohlora_assets.core.base_models import GEMMA_3_270M
    from ohlora_assets.core.formats import TASKS
    from ohlora_assets.core.registry import ModelRegistry
    from ohlora_assets.resources import ModelProfile
    from ohlora_assets_tests.conftest import make_resources

    resources = make_resources(tmp_path / "store")
    resources["profile"] = ModelProfile(name="small")
    registry = ModelRegistry(resources["store"].path("models"), "base_models")
    with registry.write_version(data_version=gemma.data_version) as pending:
        shutil.copytree(gemma.directory, pending.path / GEMMA_3_270M, copy_function=os.link)
    registry.promote(pending.version, "converted by the test session")
    result = dg.materialize(
        [*dg.load_assets_from_modules([data]), base_models.base_models], resources=resources,
        selection=["dialogue_dataset", "ml_qa_dataset", "base_models"], instance=dg.DagsterInstance.ephemeral(),
    )
    assert result.success
    served = str((registry.get(pending.version).path / GEMMA_3_270M).resolve())
    assert result.output_for_node("base_models") == {
        task: {"model": served, "revision": None, "source": "small"} for task in TASKS
    }
    (event,) = [e for e in result.get_asset_materialization_events() if e.asset_key.to_user_string() == "base_models"]
    assert event.materialization.metadata["converted_now"].value is False
    assert event.materialization.metadata["version"].value == pending.version
    assert "268098176" in event.materialization.metadata["conversion"].value
