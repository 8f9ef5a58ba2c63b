"""The promotion gate: may a candidate version serve? Pure decisions over figures, no model in sight.

In the lifecycle train -> check -> promote -> serve -> roll back, this is "check": the blocking checks
measure a candidate (core/registry.py stores the figures), and these functions compare it with the serving
version's figures, as the candidate's report measured them beside its own (`BASELINE_KEY`). A first version
(no serving version) has only the absolute checks; the comparisons then pass, saying why. A figure the candidate
lacks (its report never ran for it) fails: a candidate nobody compared must not serve. Every check answers with a
reason a person can read in the run.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Mapping

# Failure-mode rates of generated answers (core/quality.py); lower is better.
QUALITY_RATES = ("numbered_prefix_rate", "copied_answer_rate", "give_up_rate")
# Where a candidate's evaluation records the serving version's figures it was compared with, measured the same day
# on the same data and rules: the promotion step decides with exactly these, not with figures the serving version
# got on an older test set.
BASELINE_KEY = "gate_baseline"
# Where the report records the tolerances it judged the candidate with: the promotion decides with the same ones,
# so they are set in one place (the report's run config), never on two assets that could disagree.
TOLERANCES_KEY = "gate_tolerances"
# Columns of the versions table, first when present; other numeric metrics follow by name.
KEY_METRICS = ("final_train_loss", "final_valid_loss", "end_mark_rate", *QUALITY_RATES, "accuracy")


# The final epoch's mean train loss must be this much (relative) below the first's: an epoch mean differs in its
# last bits when only the batch order changes, and a fall that small is no learning (learning rate 0 shows it).
MIN_LOSS_DECREASE = 1e-3


def loss_decreased(first: float, final: float) -> bool:
    return final < first * (1 - MIN_LOSS_DECREASE)


@dataclass(frozen=True)
class Tolerances:
    """How much worse than the serving version a candidate may be, and the floors no version may fall under."""

    quality_rate: float = 0.05  # absolute, per rate
    min_end_mark_rate: float = 1.0  # share of check prompts that must stop at the end mark
    ethics_accuracy: float = 0.02
    ethics_recall: float = 0.05
    accuracy_floor: float = 0.80
    recall_floor: float = 0.50


@dataclass(frozen=True)
class CheckOutcome:
    name: str
    passed: bool
    reason: str
    candidate: float | None = None
    serving: float | None = None


@dataclass(frozen=True)
class GateDecision:
    checks: tuple[CheckOutcome, ...]

    @property
    def promote(self) -> bool:
        return all(check.passed for check in self.checks)

    @property
    def failed(self) -> list[CheckOutcome]:
        return [check for check in self.checks if not check.passed]

    def explanation(self) -> str:
        if self.promote:
            return f"all {len(self.checks)} checks passed"
        return "; ".join(f"{check.name}: {check.reason}" for check in self.failed)

    def rows(self) -> list[dict[str, Any]]:
        return [asdict(check) for check in self.checks]


@dataclass(frozen=True)
class AdapterMetrics:
    """What the adapter checks measure. A rate of None was not measured for the task (copies: output_message)."""

    loads: bool
    end_mark_rate: float
    first_train_loss: float | None
    final_train_loss: float | None
    quality: dict[str, float | None] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, metrics: Mapping[str, Any]) -> "AdapterMetrics":
        """From a registry version's metrics (the same keys)."""
        return cls(
            loads=bool(metrics.get("loads", False)),
            end_mark_rate=float(metrics.get("end_mark_rate", 0.0)),
            first_train_loss=metrics.get("first_train_loss"),
            final_train_loss=metrics.get("final_train_loss"),
            quality={rate: metrics.get(rate) for rate in QUALITY_RATES},
        )

    def to_dict(self) -> dict[str, Any]:
        """The registry's flat keys: the quality rates beside the other figures."""
        flat = asdict(self)
        quality = flat.pop("quality")
        return {**flat, **{rate: quality.get(rate) for rate in QUALITY_RATES}}


@dataclass(frozen=True)
class EthicsMetrics:
    accuracy: float
    recall: dict[str, float]

    @classmethod
    def from_dict(cls, metrics: Mapping[str, Any]) -> "EthicsMetrics":
        return cls(accuracy=float(metrics["accuracy"]), recall=dict(metrics["recall"]))

    def to_dict(self) -> dict[str, Any]:
        return {"accuracy": self.accuracy, "recall": dict(self.recall)}


