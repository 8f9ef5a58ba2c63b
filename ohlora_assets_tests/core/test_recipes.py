"""Budgets: the recipes per profile, what a run config overrides, and the smoke caps."""

import pytest

from ohlora_assets.core.generation import SamplingSettings
from ohlora_assets.core.recipes import ADAPTER_RECIPES, RAG_CONCEPT_RECIPE, SMALL_ON_CPU, SMOKE, Budget, LoraHyperParams


def test_epochs_are_the_original_ones_but_memory_and_eyes_mouth_pose_on_the_embedded_base():
    full, embedded = Budget("full"), Budget("embedded")
    assert full.adapter("memory", {}).epochs == 20
    assert full.adapter("eyes_mouth_pose", {}).epochs == 30
    assert embedded.adapter("memory", {}).epochs == 10
    assert embedded.adapter("summary", {}).epochs == 10
    assert embedded.adapter("eyes_mouth_pose", {"epochs": None}).epochs == 15
    assert embedded.adapter("eyes_mouth_pose", {"epochs": 30}).epochs == 30  # run config wins
    assert embedded.adapter("memory", {"epochs": 25}).epochs == 25  # run config wins
    assert Budget("embedded", smoke=True).adapter("eyes_mouth_pose", {}).epochs == SMOKE.adapter_epochs


def test_the_profile_sets_the_learning_rate_unless_the_run_config_does():
    assert Budget("full").adapter("summary", {}).learning_rate == 3e-4
    assert Budget("embedded").adapter("summary", {"learning_rate": None}).learning_rate == 2e-3
    assert Budget("embedded").adapter("summary", {"learning_rate": 1e-4, "rank": 4}).learning_rate == 1e-4
    hp = Budget("embedded").adapter("memory", {"rank": 4})
    assert (hp.rank, hp.batch_size) == (4, ADAPTER_RECIPES["memory"].batch_size)


def test_experiments_keep_their_recipe_and_smoke_caps_their_epochs():
    assert Budget("full").experiment(RAG_CONCEPT_RECIPE, {}).epochs == 20
    assert Budget("full", smoke=True).experiment(RAG_CONCEPT_RECIPE, {"epochs": 7}).epochs == SMOKE.experiment_epochs


def test_smoke_caps_prompts_answers_rows_and_sampling():
    smoke, real = Budget("embedded", smoke=True), Budget("embedded")
    assert (smoke.prompts(0), smoke.prompts(2), real.prompts(0), real.prompts(5)) == (SMOKE.prompts, 2, None, 5)
    assert (smoke.answers(4), real.answers(4)) == (SMOKE.answers, 4)
    assert (smoke.limit("experiment_train_rows"), real.limit("experiment_train_rows")) == (SMOKE.experiment_train_rows, None)
    settings = SamplingSettings(max_new_tokens=96, max_retries=3)
    assert smoke.sampling(settings).max_new_tokens == SMOKE.max_new_tokens and real.sampling(settings) == settings


def test_an_unknown_profile_is_refused_by_name():
    with pytest.raises(ValueError, match="unknown profile 'tiny'"):
        Budget("tiny")


def test_the_small_profile_is_capped_on_cpu_and_runs_the_recipes_on_an_accelerator():
    cpu, gpu = Budget("small"), Budget("small", accelerated=True)
    assert cpu.caps == SMALL_ON_CPU and gpu.caps is None
    assert cpu.adapter("eyes_mouth_pose", {}).epochs == SMALL_ON_CPU.adapter_epochs
    assert gpu.adapter("eyes_mouth_pose", {}).epochs == ADAPTER_RECIPES["eyes_mouth_pose"].epochs == 30
    assert gpu.adapter("summary", {}).learning_rate == 3e-4
    assert (cpu.limit("adapter_train_rows"), gpu.limit("adapter_train_rows")) == (SMALL_ON_CPU.adapter_train_rows, None)
    # smoke wins over every profile
    assert Budget("small", smoke=True).caps == SMOKE


@pytest.mark.parametrize(
    "values, named",
    [
        ({"alpha": 0}, "alpha must be a positive number"),  # would train an adapter that cannot learn
        ({"alpha": -16}, "alpha must be a positive number"),
        ({"dropout": -0.1}, "dropout must be at least 0 and below 1"),
        ({"dropout": float("nan")}, "dropout must be at least 0 and below 1"),
        ({"init": ""}, "init must be one of default, gaussian"),  # PEFT would read "" as False: random noise
        ({"learning_rate": float("inf")}, "learning_rate must be a finite number, 0 or more"),
        ({"learning_rate": -1e-3}, "learning_rate must be a finite number, 0 or more"),
        ({"rank": 10**9}, "rank must be at most 1024"),
        ({"max_length": 1}, "max_length must be at least 8"),
        ({"seed": -1}, "seed must be at least 0"),
    ],
)
def test_lora_values_that_would_fail_deep_in_peft_or_train_nonsense_are_named(values, named):
    with pytest.raises(ValueError, match=named):
        LoraHyperParams(**{"rank": 16, **values})
    assert LoraHyperParams(rank=16, init="pissa_niter_4").init == "pissa_niter_4"


def test_a_configured_zero_is_a_value_not_the_recipes_epochs():
    with pytest.raises(ValueError, match="epochs must be at least 1, got 0"):
        Budget("embedded").adapter("memory", {"epochs": 0})
    assert Budget("embedded").adapter("memory", {"epochs": None}).epochs == 10


@pytest.mark.parametrize(
    "values, named",
    [({"temperature": 0.0}, "temperature must be a positive number"), ({"temperature": float("nan")}, "temperature"),
     ({"max_new_tokens": 0}, "max_new_tokens must be at least 1"), ({"prompt_batch_size": 0}, "prompt_batch_size"),
     ({"repetition_penalty": -1.2}, "repetition_penalty must be a positive number"), ({"max_retries": -1}, "max_retries")],
)
def test_sampling_values_that_would_fail_inside_generate_are_named(values, named):
    with pytest.raises(ValueError, match=named):
        SamplingSettings(**values)


def test_a_users_own_model_on_the_embedded_profile_gets_the_original_recipe_not_the_tiny_lms():
    tiny = Budget("embedded").adapter("memory", {}, base_source="embedded")
    own = Budget("embedded").adapter("memory", {}, base_source="local")
    assert tiny.learning_rate == 2e-3 and own.learning_rate == 3e-4
    assert own == Budget("full").adapter("memory", {}, base_source="hub")
    assert tiny.epochs < own.epochs
    # the experiments train the same base: the same learning rate as its adapter
    assert Budget("embedded").experiment(RAG_CONCEPT_RECIPE, {}, base_source="local").learning_rate == 3e-4
    assert Budget("embedded").experiment(RAG_CONCEPT_RECIPE, {}, base_source="embedded").learning_rate == 2e-3
