"""Which materialization a downstream step judges when another run materializes the same asset meanwhile."""

import dagster as dg

from ohlora_assets.versions import own_materialization
from ohlora_assets_tests.conftest import step_failure

MODEL = dg.AssetKey("adapter_summary")


@dg.asset(key=MODEL)
def trained() -> dg.MaterializeResult:
    return dg.MaterializeResult(metadata={"version": "a" * 16})


@dg.asset(deps=[trained])
def another_run_trains_meanwhile(context: dg.AssetExecutionContext) -> None:
    # what a second run finishing its training between this run's steps records on the shared instance
    context.instance.report_runless_asset_event(dg.AssetMaterialization(MODEL, metadata={"version": "b" * 16}))


@dg.asset(deps=[another_run_trains_meanwhile])
def judged(context: dg.AssetExecutionContext) -> dg.MaterializeResult:
    return dg.MaterializeResult(metadata={"judged": own_materialization(context, MODEL).asset_materialization.metadata
                                          ["version"].value})


@dg.asset
def judged_on_its_own(context: dg.AssetExecutionContext) -> dg.MaterializeResult:
    return dg.MaterializeResult(metadata={"judged": own_materialization(context, MODEL).asset_materialization.metadata
                                          ["version"].value})


def _judged(result: dg.ExecuteInProcessResult, key: str) -> str:
    [event] = [e for e in result.get_asset_materialization_events() if e.asset_key == dg.AssetKey(key)]
    return event.materialization.metadata["judged"].value


def test_a_run_judges_the_version_it_trained_not_the_latest_on_the_instance():
    with dg.instance_for_test() as instance:
        result = dg.materialize([trained, another_run_trains_meanwhile, judged], instance=instance)
        assert instance.get_latest_materialization_event(MODEL).asset_materialization.metadata["version"].value == (
            "b" * 16
        )
        assert _judged(result, "judged") == "a" * 16
        # a run that did not train it (a report run on its own) judges the latest
        alone = dg.materialize([judged_on_its_own], instance=instance)
        assert _judged(alone, "judged_on_its_own") == "b" * 16


@dg.asset(deps=[trained])
def fails_until_fixed() -> None:
    import os

    if not os.environ.get("OHLORA_TEST_FIXED"):
        raise RuntimeError("a step after training fails (out of disk, say)")


@dg.asset(deps=[fails_until_fixed])
def judged_after_the_failure(context: dg.AssetExecutionContext) -> dg.MaterializeResult:
    return dg.MaterializeResult(metadata={"judged": own_materialization(context, MODEL).asset_materialization.metadata
                                          ["version"].value})


def _retrain_job() -> dg.JobDefinition:
    assets = [trained, fails_until_fixed, judged_after_the_failure]
    job = dg.define_asset_job("retrain", executor_def=dg.in_process_executor)
    return dg.Definitions(assets=assets, jobs=[job]).resolve_job_def("retrain")


def test_a_run_re_executed_from_failure_judges_the_version_its_parent_run_trained(monkeypatch):
    with dg.instance_for_test() as instance:
        with dg.execute_job(dg.reconstructable(_retrain_job), instance=instance, raise_on_error=False) as failed:
            assert not failed.success
        instance.report_runless_asset_event(dg.AssetMaterialization(MODEL, metadata={"version": "b" * 16}))
        monkeypatch.setenv("OHLORA_TEST_FIXED", "1")
        options = dg.ReexecutionOptions.from_failure(failed.run_id, instance)
        with dg.execute_job(dg.reconstructable(_retrain_job), instance=instance, reexecution_options=options) as rerun:
            assert rerun.success  # it did not train again: the version is its parent run's
            assert _judged(rerun, "judged_after_the_failure") == "a" * 16


def test_a_recorded_version_whose_files_are_gone_is_named_with_the_remedy(tmp_path):
    """The instance remembers a materialization whose model folder was deleted by hand (or OHLORA_HOME changed)."""
    from ohlora_assets.resources import ArtifactStore
    from ohlora_assets.versions import candidate

    @dg.asset
    def promoted(context: dg.AssetExecutionContext, store: ArtifactStore) -> None:
        candidate(context, store, MODEL.to_user_string())

    result = dg.materialize([trained, promoted], resources={"store": ArtifactStore(root=str(tmp_path))},
                            raise_on_error=False)
    message = step_failure(result).message
    assert f"adapter_summary {'a' * 16}, which its last materialization wrote, is not in {tmp_path}" in message
    assert "Materialize adapter_summary again" in message