def measured_rates(task: str) -> tuple[str, ...]:
    """The quality rates the task's report measures (a copy is meaningless among 36 eyes/mouth/pose answers)."""
    from ohlora_assets.core.quality import COPY_TASKS

    return tuple(rate for rate in QUALITY_RATES if rate != "copied_answer_rate" or task in COPY_TASKS)


def with_baseline(measured: Mapping[str, Any], serving_version: str | None,
                  serving_figures: Mapping[str, Any] | None, tolerances: Tolerances) -> dict[str, Any]:
    """A candidate's figures for `record_metrics`, with the serving figures the report compared them with and
    the tolerances it judged them by."""
    baseline = None if serving_version is None else {"version": serving_version, **(serving_figures or {})}
    return {**measured, BASELINE_KEY: baseline, TOLERANCES_KEY: asdict(tolerances)}


def recorded_tolerances(metrics: Mapping[str, Any], evaluated_by: str) -> tuple[Tolerances | None, CheckOutcome | None]:
    """(the tolerances the candidate's report judged it by, None), or (None, a failed check) when no report
    recorded them: an older report, or none ran."""
    recorded = metrics.get(TOLERANCES_KEY)
    try:
        return Tolerances(**{name: float(recorded[name]) for name in Tolerances.__dataclass_fields__}), None
    except (KeyError, TypeError, ValueError):
        return None, CheckOutcome("judged_by_report", False,
                                  f"no report recorded the tolerances it judged it by: materialize {evaluated_by} again")


def recorded_baseline(metrics: Mapping[str, Any], serving_version: str | None,
                      evaluated_by: str) -> tuple[Mapping[str, Any] | None, CheckOutcome | None]:
    """(serving figures to decide with, None), or (None, a failed check) when the candidate's report compared it
    with another version than the one serving now (or never ran): a promotion decides on what was measured."""
    if serving_version is None:
        return None, None
    recorded = metrics.get(BASELINE_KEY)
    compared = recorded.get("version") if isinstance(recorded, Mapping) else None
    if compared != serving_version:
        seen = (f"its report compared it with {compared}" if compared else
                "its report compared it with no serving version" if BASELINE_KEY in metrics else "no report compared it")
        return None, CheckOutcome("compared_with_serving", False,
                                  f"{seen}, but {serving_version} serves now: materialize {evaluated_by} again")
    return recorded, None


def _not_worse(name: str, candidate: float | None, serving: float | None, tolerance: float,
               higher_is_better: bool) -> CheckOutcome:
    """Candidate within `tolerance` of serving, in the direction that matters; a figure the candidate lacks fails."""
    if candidate is None or candidate != candidate:
        return CheckOutcome(name, False, "not measured for this candidate", None, serving)
    if serving is None or serving != serving:
        return CheckOutcome(name, True, "no serving figure to compare with (first version)", candidate, None)
    bound = serving - tolerance if higher_is_better else serving + tolerance
    ok = candidate >= bound if higher_is_better else candidate <= bound
    relation = ">=" if higher_is_better else "<="
    verdict = "" if ok else "not "
    reason = f"{candidate:.4f} {verdict}{relation} {bound:.4f} (serving {serving:.4f}, tolerance {tolerance})"
    return CheckOutcome(name, ok, reason, candidate, serving)


def _floor(name: str, value: float, floor: float) -> CheckOutcome:
    if value != value:
        return CheckOutcome(name, False, "not measurable: no test prompt of it", None, None)
    ok = value >= floor
    return CheckOutcome(name, ok, f"{value:.4f} {'>=' if ok else 'below the floor'} {floor}", value, None)


