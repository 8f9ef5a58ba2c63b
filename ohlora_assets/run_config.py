"""Every step's run config checked against its bounds before the run's first step.

Dagster checks run config's keys and types when a run is launched, but a `Config` class's pydantic bounds
(`ge`, `le`: a share above 1, a negative count) only when the step that takes it starts: a bad value for
the promotion step used to wait for every training before it. The project's resources call
`check_run_config` when they start, which for a run is before its first step (in process) or with its first
step (a process per step), so the run stops before any training.
"""

from __future__ import annotations

import functools
import inspect
import os
from typing import Any, Mapping

import dagster as dg
import pydantic


class RunConfigError(ValueError):
    """Run config outside a step's bounds; the message names every such value."""


@functools.cache
def config_classes() -> dict[str, type[dg.Config]]:
    """Op name -> the `Config` class its `config` parameter takes, for every asset and check of the project."""
    from ohlora_assets import assets

    nodes = [
        *(a.op for a in dg.load_assets_from_package_module(assets) if isinstance(a, dg.AssetsDefinition)),
        *(c.node_def for c in dg.load_asset_checks_from_package_module(assets)),
    ]
    classes = {}
    for node in nodes:
        function = getattr(node.compute_fn, "decorated_fn", None)
        parameter = inspect.signature(function, eval_str=True).parameters.get("config") if function else None
        if parameter is not None and inspect.isclass(parameter.annotation):
            classes[node.name] = parameter.annotation
    return classes


def _resolved(value: Any) -> Any:
    """`{"env": NAME}` (Dagster's environment reference) replaced by the variable's value, at any depth."""
    if isinstance(value, Mapping):
        if set(value) == {"env"}:
            return os.environ.get(value["env"], value)
        return {key: _resolved(inner) for key, inner in value.items()}
    return value


def run_config_errors(run_config: Mapping[str, Any]) -> list[str]:
    """One line per value of `run_config` that its step's `Config` class refuses."""
    errors = []
    for op, section in (run_config.get("ops") or {}).items():
        config_class = config_classes().get(op)
        if config_class is None or not isinstance(section, Mapping) or not isinstance(section.get("config"), Mapping):
            continue
        try:
            _as_the_step_builds_it(config_class(**_resolved(section["config"])))
        except pydantic.ValidationError as error:
            for detail in error.errors():
                where = ".".join([f"ops.{op}.config", *map(str, detail["loc"])])
                errors.append(f"{where} = {detail['input']!r}: {detail['msg']}")
        except ValueError as error:  # the core settings' own checks
            errors.append(f"ops.{op}.config: {error}")
    return errors


def _as_the_step_builds_it(config: dg.Config) -> None:
    """The core settings a step builds from its config, whose own checks (`__post_init__`) pydantic's bounds do
    not repeat: sampling (`SamplingSettings`), and LoRA (`LoraHyperParams`, from the values the config sets)."""
    from dataclasses import fields

    from ohlora_assets.core.recipes import LoraHyperParams

    if callable(getattr(config, "settings", None)):
        config.settings()
    lora = {f.name: getattr(config, f.name) for f in fields(LoraHyperParams) if getattr(config, f.name, None) is not None}
    if "rank" in lora:  # an adapter's (an experiment sets its ranks elsewhere)
        LoraHyperParams(**lora)


def check_run_config(run_config: Mapping[str, Any]) -> None:
    if errors := run_config_errors(run_config):
        raise RunConfigError("run config outside its bounds, so no step runs:\n  " + "\n  ".join(errors))
