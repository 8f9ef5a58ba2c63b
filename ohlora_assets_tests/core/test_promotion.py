"""The promotion gate's decisions, and a worse candidate refused while the serving version keeps serving."""

import pytest

from ohlora_assets.core.promotion import (
    AdapterMetrics,
    EthicsMetrics,
    Tolerances,
    BASELINE_KEY,
    TOLERANCES_KEY,
    adapter_gate,
    ethics_gate,
    measured_rates,
    promote_if_passed,
    recorded_baseline,
    recorded_tolerances,
    versions_table,
    with_baseline,
)
from ohlora_assets.core.registry import ModelRegistry

GOOD = AdapterMetrics(True, 1.0, 3.0, 1.2, {"numbered_prefix_rate": 0.0, "copied_answer_rate": 0.10, "give_up_rate": 0.05})
RECALL = {"사랑 고백/만남": 0.9, "일반": 0.95, "정치": 0.85, "패드립": 0.8, "혐오/기타": 0.75}


def _failed(decision) -> list[str]:
    return [check.name for check in decision.failed]


def test_first_adapter_version_has_only_the_absolute_checks():
    decision = adapter_gate(GOOD, None)
    assert decision.promote and decision.explanation() == "all 6 checks passed"
    assert "first version" in {c.name: c.reason for c in decision.checks}["give_up_rate_not_worse"]


@pytest.mark.parametrize(
    "change, failing",
    [
        ({"loads": False}, ["loads_with_peft"]),
        ({"end_mark_rate": 0.9}, ["generates_to_end_mark"]),
        ({"final_train_loss": 3.0}, ["loss_decreased"]),  # zero steps' worth of learning
        ({"final_train_loss": None}, ["loss_decreased"]),
    ],
)
def test_absolute_adapter_checks_refuse_even_a_first_version(change, failing):
    candidate = AdapterMetrics(**{**GOOD.__dict__, **change})
    assert _failed(adapter_gate(candidate, None)) == failing


def test_quality_rates_may_be_worse_only_within_the_tolerance():
    within = AdapterMetrics(**{**GOOD.__dict__, "quality": {**GOOD.quality, "give_up_rate": 0.10}})
    worse = AdapterMetrics(**{**GOOD.__dict__, "quality": {**GOOD.quality, "copied_answer_rate": 0.16}})
    assert adapter_gate(within, GOOD).promote
    decision = adapter_gate(worse, GOOD)
    assert _failed(decision) == ["copied_answer_rate_not_worse"]
    assert decision.failed[0].reason == "0.1600 not <= 0.1500 (serving 0.1000, tolerance 0.05)"
    assert adapter_gate(worse, GOOD, Tolerances(quality_rate=0.1)).promote


def test_a_rate_the_task_does_not_measure_passes_and_says_so():
    no_copies = AdapterMetrics(**{**GOOD.__dict__, "quality": {**GOOD.quality, "copied_answer_rate": None}})
    decision = adapter_gate(no_copies, GOOD, rates=measured_rates("eyes_mouth_pose"))
    assert decision.promote
    assert {c.name: c.reason for c in decision.checks}["copied_answer_rate_not_worse"] == "not measured for this task"
    assert measured_rates("summary") == ("numbered_prefix_rate", "copied_answer_rate", "give_up_rate")


@pytest.mark.parametrize("serving", [GOOD, None])
def test_a_candidate_whose_report_never_ran_is_refused(serving):
    """Trained and checked, but no quality report measured it: nothing compared it with what serves."""
    unreported = AdapterMetrics(True, 1.0, 3.0, 1.2)
    decision = adapter_gate(unreported, serving, rates=measured_rates("memory"))
    assert _failed(decision) == [f"{rate}_not_worse" for rate in measured_rates("memory")]
    assert decision.failed[0].reason == "not measured for this candidate"


def test_the_promotion_decides_with_the_serving_figures_its_report_measured():
    recorded = with_baseline({"accuracy": 0.81}, "aaaa", {"accuracy": 0.97, "recall": RECALL}, Tolerances())
    baseline, stale = recorded_baseline(recorded, "aaaa", "ethics_report")
    assert stale is None and baseline["accuracy"] == 0.97  # today's figure for the serving version, not its old one
    assert _failed(ethics_gate(EthicsMetrics(0.81, RECALL), EthicsMetrics.from_dict(baseline))) == [
        "accuracy_not_worse"
    ]
    _, stale = recorded_baseline(recorded, "bbbb", "ethics_report")  # another version serves by now
    assert not stale.passed
    assert stale.reason == "its report compared it with aaaa, but bbbb serves now: materialize ethics_report again"
    _, never = recorded_baseline({"accuracy": 0.9}, "bbbb", "ethics_report")
    assert never.reason.startswith("no report compared it, but bbbb serves now")
    assert recorded_baseline(with_baseline({"accuracy": 0.9}, None, None, Tolerances()), None, "ethics_report") == (
        None, None)


