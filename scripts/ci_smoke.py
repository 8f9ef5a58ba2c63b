"""CI's full-graph smoke materialization: every asset of `retrain_all`, every asset check, tiny budgets.

    python scripts/ci_smoke.py [--job retrain_all] [--keep DIR]

Runs the job in process on a temporary instance and artifact folder with `OHLORA_SMOKE=1` (the
`smoke` model profile: seconds per model, same code path), then prints one line per asset check and
exits non-zero if the run failed, if any ERROR-severity check failed, or if a check of the selected
assets never ran (a skipped check proves nothing). WARN-severity failures are listed, not fatal.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path


def _fmt_metadata(metadata: dict) -> str:
    parts = []
    for key, value in list(metadata.items())[:3]:
        raw = getattr(value, "value", value)
        if isinstance(raw, float):
            raw = f"{raw:.4g}"
        text = str(raw).replace("\n", " ")
        parts.append(f"{key}={text[:40]}")
    return ", ".join(parts)


def _done(result) -> set:
    """Assets the run materialized, and the observable sources (raw files) it observed."""
    observed = {e.asset_key for e in result.get_asset_observation_events()}
    return {e.asset_key for e in result.get_asset_materialization_events()} | observed


def judge(result, selected: set, expected_checks: set) -> tuple[list[tuple[str, str, str, str]], list[str]]:
    """One row per check (asset, check, PASS/FAIL(severity)/NOT RUN, metadata) and the fatal problems:
    a failed run, a failed ERROR-severity check, an expected check that never ran, an asset of a
    successful run that was not materialized. WARN failures are shown, not fatal."""
    import dagster as dg

    rows, fatal, seen = [], [], set()
    if not result.success:
        failed_steps = [e.step_key for e in result.all_events if e.event_type_value == "STEP_FAILURE"]
        fatal.append(f"run failed (failed steps: {', '.join(failed_steps) or 'none reported'})")
    for evaluation in sorted(result.get_asset_check_evaluations(), key=lambda e: (e.asset_key.to_user_string(), e.check_name)):
        key = dg.AssetCheckKey(evaluation.asset_key, evaluation.check_name)
        seen.add(key)
        status = "PASS" if evaluation.passed else f"FAIL({evaluation.severity.value})"
        if not evaluation.passed and evaluation.severity == dg.AssetCheckSeverity.ERROR:
            fatal.append(f"{key.asset_key.to_user_string()}:{key.name} failed (ERROR)")
        rows.append((key.asset_key.to_user_string(), key.name, status, _fmt_metadata(dict(evaluation.metadata))))
    for key in sorted(expected_checks - seen, key=lambda k: (k.asset_key.to_user_string(), k.name)):
        rows.append((key.asset_key.to_user_string(), key.name, "NOT RUN", ""))
        fatal.append(f"{key.asset_key.to_user_string()}:{key.name} never ran")
    done = _done(result)
    if result.success and selected - done:
        fatal.append(f"not materialized: {', '.join(sorted(k.to_user_string() for k in selected - done))}")
    return rows, fatal


def format_table(rows: list[tuple[str, str, str, str]]) -> str:
    header = ("asset", "check", "result")
    widths = [max([len(h)] + [len(r[i]) for r in rows]) for i, h in enumerate(header)]
    lines = [f"{'asset':<{widths[0]}}  {'check':<{widths[1]}}  {'result':<{widths[2]}}  metadata"]
    lines += [f"{a:<{widths[0]}}  {c:<{widths[1]}}  {s:<{widths[2]}}  {m}" for a, c, s, m in rows]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--job", default="retrain_all", help="job to materialize (default: retrain_all, every asset)")
    parser.add_argument("--keep", help="artifact folder to keep (default: a temporary one, removed)")
    args = parser.parse_args(argv)

    workdir = tempfile.TemporaryDirectory(prefix="ohlora-smoke-")
    home = Path(args.keep) if args.keep else Path(workdir.name)
    home.mkdir(parents=True, exist_ok=True)
    # The resources read their settings from the environment when the definitions are imported.
    os.environ["OHLORA_SMOKE"] = "1"
    os.environ["OHLORA_HOME"] = str(home / "artifacts")
    os.environ["OHLORA_AUTOMATION"] = "off"

    import dagster as dg

    from ohlora_assets.definitions import defs

    job = defs.resolve_job_def(args.job)
    graph = defs.resolve_asset_graph()
    selected = set(job.asset_layer.selected_asset_keys)
    expected_checks = {key for key in graph.asset_check_keys if key.asset_key in selected}
    print(f"ci_smoke: job {args.job}: {len(selected)} assets, {len(expected_checks)} checks, artifacts in {home}")

    started = time.monotonic()
    with dg.DagsterInstance.ephemeral() as instance:
        # INFO keeps the progress lines (epoch, step, loss, ETA) and drops the per-step DEBUG chatter
        result = job.execute_in_process(
            instance=instance,
            raise_on_error=False,
            run_config={"loggers": {"console": {"config": {"log_level": "INFO"}}}},
        )
    elapsed = time.monotonic() - started

    rows, fatal = judge(result, selected, expected_checks)
    print(format_table(rows))
    print(
        f"ci_smoke: run {'succeeded' if result.success else 'FAILED'} in {elapsed:.0f}s; "
        f"{len(_done(result))}/{len(selected)} assets materialized or observed; "
        f"{sum(r[2] == 'PASS' for r in rows)}/{len(rows)} checks passed"
    )
    workdir.cleanup()
    if fatal:
        print("ci_smoke: FAILED\n  - " + "\n  - ".join(fatal), file=sys.stderr)
        return 1
    print("ci_smoke: OK")
    return 0


if __name__ == "__main__":
    sys.exit(main())
