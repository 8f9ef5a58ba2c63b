"""The project as `dg` (dagster-dg-cli) sees it: `[tool.dg]` in pyproject.toml, the same Definitions
as workspace.yaml (`dagster dev`) and `[tool.dagster]`."""

from __future__ import annotations

import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import yaml

from ohlora_assets.resources import PROJECT_ROOT


def test_dg_and_dagster_load_the_same_module():
    pyproject = tomllib.loads((PROJECT_ROOT / "pyproject.toml").read_text())
    dg_project = pyproject["tool"]["dg"]["project"]
    [location] = yaml.safe_load((PROJECT_ROOT / "workspace.yaml").read_text())["load_from"]
    assert pyproject["tool"]["dg"]["directory_type"] == "project"
    assert dg_project["code_location_target_module"] == "ohlora_assets.definitions"
    assert location["python_module"]["module_name"] == dg_project["code_location_target_module"]
    assert pyproject["tool"]["dagster"]["module_name"] == dg_project["code_location_target_module"]


def _dg(home: Path, **settings: str) -> subprocess.CompletedProcess:
    """`dg check defs` in this tree, on a throwaway instance, with `settings` added to the environment."""
    dg = Path(sys.executable).with_name("dg")
    if not dg.is_file():
        pytest.skip(f"no dg next to {sys.executable}: install the dev extra (dagster-dg-cli)")
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(PROJECT_ROOT), os.environ.get("PYTHONPATH", "")]),
        "DAGSTER_HOME": str(home),
        "OHLORA_HOME": str(home / "store"),
        # dg runs the venv's own python: put it first, as an activated venv does
        "PATH": os.pathsep.join([str(dg.parent), os.environ.get("PATH", "")]),
        **settings,
    }
    return subprocess.run([str(dg), "check", "defs"], cwd=PROJECT_ROOT, env=env, capture_output=True, text=True, timeout=300)


def test_dg_check_defs(tmp_path: Path):
    result = _dg(tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "All definitions loaded successfully" in result.stdout + result.stderr


def test_dg_check_defs_fails_on_a_malformed_setting(tmp_path: Path):
    result = _dg(tmp_path, OHLORA_BASE_MODELS="memory")  # no "=model"
    assert result.returncode != 0
    assert "expected task=model" in result.stdout + result.stderr
