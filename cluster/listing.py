"""The files a cluster scan hashes, listed on the driver and shipped to the actors as rows.

The driver only lists: local directories through the local scan's walk (same order, symbolic
link and loop rules, unreadable paths as entries) but without opening files, and URLs through
pyarrow. Reading a file's first bytes to tell an image from something else is left to the
actor that hashes it, which reads the file anyway: on a shared volume or an object store the
driver reading every file's head would be the scan's bottleneck.
"""

from __future__ import annotations

import os
from collections.abc import Collection, Iterable
from dataclasses import dataclass, field
from typing import Any

from hashmatch.cluster.remote import RemoteFile, is_url, list_url
from hashmatch.walking import walk_images

__all__ = ["ScanListing", "list_sources"]


@dataclass
class ScanListing:
    """What a scan will hash: one row per file for the actors, and what listing passed over."""

    rows: list[dict[str, Any]] = field(default_factory=list)
    skipped: int = 0
    """Entries passed over while listing (symbolic links not followed)."""
    resumed: int = 0
    """Files left out because an earlier run's output already has them."""


def list_sources(
    sources: Iterable[str | os.PathLike[str]],
    *,
    recursive: bool = False,
    follow_symlinks: bool = False,
    done: Collection[str] = (),
) -> ScanListing:
    """List every file under ``sources`` (paths or URLs) as rows, leaving out ``done``."""
    listing = ScanListing()
    local: list[str] = []

    def add(row: dict[str, Any]) -> None:
        if row["path"] in done:
            listing.resumed += 1
        else:
            listing.rows.append(row)

    def flush_local() -> None:
        for entry in walk_images(
            local, recursive=recursive, follow_symlinks=follow_symlinks, read_heads=False
        ):
            if entry.skipped is not None:
                listing.skipped += 1
            else:
                add(_row(entry.path, error=entry.error, unread=entry.unread))
        local.clear()

    for source in sources:
        name = os.fspath(source)
        if not is_url(name):
            local.append(name)
            continue
        flush_local()
        for found in list_url(name, recursive):
            if isinstance(found, RemoteFile):
                add(
                    _row(
                        found.url,
                        unread=found.in_directory,
                        root=found.root,
                        fs_path=found.path,
                        size=found.size,
                    )
                )
            else:
                add(_row(found[0], error=found[1]))
    flush_local()
    return listing


def _row(
    path: str,
    *,
    error: str | None = None,
    unread: bool = False,
    root: str | None = None,
    fs_path: str | None = None,
    size: int | None = None,
) -> dict[str, Any]:
    """One file for an actor: a local path (``unread`` when found in a directory, so its
    content decides whether it is an image), or a URL (``root``, ``fs_path``, ``size``)."""
    return {
        "path": path,
        "error": error,
        "unread": unread,
        "root": root,
        "fs_path": fs_path,
        "size": size,
    }
