"""Where torch work runs: device and dtype choice, CPU threads, peak memory. One place for all of it."""

from __future__ import annotations

import os
import re
import resource
from collections.abc import Iterator
from contextlib import contextmanager

from ohlora_assets.core.settings import SettingsError

# OpenMP threads that wait passively (sleep) at the end of a parallel region instead of spinning: on a CPU
# shared with other work, a spinning thread burns the core its sibling needs, and every barrier waits for a
# descheduled thread. Measured on the 2-core machine at load 5-6, one pretraining step with 2 threads: 2.44 s
# spinning (the OpenMP default), 0.34 s passive, 0.48 s with 1 thread. Read when torch loads its OpenMP
# runtime, so it is set here, on import (the asset modules import this module before anything imports
# torch); a value already in the environment wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

_DEVICE_NAME = re.compile(r"auto|cpu|cuda(?::\d+)?")


def resolve_device(device: str = "auto") -> str:
    """`auto` is CUDA when present, else CPU; `cuda` or `cuda:N` must be there (a named error, not torch's)."""
    import torch

    check_device_name(device)
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda"):
        present = torch.cuda.device_count() if torch.cuda.is_available() else 0
        index = int(device.partition(":")[2] or 0)
        if index >= present:
            raise SettingsError(f"device {device!r} (OHLORA_DEVICE, or `ohlora chat --device`): this machine has "
                                f"{present} CUDA device(s) (torch {torch.__version__}); use auto or cpu")
    return device


def model_dtype(device: str):
    """bf16 weights on CUDA (the original's choice for 1-2B bases), float32 on CPU."""
    import torch

    return torch.bfloat16 if device.startswith("cuda") else torch.float32


def bf16_is_native(device: str) -> bool:
    """Whether bf16 matmuls run in hardware on `device` (on the CI machine's AVX512-BF16 CPU they
    take 0.45x the time of float32); elsewhere autocast would emulate them, slower."""
    import torch

    if device.startswith("cuda"):
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    if device == "cpu":
        return torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported()
    return False


def usable_cores() -> int:
    """The CPU cores this process may run on (its affinity mask: a container's or taskset's limit, not the
    machine's count)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def configured_threads() -> int | None:
    """OHLORA_TORCH_THREADS as a number; None when unset or empty; SettingsError naming it otherwise."""
    value = os.environ.get("OHLORA_TORCH_THREADS", "").strip()
    if not value:
        return None
    if not value.isdigit() or int(value) < 1:
        raise SettingsError(f"OHLORA_TORCH_THREADS={value!r}: expected a whole number of threads, 1 or more "
                            "(unset: the cores this process may use)")
    return int(value)


def check_device_name(device: str) -> str:
    """`device` when it names a device this project can place work on (auto | cpu | cuda | cuda:N); else
    SettingsError naming OHLORA_DEVICE. Whether CUDA is there is `resolve_device`'s question (it imports torch)."""
    if not _DEVICE_NAME.fullmatch(device):
        raise SettingsError(f"OHLORA_DEVICE={device!r}: expected auto, cpu, cuda or cuda:N")
    return device


def limit_torch_threads() -> int:
    """Set torch's CPU threads to OHLORA_TORCH_THREADS, by default the cores this process may use; returns it.

    More threads than usable cores makes training far slower, not faster: on a CPU shared with other
    work, set OHLORA_TORCH_THREADS lower."""
    import torch

    threads = configured_threads() or usable_cores()
    torch.set_num_threads(threads)
    return threads


# LoRA training below this hidden size runs on one CPU thread. A step on such a base is hundreds of small ops
# (the LoRA matrices, dropout, a batch of 2-4 short prompts); with passive OpenMP waiting each op that a second
# thread shares pays a wake-up that costs more than the op. Measured on the 2-core machine, embedded LM (hidden
# 192), output_message at rank 16, batch 2: 19 s of training on one thread, 41 s on two; rank 64, batch 4: 21 s
# and 43 s. Pretraining the same base (batch 16 of 192-token texts) is faster on two (18.3 s against 21.7 s).
NARROW_HIDDEN_SIZE = 256


def lora_training_threads(config, device: str) -> int:
    """CPU threads for LoRA training of a model with transformers `config` on `device`: OHLORA_TORCH_THREADS
    when set, one for a base narrower than NARROW_HIDDEN_SIZE on the CPU, else the usable cores."""
    narrow = getattr(config, "hidden_size", NARROW_HIDDEN_SIZE) < NARROW_HIDDEN_SIZE
    return configured_threads() or (1 if device == "cpu" and narrow else usable_cores())


@contextmanager
def torch_threads(threads: int) -> Iterator[int]:
    """torch's CPU threads set to `threads` inside the block, and back to what they were after it."""
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield threads
    finally:
        torch.set_num_threads(previous)


def peak_memory_mb(device: str) -> float:
    """Peak accelerator memory on CUDA; otherwise the process's peak resident set size."""
    if device.startswith("cuda"):
        import torch

        return torch.cuda.max_memory_allocated() / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
