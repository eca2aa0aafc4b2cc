"""Publishing versions atomically, so readers always see a complete index.

A build writes a new version into ``versions/.tmp-<name>``, renames it into place, then
replaces ``CURRENT`` by rename. Renames are atomic, so a reader (or a build killed at any
moment) sees the old version or the new one, never a mix; the old version stays on disk, and
readers that already opened it keep working. One build at a time holds ``.lock``.
"""

from __future__ import annotations

import errno
import fcntl
import os
import secrets
import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path

from hashmatch.errors import IndexBuildError
from hashmatch.index.artifact import (
    BANKS,
    CURRENT,
    VERSIONS,
    current_version,
    fsync_directory,
    naming_write_errors,
    write_synced_text,
)

__all__ = [
    "build_lock",
    "new_version_name",
    "prepare_index_directory",
    "publish_version",
    "remove_old_versions",
    "staging_directory",
]

_STAGING_PREFIX = ".tmp-"
_LOCK = ".lock"


def new_version_name() -> str:
    """Sortable by time, unique across concurrent machines: ``20261129T181500Z-3f2a1c``."""
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S%fZ")
    return f"{stamp}-{secrets.token_hex(3)}"


def prepare_index_directory(index: Path) -> None:
    """Create ``index`` (owner-only), or check that an existing directory is an index."""
    if index.exists() and not index.is_dir():
        raise IndexBuildError(f"{index}: exists and is not a directory")
    if index.is_dir():
        entries = {p.name for p in index.iterdir()}
        if entries and not entries <= {CURRENT, VERSIONS, _LOCK, CURRENT + ".tmp", BANKS}:
            raise IndexBuildError(
                f"{index}: not a hashmatch index directory (it holds other files); "
                "refusing to write into it"
            )
    (index / VERSIONS).mkdir(parents=True, exist_ok=True)
    os.chmod(index, 0o700)
    os.chmod(index / VERSIONS, 0o700)


@contextmanager
def build_lock(index: Path, on_wait: Callable[[], None] | None = None) -> Iterator[None]:
    """Hold the index's build lock; waits (after calling ``on_wait``) if another build has it.

    A POSIX record lock belongs to this process alone: a forked helper does not inherit it,
    and the kernel releases it the moment this process dies, however it dies.
    """
    descriptor = os.open(index / _LOCK, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        try:
            fcntl.lockf(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            if exc.errno not in (errno.EAGAIN, errno.EACCES):
                raise
            if on_wait is not None:
                on_wait()
            fcntl.lockf(descriptor, fcntl.LOCK_EX)
        yield
    finally:
        os.close(descriptor)  # closing releases the lock


def staging_directory(index: Path, name: str) -> Path:
    """A fresh private directory for a version being built (under the lock)."""
    for stale in (index / VERSIONS).glob(_STAGING_PREFIX + "*"):
        shutil.rmtree(stale, ignore_errors=True)  # left by a killed build
    path = index / VERSIONS / f"{_STAGING_PREFIX}{name}"
    with naming_write_errors(path):
        path.mkdir(mode=0o700)
    return path


def publish_version(index: Path, staging: Path, name: str) -> Path:
    """Move a finished staging directory into place and point ``CURRENT`` at it.

    If that fails before ``CURRENT`` is replaced (a full disk), the new version is removed
    again, so a failed build leaves nothing behind; the caller removes the staging directory.
    """
    final = index / VERSIONS / name
    try:
        fsync_directory(staging)
        os.rename(staging, final)
        fsync_directory(index / VERSIONS)
        _point_current_at(index, name)
    except OSError as exc:
        shutil.rmtree(final, ignore_errors=True)
        raise IndexBuildError(f"{index}: publishing version {name} failed ({exc})") from exc
    fsync_directory(index)
    return final


def _point_current_at(index: Path, name: str) -> None:
    """Replace ``CURRENT`` by rename: readers see the old name or the new one, never a part."""
    pointer = index / (CURRENT + ".tmp")
    try:
        write_synced_text(pointer, name + "\n")
        os.replace(pointer, index / CURRENT)
    except OSError:
        pointer.unlink(missing_ok=True)
        raise


def remove_old_versions(index: Path, keep: int) -> list[str]:
    """Delete all but the published version and the ``keep - 1`` before it; returns names."""
    published = current_version(index)
    versions = sorted(
        p.name
        for p in (index / VERSIONS).iterdir()
        if p.is_dir() and not p.name.startswith(_STAGING_PREFIX)
    )
    if published in versions:
        position = versions.index(published)
        retained = set(versions[max(0, position - keep + 1) : position + 1])
    else:
        retained = set(versions[-keep:])
    removed = [name for name in versions if name not in retained]
    for name in removed:
        shutil.rmtree(index / VERSIONS / name, ignore_errors=True)
    return removed
