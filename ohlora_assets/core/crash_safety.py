"""What keeps the registry safe under kills and concurrent writers: named checkpoints between steps (for the
kill tests), the removal of what killed writers leave behind, and a file lock around pointer changes.

`checkpoint(name)` does nothing unless OHLORA_REGISTRY_KILL_AT equals `name`; then the process SIGKILLs
itself there, which is how the tests kill a writer at every step (CHECKPOINTS) and then check that the
serving model still loads. Debris names carry the writer's pid and machine, so a later writer removes only
the debris of processes that are gone, never a directory another live process is still writing, here or on
another machine sharing the folder.
"""

from __future__ import annotations

import fcntl
import functools
import os
import re
import shutil
import signal
from pathlib import Path

from ohlora_assets.core.io import WRITER_PATTERN, writer_gone

STAGING_PREFIX = ".staging-"  # a version being written
TRASH_PREFIX = ".trash-"  # a pruned version being deleted
POINTER_TMP_PREFIX = ".serving.json.tmp-"  # a serving pointer before its rename
DEBRIS_PREFIXES = (STAGING_PREFIX, TRASH_PREFIX, POINTER_TMP_PREFIX)

LOCK_FILE = ".lock"

KILL_ENV = "OHLORA_REGISTRY_KILL_AT"
CHECKPOINTS = (
    "write:staged",  # the caller's files are in staging; version.json not yet
    "write:described",  # version.json written; not yet renamed into versions/
    "write:renamed",  # the version exists; nothing serves it yet
    "promote:pointer-written",  # the new pointer is in its temporary file; the old one still serves
    "promote:replaced",  # the new pointer serves
    "prune:trashed",  # a pruned version renamed into the trash, not yet deleted
    "prune:deleted",  # one pruned version deleted
)


def checkpoint(name: str) -> None:
    """Between two steps: the kill tests make the process SIGKILL itself here (OHLORA_REGISTRY_KILL_AT=name)."""
    if os.environ.get(KILL_ENV) == name:
        os.kill(os.getpid(), signal.SIGKILL)


def owner(name: str) -> str | None:
    """The writer (core/io.writer_tag) in a debris name, None for anything else. Leading dots are ignored: a
    trainer that saves through core/io.atomic_directory into a staging directory leaves `..staging-<w>-*.tmp-*`."""
    bare = name.lstrip(".")
    for prefix in DEBRIS_PREFIXES:
        if bare.startswith(prefix.lstrip(".")):
            head = bare[len(prefix) - 1 :].split("-", 1)[0]
            return head if re.fullmatch(WRITER_PATTERN, head) else None
    return None


def remove_debris(root: Path) -> None:
    """Delete the staging, trash and pointer temporaries in `root` whose writer is gone."""
    for entry in root.iterdir():
        writer = owner(entry.name)
        if writer is not None and writer_gone(writer, entry):
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry, ignore_errors=True)
            else:
                entry.unlink(missing_ok=True)


def exclusive(method):
    """Run a registry method under the registry's file lock: pointer changes and prunes queue one after
    another, so none reads a pointer another is about to replace (a kill releases the lock)."""

    @functools.wraps(method)
    def locked(registry, *args, **kwargs):
        registry.root.mkdir(parents=True, exist_ok=True)
        with open(registry.root / LOCK_FILE, "a") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            return method(registry, *args, **kwargs)

    return locked
