"""Finding the image files under the paths a user names.

Paths named explicitly are always visited (symlinks to them followed, errors reported).
Inside directories, files count as images by their first bytes, never by their names, so a
renamed JPEG is found. A file whose content is not an image is skipped, unless its name says
image (``x.jpg`` holding garbage or nothing): that is a broken image, passed on so the loader
reports what is wrong with it.
Symbolic links met during a walk are skipped unless ``follow_symlinks``; loops are detected.
Anything that cannot be read becomes a :class:`WalkEntry` with ``error`` set: a walk never
raises for one bad entry.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from hashmatch.formats import IMAGE_EXTENSIONS, SNIFF_BYTES, sniff_image_format

__all__ = ["SkipCount", "WalkEntry", "classify_file", "content_skip", "read_reason", "walk_images"]


@dataclass(frozen=True)
class WalkEntry:
    """A file to process, or a path that could not be processed and why."""

    path: str
    error: str | None = None
    """Why this path cannot be processed; None for a file to hash."""
    skipped: str | None = None
    """Why this path was passed over (not an image, symbolic link); not an error."""
    unread: bool = False
    """Found in a directory by a walk that does not read files (``read_heads=False``): an
    image only if :func:`classify_file` says so where it is hashed."""

    @property
    def is_image(self) -> bool:
        return self.error is None and self.skipped is None


def walk_images(
    paths: Iterable[str | os.PathLike[str]],
    *,
    recursive: bool = False,
    follow_symlinks: bool = False,
    read_heads: bool = True,
) -> Iterator[WalkEntry]:
    """Yield every image file under ``paths`` in a stable (sorted) order, and every problem.

    Without ``recursive`` a directory contributes only the files directly inside it. Without
    ``read_heads`` files in directories are not opened here but yielded ``unread``, for the
    machine that hashes them to classify (a cluster scan: the walker lists, the workers read).
    """
    visited: set[tuple[int, int]] = set()
    for raw in paths:
        path = os.fspath(raw)
        try:
            info = os.stat(path)
        except FileNotFoundError:
            reason = "broken symbolic link" if os.path.islink(path) else "no such file or directory"
            yield WalkEntry(path, reason)
            continue
        except OSError as exc:
            yield WalkEntry(path, read_reason(exc))
            continue
        if stat.S_ISDIR(info.st_mode):
            yield from _walk_directory(path, info, recursive, follow_symlinks, read_heads, visited)
        else:
            yield WalkEntry(path)  # named explicitly: the loader reports what is wrong with it


class SkipCount:
    """Passes on the entries to process, counting the ones a walk skipped."""

    def __init__(self) -> None:
        self.count = 0

    def without_skipped(self, entries: Iterable[WalkEntry]) -> Iterator[WalkEntry]:
        for entry in entries:
            if entry.skipped is None:
                yield entry
            else:
                self.count += 1


def _walk_directory(
    directory: str,
    info: os.stat_result,
    recursive: bool,
    follow_symlinks: bool,
    read_heads: bool,
    visited: set[tuple[int, int]],
) -> Iterator[WalkEntry]:
    key = (info.st_dev, info.st_ino)
    if key in visited:
        yield WalkEntry(directory, "directory already visited (symbolic link loop)")
        return
    visited.add(key)
    try:
        with os.scandir(directory) as scan:
            entries = sorted(scan, key=lambda entry: entry.name)
    except OSError as exc:
        yield WalkEntry(directory, f"cannot list directory: {read_reason(exc)}")
        return
    for entry in entries:
        yield from _walk_entry(entry, recursive, follow_symlinks, read_heads, visited)


def _walk_entry(
    entry: os.DirEntry[str],
    recursive: bool,
    follow_symlinks: bool,
    read_heads: bool,
    visited: set[tuple[int, int]],
) -> Iterator[WalkEntry]:
    try:
        if entry.is_symlink() and not follow_symlinks:
            yield WalkEntry(entry.path, skipped="symbolic link not followed")
            return
        info = entry.stat(follow_symlinks=True)
    except FileNotFoundError:
        yield WalkEntry(entry.path, "broken symbolic link")
        return
    except OSError as exc:
        yield WalkEntry(entry.path, read_reason(exc))
        return
    if stat.S_ISDIR(info.st_mode):
        if recursive:
            yield from _walk_directory(
                entry.path, info, recursive, follow_symlinks, read_heads, visited
            )
        return
    if not stat.S_ISREG(info.st_mode):
        yield WalkEntry(entry.path, "not a regular file")
        return
    yield classify_file(entry.path) if read_heads else WalkEntry(entry.path, unread=True)


def classify_file(path: str) -> WalkEntry:
    """A regular file found in a directory, by its first bytes: an image, skipped, or an
    entry saying why it cannot be read."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
        with os.fdopen(fd, "rb") as file:
            head = file.read(SNIFF_BYTES)
    except OSError as exc:
        return WalkEntry(path, read_reason(exc))
    skipped = content_skip(path, head)
    return WalkEntry(path, skipped=skipped) if skipped else WalkEntry(path)


def content_skip(name: str, head: bytes) -> str | None:
    """Why a file found in a directory is passed over, from its first bytes and name; None
    for an image, or for a file whose name promises one (the loader then says what is wrong
    with it)."""
    if sniff_image_format(head) is not None:
        return None
    if os.path.splitext(name)[1].lower() in IMAGE_EXTENSIONS:
        return None
    return "not an image"


def read_reason(exc: OSError) -> str:
    """An OSError as the short reason an entry carries (``permission denied``)."""
    return exc.strerror.lower() if exc.strerror else str(exc)
