"""The experiments on the smoke profile: LoRA rank 16 vs 64, and training with vs without the retrieved concept."""

import json

import dagster as dg
import pandas as pd
import pytest

from ohlora_assets.assets import base_models, data, experiments
from ohlora_assets.core.registry import registries
from ohlora_assets_tests.conftest import UPSTREAM, make_resources, sample_paths, smoke_materialization

ALL = dg.load_assets_from_modules([data, base_models, experiments])
# The data group whole (task_splits is one multi-asset), the base, and the two experiments: no served adapter.
SELECTION = dg.AssetSelection.groups("data") | dg.AssetSelection.assets(
    "base_models", "lora_rank_experiment", "rag_concept_experiment"
)


def _materializations(result: dg.ExecuteInProcessResult) -> dict[str, dg.AssetMaterialization]:
    return {e.asset_key.to_user_string(): e.materialization for e in result.get_asset_materialization_events()}


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory):
    root = tmp_path_factory.mktemp("store")
    (root / "experiments" / "lora_rank_experiment" / "rank_8").mkdir(parents=True)  # a rank no longer configured
    earlier_release = root / "models" / "lora_rank_experiment" / "rank_16"  # scratch where it used to be kept
    earlier_release.mkdir(parents=True)
    (earlier_release / "adapter_config.json").write_text("{}")
    result, instance, resources = smoke_materialization(root, ALL, selection=SELECTION)
    assert result.success
    return result, instance, resources, root


def test_lora_rank_experiment_reports_both_ranks(pipeline):
    result, _, resources, _ = pipeline
    meta = _materializations(result)["lora_rank_experiment"].metadata
    assert "| metric | rank 16 | rank 64 |" in meta["report"].value
    assert "rank_16/numbered_prefix_rate" in meta and "rank_64/give_up_rate" in meta
    store = resources["store"]
    for rank in (16, 64):
        adapter = store.experiment_dir("lora_rank_experiment") / f"rank_{rank}"
        config = json.loads((adapter / "adapter_config.json").read_text())
        assert config["r"] == rank
    # scratch, not models: a rank an earlier config named is gone, and `ohlora models list` shows no experiment
    assert sorted(p.name for p in store.experiment_dir("lora_rank_experiment").iterdir()) == ["rank_16", "rank_64"]
    assert not {r.name for r in registries(store.path("models"))} & {"lora_rank_experiment", "rag_concept_experiment"}
    assert set(pd.read_parquet(store.report_dir("lora_rank_experiment") / "answers.parquet")["rank"]) == {16, 64}


def test_rag_concept_experiment_reports_accuracy_per_question(pipeline):
    result, _, _, _ = pipeline
    meta = _materializations(result)["rag_concept_experiment"].metadata
    assert 0.0 <= meta["accuracy_with_concept"].value <= 1.0
    assert 0.0 <= meta["accuracy_without_concept"].value <= 1.0
    assert meta["questions"].value == 3 and meta["key_facts_derived_from_concept"].value == 0
    assert "| # | question | key facts | with concept | without concept |" in meta["per_question"].value
    assert "data:image/png;base64," in meta["plot"].value


@pytest.mark.skipif(not (UPSTREAM / "SFT_with_RAG_concept.csv").is_file(), reason="upstream seed data not present")
def test_rag_concept_experiment_runs_on_the_seed_csv(pipeline):
    _, instance, _, root = pipeline
    # same artifact folder (the smoke base model is reused), the seed's ML Q&A file instead of ours
    resources = make_resources(root, paths=sample_paths(ml_qa_csv=str(UPSTREAM / "SFT_with_RAG_concept.csv")))
    result = dg.materialize(ALL, selection=["ml_qa_dataset", "rag_concept_experiment"], resources=resources, instance=instance)
    assert result.success
    meta = _materializations(result)["rag_concept_experiment"].metadata
    assert meta["questions"].value == 3 and meta["key_facts_derived_from_concept"].value == 3
    assert "코사인 유사도 *(derived)*" in meta["per_question"].value
