"""Scans beyond one machine: the local scan's records, computed on a Ray cluster (Ray Data).

``scan(sources, index, options)`` lists the files on the driver, pins the index version, and
returns a lazy Ray Dataset of records (one per file: the scan's CSV record, ``matches`` as
JSON text) computed by one actor per node, each holding a ``Matcher`` on that version and a
hashing process per CPU. Iterate
it, write it, or take it further in a pipeline of your own. Needs the ``ray`` extra.
"""

from __future__ import annotations

import os
from collections.abc import Collection, Iterable
from pathlib import Path
from typing import TYPE_CHECKING

from hashmatch.cluster.actor import SKIPPED
from hashmatch.cluster.listing import ScanListing, list_sources
from hashmatch.cluster.pinning import IndexPin, pin_index
from hashmatch.cluster.pipeline import (
    DEFAULT_BATCH_SIZE,
    INSTALL_HINT,
    cluster_failure,
    connect,
    default_sizing,
    records_dataset,
)
from hashmatch.index.options import MatchOptions

if TYPE_CHECKING:
    import ray.data

__all__ = [
    "DEFAULT_BATCH_SIZE",
    "INSTALL_HINT",
    "SKIPPED",
    "IndexPin",
    "ScanListing",
    "cluster_failure",
    "connect",
    "default_sizing",
    "list_sources",
    "pin_index",
    "records_dataset",
    "scan",
]


def scan(
    sources: Iterable[str | os.PathLike[str]],
    index: str | Path,
    options: MatchOptions | None = None,
    *,
    recursive: bool = False,
    follow_symlinks: bool = False,
    with_hashes: bool = False,
    actors: int | None = None,
    cpus_per_actor: int | None = None,
    batch_size: int = DEFAULT_BATCH_SIZE,
    skip_paths: Collection[str] = (),
) -> ray.data.Dataset:
    """Records of every image under ``sources`` (local paths every node can read, or URLs
    such as ``s3://bucket/prefix``) matched against ``index``, as a Ray Dataset.

    Connects to the cluster first (``RAY_ADDRESS``, else a local Ray). Listing and the version
    pin happen now; the hashing when the dataset is consumed. ``skip_paths`` leaves out
    files an earlier run recorded. Rows hold ``path``, ``status``, ``matches`` (JSON text),
    ``error``, and with ``with_hashes`` a column per algorithm and ``pdq_quality``.
    """
    if isinstance(sources, (str, os.PathLike)):
        sources = [sources]  # one path or URL, not its characters
    chosen = options if options is not None else MatchOptions()
    pin = pin_index(index)
    connect()
    listing = list_sources(
        sources, recursive=recursive, follow_symlinks=follow_symlinks, done=skip_paths
    )
    return records_dataset(
        listing,
        pin,
        chosen,
        actors=actors,
        cpus_per_actor=cpus_per_actor,
        batch_size=batch_size,
        with_hashes=with_hashes,
    )
