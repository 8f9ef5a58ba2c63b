"""Which steps' run config is checked before a run starts, and how a refused value is named."""

import dagster as dg

from ohlora_assets import assets
from ohlora_assets.run_config import config_classes, run_config_errors


def test_every_step_that_takes_config_has_its_class_found():
    nodes = [
        *(a.op for a in dg.load_assets_from_package_module(assets) if isinstance(a, dg.AssetsDefinition)),
        *(c.node_def for c in dg.load_asset_checks_from_package_module(assets)),
    ]
    configured = {node.name for node in nodes if getattr(node.config_field.config_type, "fields", None)}
    assert configured == set(config_classes()) and len(configured) >= 25


def test_values_within_bounds_and_steps_without_config_pass(monkeypatch):
    monkeypatch.setenv("OHLORA_TEST_KEEP", "3")
    assert run_config_errors({}) == []
    assert run_config_errors({"ops": {
        "serving_adapter_summary": {"config": {"keep_versions": {"env": "OHLORA_TEST_KEEP"}}},
        "summary_quality_report": {"config": {"quality_rate_tolerance": 0.1}},
        "not_a_step_of_ours": {"config": {"anything": -1}},
    }}) == []


def test_each_refused_value_is_named_with_its_step_and_field():
    errors = run_config_errors({"ops": {
        "serving_ethics_sbert_model": {"config": {"keep_versions": -1}},
        "ethics_report": {"config": {"target_accuracy": 95, "accuracy_floor": 1.5}},
        "memory_quality_checks": {"config": {"max_give_up_rate": 5}},
    }})
    assert errors == [
        "ops.serving_ethics_sbert_model.config.keep_versions = -1: Input should be greater than or equal to 0",
        "ops.ethics_report.config.accuracy_floor = 1.5: Input should be less than or equal to 1",
        "ops.ethics_report.config.target_accuracy = 95: Input should be less than or equal to 1",
        "ops.memory_quality_checks.config.max_give_up_rate = 5: Input should be less than or equal to 1",
    ]


def test_lora_and_sampling_values_the_core_settings_refuse_are_named_too():
    """Checked by the core settings' own rules (PEFT's and generate's limits), not by pydantic bounds."""
    errors = run_config_errors({"ops": {
        "adapter_summary": {"config": {"rank": 0, "dropout": 1.0}},
        "summary_inference_samples": {"config": {"temperature": 0.0}},
        "adapter_memory": {"config": {"rank": 8, "learning_rate": 1e-4}},  # fine
    }})
    assert errors == [
        "ops.adapter_summary.config: LoRA hyper-parameters: rank must be at least 1, got 0; dropout must be at least 0 "
        "and below 1, got 1.0",
        "ops.summary_inference_samples.config: sampling settings: temperature must be a positive number, got 0.0",
    ]
