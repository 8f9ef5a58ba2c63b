"""`ohlora bench training --quick`: our trainer and TRL's SFTTrainer train the same LoRA on the same data.

What is asserted is what the benchmark claims besides its speed: which model and data it used, both sides'
figures, the ratio line last, and that both sides reach the same loss on the un-augmented examples (within
the benchmark's tolerance). The ratio itself is not asserted: it is a timing on a shared machine.
"""

import re

import pytest

from ohlora_assets import cli
from ohlora_assets.bench.training import LOSS_TOLERANCE

pytest.importorskip("trl", reason="the TRL baseline is in the bench extra")

SIDE = re.compile(r"^(ours|trl):\s+([\d.]+) tokens/s\s+final loss ([\d.]+)", re.MULTILINE)


@pytest.mark.slow
def test_quick_training_benchmark_reports_both_sides_at_equal_loss(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("OHLORA_HOME", str(tmp_path))
    assert cli.main(["bench", "training", "--quick"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0] == "=== ohlora bench training --quick ==="
    if lines[-1].startswith("target missed: training speed-up ratio"):  # a quick run's ratio may miss: a result
        lines.pop()

    assert lines[1].startswith("base: the embedded LM architecture")
    assert any(line.startswith("data: output_message train split") and "160 examples x 1" in line for line in lines)
    runs = [line.split()[0] for line in lines if line.endswith(" s)") and "tokens/s" in line]
    assert runs == ["ours", "trl"]
    sides = {name: (float(tps), float(loss)) for name, tps, loss in SIDE.findall("\n".join(lines))}
    assert set(sides) == {"ours", "trl"} and all(tps > 0 for tps, _ in sides.values())
    ours_loss, trl_loss = sides["ours"][1], sides["trl"][1]
    assert abs(ours_loss - trl_loss) / trl_loss <= LOSS_TOLERANCE
    assert any(line.startswith("loss gap") and "within" in line for line in lines)
    ratio = re.fullmatch(r"ratio=(\d+\.\d\d)", lines[-1])
    assert ratio and float(ratio.group(1)) > 0
