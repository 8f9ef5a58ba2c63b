"""Immutable model versions and a serving pointer: the lifecycle train -> check -> promote -> serve -> roll back.

Layout of one model's registry, `<OHLORA_HOME>/models/<asset name>/`:

    versions/<version id>/     one trained model, never rewritten; `version.json` holds its creation time,
                               data version, training metrics and notes
    evaluations/<id>.json      metrics measured after training (the checks' figures); the version stays untouched
    serving.json               the serving pointer: the serving version, the one before it, the stack that
                               `rollback` pops, and the audit history of every promotion
    .staging-<pid>~<host>-*    a version being written (debris after a kill; removed by the next writer)
    .trash-<pid>~<host>-*      a pruned version being deleted (same)

1. *Train*: `write_version()` yields a staging directory; the trainer saves into it; one `os.rename` moves it
   to `versions/<id>`, where the id is the first 16 hex digits of the weights' hash (`core/io.directory_hash`;
   for an adapter on a base of the user's own, of the weights and that base). The same weights written twice
   are one version.
2. *Check*: the checks measure the version and `record_metrics()` stores their figures; `core/promotion.py`
   decides against the serving version's figures.
3. *Promote*: `promote()` replaces `serving.json` with one `os.replace`. A reader sees the old pointer or the
   new one, never none, and both name complete versions.
4. *Serve*: readers call `serving_path()`.
5. *Roll back*: `rollback()` returns to the version that served before the current one.

`prune()` keeps the serving version, the rollback target and the newest N, and deletes the rest.

Models saved before this registry existed sit directly in the asset's folder ("legacy"). Until a version is
promoted, `serving_path()` answers that folder, so readers keep working with today's outputs; the first
`prune()` after a promotion deletes those legacy files (a promoted version has replaced them).

A kill at any instant leaves a loadable serving model: every step that changes what readers see is one
rename; core/crash_safety.py marks the steps in between for the kill tests and removes what killed
writers leave behind; its file lock (`.lock`) serializes promotions, rollbacks and prunes.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import tempfile
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterable, Iterator

from ohlora_assets.core.crash_safety import (
    POINTER_TMP_PREFIX,
    STAGING_PREFIX,
    TRASH_PREFIX,
    checkpoint,
    exclusive,
    remove_debris,
)
from ohlora_assets.core.io import atomic_write_bytes, directory_hash, fsync_directory, seal, writer_tag

VERSIONS = "versions"
EVALUATIONS = "evaluations"
SERVING = "serving.json"
VERSION_FILE = "version.json"
LEGACY = "legacy"
DEFAULT_KEEP = 5
ID_LENGTH = 16
# What to do when nothing serves yet (the chat and the gate say it): the pipeline promotes, or a person does.
NOTHING_SERVES = ("run `make run` (or `dg launch --job retrain_all`) and let its gate promote one, or serve a trained "
                  "version: ohlora models promote {model} ID (`ohlora models list` shows the ids)")
_VERSION_ID = re.compile(f"[0-9a-f]{{{ID_LENGTH}}}")
STACK_LIMIT = 50

class RegistryError(ValueError):
    """An unknown version, nothing to roll back to, or a pointer to a missing version."""


class DamagedRecord(RegistryError):
    """A registry file that was read but holds no record: not JSON, not UTF-8, or not the expected shape."""


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="microseconds")


@dataclass
class PendingVersion:
    """What `write_version` yields: save the model into `path`; `metrics` and `notes` may be set meanwhile.
    After the block, `version` is the id and `created` says whether this call wrote it (False: it existed)."""

    path: Path
    metrics: dict[str, Any] = field(default_factory=dict)
    notes: str = ""
    data_version: str | None = None
    version: str | None = None
    created: bool = False


@dataclass(frozen=True)
class ModelVersion:
    version: str
    path: Path
    created_at: str
    data_version: str
    metrics: dict[str, Any]
    notes: str

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "path": str(self.path)}


class ModelRegistry:
    """The versions of one model asset under `<models_root>/<name>/` (see the module docstring)."""

    def __init__(self, models_root: str | Path, name: str):
        self.name = name
        self.root = Path(models_root) / name
        self.versions_dir = self.root / VERSIONS
        self.pointer = self.root / SERVING

    # --- writing -----------------------------------------------------------------------------

    @contextlib.contextmanager
    def write_version(
        self, metrics: dict[str, Any] | None = None, notes: str = "", data_version: str | None = None
    ) -> Iterator[PendingVersion]:
        """Yield a staging directory beside the versions; on success it becomes `versions/<id>` in one rename.

        The id is the first 16 hex digits of `data_version`, by default the hash of the weights
        (`.safetensors` files; every file when there is none). An id that exists already is left as it
        is (versions are immutable) and the staging directory is dropped; a folder of that id without its
        `version.json` (hand-damaged) is replaced. On an exception nothing is kept.
        """
        self.versions_dir.mkdir(parents=True, exist_ok=True)
        self._remove_debris()
        staging = Path(tempfile.mkdtemp(prefix=f"{STAGING_PREFIX}{writer_tag()}-", dir=self.root))
        pending = PendingVersion(staging, dict(metrics or {}), notes, data_version)
        try:
            yield pending
            checkpoint("write:staged")
            data = pending.data_version or self._weights_hash(staging)
            pending.version = data.removeprefix("sha256:")[:ID_LENGTH]
            target = self.versions_dir / pending.version
            if (target / VERSION_FILE).is_file():
                shutil.rmtree(staging)
                return
            description = {
                "version": pending.version,
                "name": self.name,
                "created_at": _now(),
                "data_version": data,
                "metrics": pending.metrics,
                "notes": pending.notes,
            }
            (staging / VERSION_FILE).write_text(json.dumps(description, ensure_ascii=False, indent=2), encoding="utf-8")
            # Read by every user of the artifact folder, and on disk before the rename publishes it: after a power
            # cut, a version whose name is there has its files too.
            seal(staging)
            checkpoint("write:described")
            if target.exists() and not (target / VERSION_FILE).is_file():
                # A folder without its description (deleted by hand) is no version, and no writer's either (one
                # rename brings folder and description together): without this, every retrain of these weights
                # would fail on it for ever. (With its description it is a concurrent writer's: kept, below.)
                with contextlib.suppress(FileNotFoundError):
                    self._delete(target)
            try:
                os.rename(staging, target)
            except OSError:
                if not (target / VERSION_FILE).is_file():  # not a concurrent writer of the same version
                    raise
                shutil.rmtree(staging)
                return
            fsync_directory(self.versions_dir)
            pending.created = True
            checkpoint("write:renamed")
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise

    @staticmethod
    def _weights_hash(directory: Path) -> str:
        if any(directory.rglob("*.safetensors")):
            return directory_hash(directory)
        return directory_hash(directory, suffixes=tuple({p.suffix for p in directory.rglob("*") if p.is_file()}))

    @exclusive
    def record_metrics(self, version: str, metrics: dict[str, Any]) -> None:
        """Merge measured figures (the checks') into the version's evaluation record; the version stays as written.
        Under the lock: two checks recording at once must not each write back the record without the other's."""
        self.get(version)
        path = self.root / EVALUATIONS / f"{version}.json"
        current = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
        atomic_write_bytes(path, json.dumps({**current, **metrics}, ensure_ascii=False, indent=2).encode("utf-8"))

    # --- reading -----------------------------------------------------------------------------

    def get(self, version: str) -> ModelVersion:
        """A registered version by id or unique id prefix."""
        matches = [v for v in self._ids() if v == version] or [v for v in self._ids() if v.startswith(version)]
        if len(matches) != 1 or not version:
            known = ", ".join(self._ids()) or "none"
            raise RegistryError(f"{self.name}: no version {version!r} (unique prefix of one of: {known})")
        return self._load(matches[0])

    def _ids(self) -> list[str]:
        if not self.versions_dir.is_dir():
            return []
        return sorted(p.name for p in self.versions_dir.iterdir() if (p / VERSION_FILE).is_file())

    def _load(self, version: str) -> ModelVersion:
        path = self.versions_dir / version
        description = _read_record(path / VERSION_FILE, ("created_at", "data_version"))
        if not (isinstance(description["created_at"], str) and isinstance(description.get("metrics", {}), dict)):
            raise RegistryError(f"{path / VERSION_FILE}: not a version record (created_at must be an ISO time "
                                "string, metrics an object); restore it or delete the version folder")
        evaluation = self.root / EVALUATIONS / f"{version}.json"
        measured = _read_record(evaluation, ()) if evaluation.exists() else {}
        return ModelVersion(
            version=version,
            path=path,
            created_at=description["created_at"],
            data_version=description["data_version"],
            metrics={**description.get("metrics", {}), **measured},
            notes=description.get("notes", ""),
        )

    def _load_or_none(self, version: str) -> ModelVersion | None:
        try:
            return self._load(version)
        except RegistryError:
            return None

    def versions(self) -> list[ModelVersion]:
        """Every registered version, oldest first."""
        return _oldest_first(self._load(v) for v in self._ids())

    def state(self) -> dict[str, Any] | None:
        """The serving pointer as stored (None before the first promotion); RegistryError naming the file
        when it is not one (damaged, hand-edited): readers must not guess which version serves."""
        if not self.pointer.exists():
            return None
        try:
            state = _read_record(self.pointer, ("version", "stack", "history"))
            problem = None if (isinstance(state["version"], str) and isinstance(state["stack"], list)
                               and isinstance(state["history"], list)) else (
                f"{self.pointer}: not a serving pointer (version must be an id, stack and history lists)")
        except DamagedRecord as error:
            problem = str(error)
        if problem is not None:
            raise DamagedRecord(f"{problem}; promoting a version replaces it: ohlora models promote {self.name} ID"
                                f"{self._ids_hint()}")
        return state

    def _ids_hint(self) -> str:
        ids = sorted(self._ids())
        return f" (versions: {', '.join(ids)})" if ids else " (no version is registered yet)"

    def _serving_id(self) -> str | None:
        """The serving version's id, checked to be a registered version (not a path out of the registry)."""
        state = self.state()
        if state is None:
            return None
        if state["version"] not in self._ids():
            raise RegistryError(f"{self.name}: {self.pointer} names version {state['version']!r}, which is missing; "
                                f"serve another: ohlora models promote {self.name} ID{self._ids_hint()}")
        return state["version"]

    def serving(self) -> ModelVersion | None:
        """The serving version; None when nothing was promoted (then see `legacy_path`)."""
        version = self._serving_id()
        return None if version is None else self._load(version)

    def legacy_path(self) -> Path | None:
        """The asset's folder when it holds a model saved before versioning (files beside the registry's own)."""
        if not self.root.is_dir():
            return None
        own = {VERSIONS, EVALUATIONS, SERVING}
        for entry in self.root.iterdir():
            if entry.name not in own and not entry.name.startswith("."):
                return self.root
        return None

    def serving_path(self) -> Path | None:
        """Where readers load the model: the serving version, else a legacy model, else None."""
        version = self._serving_id()  # no metrics read: serving needs the folder alone
        return self.versions_dir / version if version is not None else self.legacy_path()

    def serving_label(self) -> str | None:
        """The serving version's id, `legacy`, or None: what reports and the chat print."""
        version = self._serving_id()
        if version is not None:
            return version
        return LEGACY if self.legacy_path() is not None else None

    # --- the pointer -------------------------------------------------------------------------

    @exclusive
    def promote(self, version: str, reason: str) -> ModelVersion:
        """Make `version` serve, in one `os.replace` of serving.json; the history records `reason`. Promoting is
        how a person repairs a file that holds no pointer (damaged, hand-edited): it is replaced, and kept beside as
        a hidden .serving.json.unreadable-<time>. One that cannot be read at all (permissions, the disk) raises."""
        target = self.get(version)
        try:
            state = self.state()
        except DamagedRecord:  # not a failed read (that raises): a file holding no pointer
            os.replace(self.pointer, self.pointer.with_name(f".{SERVING}.unreadable-{_now()}"))
            state = None
        state = state or {"version": None, "stack": [], "history": []}
        if state["version"] == target.version:
            return target
        stack = [*state["stack"], target.version][-STACK_LIMIT:]
        self._write_pointer(state, stack, target.version, reason)
        return target

    @exclusive
    def rollback(self) -> ModelVersion:
        """Serve the version that served before the current one (again and again, down the stack)."""
        state = self.state()
        if state is None or len(state["stack"]) < 2:
            raise RegistryError(f"{self.name}: no earlier serving version to roll back to")
        stack = state["stack"][:-1]
        target = self.get(stack[-1])
        self._write_pointer(state, stack, target.version, f"rollback from {state['version']}")
        return target

    def _write_pointer(self, state: dict, stack: list[str], version: str, reason: str) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        self._remove_debris()
        entry = {"version": version, "previous": state["version"], "reason": reason, "at": _now()}
        payload = {
            "version": version,
            "previous": stack[-2] if len(stack) > 1 else None,
            "stack": stack,
            "history": [*state["history"], entry],
        }
        temporary = self.root / f"{POINTER_TMP_PREFIX}{writer_tag()}"
        with open(temporary, "w", encoding="utf-8") as handle:
            json.dump(payload, handle, ensure_ascii=False, indent=2)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(temporary, 0o644)
        checkpoint("promote:pointer-written")
        os.replace(temporary, self.pointer)
        fsync_directory(self.root)  # the rename itself on disk: after a power cut the new pointer serves
        checkpoint("promote:replaced")

    # --- cleaning ----------------------------------------------------------------------------

    @exclusive
    def prune(self, keep: int = DEFAULT_KEEP, protected: set[str] = frozenset()) -> list[str]:
        """Delete all but the serving version, its rollback target, `protected` ids and the newest `keep`.

        `protected` is for versions something else still needs (the base model an adapter version was
        trained on). Also removes debris of killed writers and, once a version serves, a legacy model.
        Returns the deleted ids.
        """
        self._remove_debris()
        state = self.state()
        kept = set(protected)
        if state is not None:
            kept.add(state["version"])
            kept.update(state["stack"][-2:])
        # A version whose record cannot be read has no age to rank: it is left for a person (models list names it).
        ordered = _oldest_first(filter(None, map(self._load_or_none, self._ids())))
        kept.update(v.version for v in ordered[len(ordered) - keep :] if keep > 0)
        deleted = []
        for version in ordered:
            if version.version in kept:
                continue
            self._delete(version.path)
            deleted.append(version.version)
            evaluation = self.root / EVALUATIONS / f"{version.version}.json"
            evaluation.unlink(missing_ok=True)
        if state is not None and self.legacy_path() is not None:
            self._delete_legacy()
        return deleted

    def _delete(self, path: Path) -> None:
        """Rename into the trash first: a kill mid-delete leaves debris, never a half version in versions/."""
        trash = self.root / f"{TRASH_PREFIX}{writer_tag()}-{path.name}-{time.monotonic_ns()}"
        os.rename(path, trash)
        checkpoint("prune:trashed")
        shutil.rmtree(trash)
        checkpoint("prune:deleted")

    def _delete_legacy(self) -> None:
        own = {VERSIONS, EVALUATIONS, SERVING}
        for entry in list(self.root.iterdir()):
            if entry.name in own or entry.name.startswith("."):
                continue
            if entry.is_dir() and not entry.is_symlink():
                self._delete(entry)
            else:
                entry.unlink()

    def _remove_debris(self) -> None:
        if self.root.is_dir():
            remove_debris(self.root)


def _oldest_first(versions: Iterable[ModelVersion]) -> list[ModelVersion]:
    return sorted(versions, key=lambda v: (v.created_at, v.version))


def version_in_path(path: str | Path, name: str) -> tuple[str, Path] | None:
    """(version id, the path inside that version) when `path` lies in registry `name`'s versions folder, wherever
    the artifact folder was when the path was written (an adapter names its base by absolute path; a restored or
    re-mounted OHLORA_HOME moves it)."""
    parts = Path(path).parts
    for i in range(len(parts) - 2):
        if parts[i] == name and parts[i + 1] == VERSIONS:
            return parts[i + 2], Path(*parts[i + 3 :])
    return None


def remove_orphaned_reports(reports_root: str | Path, models_root: str | Path) -> list[Path]:
    """Delete what reports keep per version (`<reports_root>/<report asset>/<version id>/`) of every version that no
    registry under `models_root` holds any more: those just pruned, and those a run killed between its prune and
    this sweep left behind. Ids are content hashes, so a folder of that name belongs to that version alone; a
    folder not named like one is left alone. Returns the folders removed."""
    held = {version.name for version in Path(models_root).glob(f"*/{VERSIONS}/*")}
    removed = [
        folder for folder in Path(reports_root).glob("*/*")
        if folder.is_dir() and _VERSION_ID.fullmatch(folder.name) and folder.name not in held
    ]
    for folder in removed:
        shutil.rmtree(folder, ignore_errors=True)
    return removed


def _read_record(path: Path, required: tuple[str, ...]) -> dict[str, Any]:
    """A registry JSON file as a dict holding `required`, or RegistryError naming the file."""
    try:
        raw = path.read_bytes()
    except OSError as error:  # the disk or the permissions, not the record: nothing to repair by replacing it
        raise RegistryError(f"{path}: unreadable ({type(error).__name__}: {error})") from error
    try:
        record = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise DamagedRecord(f"{path}: unreadable ({type(error).__name__}: {error})") from error
    missing = [key for key in required if key not in record] if isinstance(record, dict) else list(required)
    if not isinstance(record, dict) or missing:
        raise DamagedRecord(f"{path}: not a registry record (missing {', '.join(missing) or 'an object'})")
    return record


def registries(models_root: str | Path) -> list[ModelRegistry]:
    """Every model folder under `<OHLORA_HOME>/models`, registered or legacy, by name."""
    root = Path(models_root)
    if not root.is_dir():
        return []
    found = [ModelRegistry(root, p.name) for p in sorted(root.iterdir()) if p.is_dir() and not p.name.startswith(".")]
    return [r for r in found if r.versions_dir.is_dir() or r.pointer.is_file() or r.legacy_path() is not None]