def test_the_promotion_decides_by_the_tolerances_its_report_judged_with():
    """Set once, on the report: a candidate the report let through within its tolerance is not refused by
    other tolerances at the promotion, and one it judged by none is refused."""
    loose = Tolerances(ethics_accuracy=0.2)
    recorded = with_baseline({"accuracy": 0.85}, "aaaa", {"accuracy": 0.97, "recall": RECALL}, loose)
    tolerances, unjudged = recorded_tolerances(recorded, "ethics_report")
    assert unjudged is None and tolerances == loose
    serving = EthicsMetrics(0.97, RECALL)
    assert ethics_gate(EthicsMetrics(0.85, RECALL), serving, tolerances).promote
    assert not ethics_gate(EthicsMetrics(0.85, RECALL), serving, Tolerances()).promote  # the defaults would refuse
    for metrics in ({"accuracy": 0.85}, {**recorded, TOLERANCES_KEY: {"ethics_accuracy": "wide"}}):
        none, check = recorded_tolerances(metrics, "ethics_report")
        assert none is None and not check.passed
        assert check.reason == "no report recorded the tolerances it judged it by: materialize ethics_report again"


def test_a_category_without_test_prompts_is_named_not_compared_as_nan():
    serving = EthicsMetrics(0.91, RECALL)
    missing = EthicsMetrics(0.93, {c: r for c, r in RECALL.items() if c != "정치"})
    decision = ethics_gate(missing, serving)
    assert _failed(decision) == ["recall_floor[정치]", "recall_not_worse[정치]"]
    assert decision.failed[0].reason == "not measurable: no test prompt of it"
    nan = ethics_gate(EthicsMetrics(0.93, {**RECALL, "정치": float("nan")}), None)
    assert _failed(nan) == ["recall_floor[정치]", "recall_not_worse[정치]"]  # never compared as a number


def test_adapter_metrics_round_trip_through_a_registry_dict():
    assert AdapterMetrics.from_dict(GOOD.to_dict()) == GOOD


def test_ethics_floors_and_comparison_per_category():
    serving = EthicsMetrics(0.91, RECALL)
    assert ethics_gate(serving, None).promote
    assert _failed(ethics_gate(EthicsMetrics(0.75, RECALL), None)) == ["accuracy_floor"]
    slipped = EthicsMetrics(0.90, {**RECALL, "정치": 0.78, "혐오/기타": 0.45})
    assert _failed(ethics_gate(slipped, serving)) == [
        "recall_not_worse[정치]", "recall_floor[혐오/기타]", "recall_not_worse[혐오/기타]",
    ]
    assert EthicsMetrics.from_dict(slipped.to_dict()) == slipped


def test_a_deliberately_worse_candidate_is_refused_and_the_serving_version_keeps_serving(tmp_path):
    registry = ModelRegistry(tmp_path, "adapter_summary")
    versions = {}
    for label, metrics in {"good": GOOD, "worse": AdapterMetrics(True, 1.0, 3.0, 3.1, GOOD.quality)}.items():
        with registry.write_version(metrics=metrics.to_dict()) as pending:
            (pending.path / "adapter_model.safetensors").write_bytes(label.encode())
        versions[label] = pending.version

    first = registry.get(versions["good"])
    promoted, message = promote_if_passed(registry, first.version, adapter_gate(AdapterMetrics.from_dict(first.metrics), None))
    assert promoted and registry.serving_label() == first.version

    candidate = AdapterMetrics.from_dict(registry.get(versions["worse"]).metrics)
    promoted, message = promote_if_passed(registry, versions["worse"], adapter_gate(candidate, GOOD))
    assert not promoted and registry.serving_label() == first.version
    assert message.startswith(f"{versions['worse']} refused (loss_decreased: train loss 3.0000 -> 3.1000")
    assert message.endswith(f"{first.version} keeps serving")


def test_versions_table_puts_key_metrics_first_and_flattens_recall(tmp_path):
    registry = ModelRegistry(tmp_path, "ethics_sbert_model")
    for i, accuracy in enumerate([0.91, 0.85]):
        metrics = {**EthicsMetrics(accuracy, {"정치": 0.8 + i / 10}).to_dict(), "epochs": 3, "base": "e5"}
        with registry.write_version(metrics=metrics, data_version=f"{i + 1:x}" * 16) as pending:
            (pending.path / "model.safetensors").write_bytes(b"x")
    registry.promote("1111111111111111", "first version")
    # the serving figures a report compared the candidate with are not the candidate's own
    registry.record_metrics("2222222222222222", with_baseline({}, "1111111111111111", {"accuracy": 0.97}, Tolerances()))
    assert registry.get("2222222222222222").metrics[BASELINE_KEY]["accuracy"] == 0.97
    rows = versions_table(registry)
    assert [list(row) for row in rows] == [["serving", "version", "created", "accuracy", "epochs", "recall[정치]"]] * 2
    assert [(row["serving"], row["version"], row["accuracy"], row["recall[정치]"]) for row in rows] == [
        ("*", "1111111111111111", 0.91, 0.8), ("", "2222222222222222", 0.85, 0.9),
    ]