def adapter_gate(candidate: AdapterMetrics, serving: AdapterMetrics | None,
                 tolerances: Tolerances = Tolerances(), rates: tuple[str, ...] = QUALITY_RATES) -> GateDecision:
    """Loads with plain PEFT, stops at its end mark, lost loss in training, and each of `rates` (the task's,
    `measured_rates`) measured and not worse than serving; a rate the task does not measure passes, saying so."""
    checks = [
        CheckOutcome("loads_with_peft", candidate.loads,
                     "loaded with plain PEFT" if candidate.loads else "did not load with plain PEFT"),
        CheckOutcome(
            "generates_to_end_mark",
            candidate.end_mark_rate >= tolerances.min_end_mark_rate,
            f"{candidate.end_mark_rate:.0%} of check prompts stopped at the end mark "
            f"(needed {tolerances.min_end_mark_rate:.0%})",
            candidate.end_mark_rate,
        ),
    ]
    first, final = candidate.first_train_loss, candidate.final_train_loss
    if first is None or final is None:
        checks.append(CheckOutcome("loss_decreased", False, "no training loss recorded"))
    else:
        decreased = loss_decreased(first, final)
        checks.append(CheckOutcome("loss_decreased", decreased,
                                   f"train loss {first:.4f} -> {final:.4f}" + ("" if decreased else ": did not decrease"),
                                   final, first))
    for rate in QUALITY_RATES:
        if rate not in rates:
            checks.append(CheckOutcome(f"{rate}_not_worse", True, "not measured for this task"))
            continue
        checks.append(_not_worse(f"{rate}_not_worse", candidate.quality.get(rate),
                                 serving.quality.get(rate) if serving else None, tolerances.quality_rate,
                                 higher_is_better=False))
    return GateDecision(tuple(checks))


def ethics_gate(candidate: EthicsMetrics, serving: EthicsMetrics | None,
                tolerances: Tolerances = Tolerances()) -> GateDecision:
    """Accuracy and every category's recall: above a floor, and not below serving minus the tolerance."""
    checks = [_floor("accuracy_floor", candidate.accuracy, tolerances.accuracy_floor),
              _not_worse("accuracy_not_worse", candidate.accuracy, serving.accuracy if serving else None,
                         tolerances.ethics_accuracy, higher_is_better=True)]
    categories = [*candidate.recall, *(c for c in (serving.recall if serving else {}) if c not in candidate.recall)]
    for category in categories:
        recall = candidate.recall.get(category, float("nan"))
        checks.append(_floor(f"recall_floor[{category}]", recall, tolerances.recall_floor))
        checks.append(_not_worse(f"recall_not_worse[{category}]", recall,
                                 serving.recall.get(category) if serving else None, tolerances.ethics_recall,
                                 higher_is_better=True))
    return GateDecision(tuple(checks))


def promote_if_passed(registry, version: str, decision: GateDecision) -> tuple[bool, str]:
    """Move `registry`'s serving pointer to `version` only when every check passed; say what happened.

    `registry` is a core.registry.ModelRegistry. A refused candidate stays registered (for `ohlora models
    list` and a manual `promote`), and the serving version keeps serving.
    """
    if not decision.promote:
        kept = registry.serving_label() or "nothing"
        return False, f"{version} refused ({decision.explanation()}); {kept} keeps serving"
    registry.promote(version, f"checks passed: {decision.explanation()}")
    return True, f"{version} serves ({decision.explanation()})"


def _numbers(metrics: Mapping[str, Any]) -> dict[str, float]:
    """Numeric metrics, one level of dicts flattened (`recall` -> `recall[category]`)."""
    flat: dict[str, float] = {}
    for key, value in metrics.items():
        if key in (BASELINE_KEY, TOLERANCES_KEY):  # another version's figures; the gate's settings
            continue
        if isinstance(value, Mapping):
            flat.update({f"{key}[{inner}]": v for inner, v in value.items() if isinstance(v, (int, float))})
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            flat[key] = value
    return flat


def versions_table(registry) -> list[dict[str, Any]]:
    """The versions of `registry` side by side, oldest first: serving mark, id, creation time, key metrics.

    What `ohlora models list` prints and what the promotion asset's metadata shows.
    """
    serving = registry.serving_label()
    versions = [(v, _numbers(v.metrics)) for v in registry.versions()]
    present = {key for _, numbers in versions for key in numbers}
    columns = [k for k in KEY_METRICS if k in present] + sorted(present - set(KEY_METRICS))
    return [
        {"serving": "*" if v.version == serving else "", "version": v.version, "created": v.created_at[:19],
         **{column: numbers.get(column) for column in columns}}
        for v, numbers in versions
    ]
