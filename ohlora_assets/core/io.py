"""Content hashes and the one atomic path through which every artifact is written.

A write goes to a hidden staging sibling (`.<name>.tmp-<pid>~<host>-<token>`), is made readable by
everyone (directories 0o755, files 0o644: a gate or server run by another user reads them) and
flushed, and then takes the target's place in one step. For a directory that step is an atomic
exchange (Linux renameat2 RENAME_EXCHANGE), so there is no instant without a readable target;
elsewhere the old directory is first moved aside to `.<name>.old-<pid>~<host>-<token>`. After a
successful write, the staging and retired siblings of the same target left by killed processes
are removed.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import hashlib
import os
import re
import secrets
import shutil
import socket
import time
from pathlib import Path
from typing import Iterator

DIRECTORY_MODE = 0o755
FILE_MODE = 0o644
_AT_FDCWD = -100
_RENAME_EXCHANGE = 2


def content_hash(path: str | Path) -> str:
    """SHA-256 of a file's bytes: the data version of a raw source."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def directory_hash(path: str | Path, suffixes: tuple[str, ...] = (".safetensors",)) -> str:
    """SHA-256 over the files with the given suffixes (the weights), in name order."""
    digest = hashlib.sha256()
    root = Path(path)
    for file in sorted(p for p in root.rglob("*") if p.is_file() and p.suffix in suffixes):
        digest.update(str(file.relative_to(root)).encode())
        digest.update(content_hash(file).encode())
    return digest.hexdigest()


# Debris names carry their writer as `<pid>~<host>`: a shared OHLORA_HOME (NFS, a volume several pods mount) has
# writers on machines whose pids this one cannot see. (`<pid>` alone: a name from before hosts were recorded.)
_HOST = hashlib.sha256(socket.gethostname().encode()).hexdigest()[:8]
WRITER_PATTERN = r"\d+(?:~[0-9a-f]{8})?"
# Another machine's debris is removed once nobody touched it for this long (no write takes a day between files).
OTHER_HOST_DEBRIS_AGE_S = 24 * 3600


def writer_tag() -> str:
    """This process as debris names carry it."""
    return f"{os.getpid()}~{_HOST}"


def writer_gone(tag: str, path: Path) -> bool:
    """Whether the writer `tag` of `path` can no longer be writing it: a process of this machine that is not
    running; on another machine, only after a day untouched."""
    pid, _, host = tag.partition("~")
    if host and host != _HOST:
        try:
            return time.time() - path.lstat().st_mtime > OTHER_HOST_DEBRIS_AGE_S
        except FileNotFoundError:
            return False
    return int(pid) != os.getpid() and not _pid_alive(int(pid))


def _sibling(target: Path, kind: str) -> Path:
    return target.parent / f".{target.name}.{kind}-{writer_tag()}-{secrets.token_hex(4)}"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, owned by someone else
        return True
    return True


def remove_debris(target: str | Path) -> list[Path]:
    """Remove the staging/retired siblings of `target` whose writing process is gone."""
    target = Path(target)
    pattern = re.compile(rf"^\.{re.escape(target.name)}\.(?:tmp|old)-({WRITER_PATTERN})-[0-9a-f]+$")
    removed = []
    for sibling in target.parent.iterdir() if target.parent.is_dir() else ():
        match = pattern.match(sibling.name)
        if match and writer_gone(match.group(1), sibling):
            _remove(sibling)
            removed.append(sibling)
    return removed


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


def fsync_directory(path: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def seal(staging: Path) -> None:
    """Shared-folder permissions on everything inside `staging`, and its files flushed to disk."""
    for folder, dirs, files in os.walk(staging):
        os.chmod(folder, DIRECTORY_MODE)
        for name in files:
            file = os.path.join(folder, name)
            os.chmod(file, FILE_MODE)
            fd = os.open(file, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)


def exchange(first: Path, second: Path) -> bool:
    """Swap two paths in one atomic step; False where the OS or file system cannot."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        renameat2 = libc.renameat2
    except (OSError, AttributeError):
        return False
    if renameat2(_AT_FDCWD, os.fsencode(first), _AT_FDCWD, os.fsencode(second), _RENAME_EXCHANGE) == 0:
        return True
    code = ctypes.get_errno()
    if code in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):
        return False
    raise OSError(code, os.strerror(code), str(second))


def _publish_directory(staging: Path, target: Path) -> None:
    if not target.exists():
        os.replace(staging, target)
    elif exchange(staging, target):
        _remove(staging)  # now holds the previous version
    else:
        retired = _sibling(target, "old")
        os.replace(target, retired)
        os.replace(staging, target)
        _remove(retired)


@contextlib.contextmanager
def atomic_directory(target: str | Path) -> Iterator[Path]:
    """Yield a staging directory beside `target`; on success it replaces `target` in one step.

    On any exception the staging directory is removed and `target` is left as it was, so a
    crashed or failed run never leaves a half-written model where a reader looks.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = _sibling(target, "tmp")
    staging.mkdir()
    try:
        yield staging
        seal(staging)
        _publish_directory(staging, target)
    except BaseException:
        _remove(staging)
        raise
    fsync_directory(target.parent)
    remove_debris(target)


def publish_files(folder: str | Path, files: dict[str, bytes]) -> Path:
    """`folder` holding exactly `files` (name -> bytes), replacing whatever it held in one step: a report's files are
    one run's, never a failed run's beside the last good one's. Names are plain file names."""
    if nested := [name for name in files if Path(name).name != name or name in ("", ".", "..")]:
        raise ValueError(f"publish_files takes plain file names, not {nested}")
    with atomic_directory(folder) as staging:
        for name, payload in files.items():
            (staging / name).write_bytes(payload)
    return Path(folder)


def atomic_write_bytes(target: str | Path, payload: bytes) -> None:
    """Write a file (mode 0o644) through a staging sibling and one rename."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = _sibling(target, "tmp")
    try:
        fd = os.open(staging, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE)
        with os.fdopen(fd, "wb") as handle:
            os.fchmod(handle.fileno(), FILE_MODE)  # whatever the umask
            handle.write(payload)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(staging, target)
    except BaseException:
        _remove(staging)
        raise
    fsync_directory(target.parent)
    remove_debris(target)
