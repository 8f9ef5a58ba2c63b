"""What an adapter must show before anyone relies on it: it loads with plain PEFT and stops at its end mark."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from ohlora_assets.core.formats import TASK_FORMATS


@dataclass(frozen=True)
class EndMarkCheck:
    rows: list[dict]  # prompt, generated text, ok
    prompts_wanted: int
    well_formed: int
    max_new_tokens: int

    @property
    def stopped(self) -> int:
        return sum(row["ok"] for row in self.rows)

    @property
    def passed(self) -> bool:
        return len(self.rows) == self.prompts_wanted and self.stopped == len(self.rows)


def end_mark_check(
    adapter_dir: str | Path,
    task: str,
    split: pd.DataFrame,
    prompts: int,
    temperature: float,
    device: str = "auto",
    trust_remote_code: bool = False,
) -> EndMarkCheck:
    """Load the saved adapter with plain PEFT and answer the first `prompts` validation prompts of `split`
    (a `<task>_split` table) once each: every answer must reach the end mark with non-empty text before it
    (an empty memory is a valid answer)."""
    from ohlora_assets.core.generation import SamplingSettings, generate_answers, merged_for_inference
    from ohlora_assets.core.lora import load_adapter

    fmt = TASK_FORMATS[task]
    model, tokenizer = load_adapter(adapter_dir, device, trust_remote_code)
    chosen = split.loc[split["split"] == "valid", "prompt"].head(prompts).tolist()
    # An answer longer than every training answer has failed to stop: no need to wait longer.
    completions = split.loc[split["split"] == "train", "completion"].tolist()
    longest = max(len(ids) for ids in tokenizer(completions, add_special_tokens=False)["input_ids"])
    settings = SamplingSettings(temperature=temperature, max_new_tokens=longest + 8, max_retries=0)
    run = generate_answers(merged_for_inference(model), tokenizer, chosen, task, 1, settings)
    rows = [
        {
            "prompt": prompt,
            "generated": answer.raw,
            "ok": fmt.end_mark in answer.raw and (task == "memory" or answer.answer != ""),
        }
        for prompt, answer in zip(chosen, run.answers)
    ]
    return EndMarkCheck(rows, prompts, sum(a.valid for a in run.answers), settings.max_new_tokens)
