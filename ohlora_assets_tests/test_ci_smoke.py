"""scripts/ci_smoke.py's verdict: a failed ERROR check fails CI, a failed WARN check does not."""

import importlib.util

import dagster as dg
import pytest

from ohlora_assets.resources import PROJECT_ROOT

spec = importlib.util.spec_from_file_location("ci_smoke", PROJECT_ROOT / "scripts" / "ci_smoke.py")
ci_smoke = importlib.util.module_from_spec(spec)
spec.loader.exec_module(ci_smoke)


def _run(error_ok: bool, warn_ok: bool):
    @dg.asset
    def model() -> int:
        return 1

    @dg.asset_check(asset=model)
    def accuracy_high_enough() -> dg.AssetCheckResult:
        return dg.AssetCheckResult(passed=error_ok, metadata={"accuracy": 0.9}, severity=dg.AssetCheckSeverity.ERROR)

    @dg.asset_check(asset=model)
    def loss_decreased() -> dg.AssetCheckResult:
        return dg.AssetCheckResult(passed=warn_ok, severity=dg.AssetCheckSeverity.WARN)

    result = dg.materialize([model, accuracy_high_enough, loss_decreased], instance=dg.DagsterInstance.ephemeral())
    keys = {dg.AssetCheckKey(model.key, "accuracy_high_enough"), dg.AssetCheckKey(model.key, "loss_decreased")}
    return result, {model.key}, keys


def test_all_checks_pass():
    rows, fatal = ci_smoke.judge(*_run(True, True))
    assert fatal == []
    assert [r[2] for r in rows] == ["PASS", "PASS"]
    assert "accuracy=0.9" in rows[0][3]
    assert "accuracy_high_enough" in ci_smoke.format_table(rows)


def test_warn_failure_is_listed_not_fatal():
    rows, fatal = ci_smoke.judge(*_run(True, False))
    assert fatal == [] and ("model", "loss_decreased", "FAIL(WARN)", "") in rows


@pytest.mark.parametrize("missing_check", [False, True])
def test_error_failure_or_a_check_that_never_ran_is_fatal(missing_check):
    result, selected, checks = _run(error_ok=missing_check, warn_ok=True)
    if missing_check:
        checks = checks | {dg.AssetCheckKey(dg.AssetKey("model"), "never_executed")}
    rows, fatal = ci_smoke.judge(result, selected, checks)
    expected = "model:never_executed never ran" if missing_check else "model:accuracy_high_enough failed (ERROR)"
    assert fatal == [expected]
