"""CPU threads: by default the cores the process may use, one for LoRA training on a narrow base,
OHLORA_TORCH_THREADS when set."""

import os
import subprocess
import sys

import pytest
import torch

from transformers import LlamaConfig

from ohlora_assets.core.device import (
    NARROW_HIDDEN_SIZE,
    limit_torch_threads,
    lora_training_threads,
    torch_threads,
    usable_cores,
)
from ohlora_assets.resources import PROJECT_ROOT


@pytest.fixture
def restore_torch_threads():
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


def test_threads_default_to_the_usable_cores_and_the_variable_overrides(monkeypatch, restore_torch_threads):
    monkeypatch.delenv("OHLORA_TORCH_THREADS", raising=False)
    assert limit_torch_threads() == len(os.sched_getaffinity(0)) == torch.get_num_threads()
    monkeypatch.setenv("OHLORA_TORCH_THREADS", "1")
    assert limit_torch_threads() == 1 == torch.get_num_threads()
    monkeypatch.setenv("OHLORA_TORCH_THREADS", "")  # set but empty: the default
    assert limit_torch_threads() == usable_cores()


def test_lora_training_takes_one_thread_on_a_narrow_base_on_the_cpu_only(monkeypatch):
    monkeypatch.delenv("OHLORA_TORCH_THREADS", raising=False)
    narrow, wide = LlamaConfig(hidden_size=NARROW_HIDDEN_SIZE - 64), LlamaConfig(hidden_size=NARROW_HIDDEN_SIZE)
    assert lora_training_threads(narrow, "cpu") == 1
    assert lora_training_threads(wide, "cpu") == usable_cores()
    assert lora_training_threads(narrow, "cuda") == usable_cores()  # the host threads only feed the GPU
    monkeypatch.setenv("OHLORA_TORCH_THREADS", "3")
    assert lora_training_threads(narrow, "cpu") == 3


def test_torch_threads_are_restored_after_the_block_even_when_it_raises(restore_torch_threads):
    torch.set_num_threads(2)
    with pytest.raises(RuntimeError), torch_threads(1) as threads:
        assert threads == 1 == torch.get_num_threads()
        raise RuntimeError("stop")
    assert torch.get_num_threads() == 2


@pytest.mark.skipif(not hasattr(os, "sched_setaffinity"), reason="no CPU affinity on this platform")
def test_a_process_pinned_to_one_core_uses_one_thread_whatever_the_machine_has():
    one_core = min(os.sched_getaffinity(0))
    env = {key: value for key, value in os.environ.items() if key != "OHLORA_TORCH_THREADS"}
    env["PYTHONPATH"] = str(PROJECT_ROOT)
    code = "from ohlora_assets.core.device import limit_torch_threads; import torch; limit_torch_threads(); print(torch.get_num_threads())"
    done = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120,
        preexec_fn=lambda: os.sched_setaffinity(0, {one_core}),
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "1"


def _environment_after_loading_the_definitions(env: dict) -> list[str]:
    code = (
        "import os, sys; import ohlora_assets.definitions; "
        "print(os.environ.get('OMP_WAIT_POLICY')); print('torch' in sys.modules)"
    )
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    return done.stdout.split()


def test_openmp_threads_wait_passively_unless_the_environment_says_otherwise():
    env = {key: value for key, value in os.environ.items() if key != "OMP_WAIT_POLICY"}
    env["PYTHONPATH"] = str(PROJECT_ROOT)
    # set before anything loads torch (whose OpenMP runtime reads it once, when it loads)
    assert _environment_after_loading_the_definitions(env) == ["PASSIVE", "False"]
    assert _environment_after_loading_the_definitions({**env, "OMP_WAIT_POLICY": "ACTIVE"})[0] == "ACTIVE"
