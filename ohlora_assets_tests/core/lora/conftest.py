"""A tiny Llama base, pretrained for a few seconds on the task's own texts, shared by the LoRA tests."""

from pathlib import Path

import pytest
import torch
from transformers import AutoTokenizer

from ohlora_assets.core.base_lm import PretrainingCorpus, PretrainSpec, build_embedded_lm
from ohlora_assets.core.device import torch_threads

THINGS = ["사과", "바다", "고양이", "커피", "노래", "여행", "강아지", "영화"]
END = "(답변 종료)"
PAIRS = [(f"{thing} 좋아해? (답변 시작) ### 답변:", f" 응, {thing} 정말 좋아! {END}") for thing in THINGS]
# Tiny models: a second thread costs more in synchronization than it saves.
torch.set_num_threads(1)

TINY = PretrainSpec(vocab_size=500, hidden_size=48, intermediate_size=96, num_layers=2, num_heads=2, batch_size=8, steps=60)


@pytest.fixture(scope="session")
def base(tmp_path_factory) -> Path:
    directory = tmp_path_factory.mktemp("base") / "lm"
    texts = [prompt + completion for prompt, completion in PAIRS] * 4 + [f"오늘은 {t} 이야기를 했어" for t in THINGS]
    with torch_threads(1):  # the same weights whatever thread count an earlier test left (CI leaves it unset)
        build_embedded_lm(PretrainingCorpus(documents=texts, fragments=[]), TINY, directory, device="cpu")
    return directory


@pytest.fixture(scope="session")
def tokenizer(base):
    return AutoTokenizer.from_pretrained(base)
