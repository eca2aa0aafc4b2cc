"""Looking at an index without searching it: what it holds, and whether it is intact."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from hashmatch.errors import HashmatchError
from hashmatch.index.artifact import (
    METADATA,
    VERSIONS,
    current_version,
    part_problems,
    read_array,
    read_manifest,
    resolve_version,
)
from hashmatch.index.entry_store import store_problems

__all__ = ["index_info", "verify_index"]


def index_info(path: str | Path) -> dict[str, Any]:
    """The published version's manifest summary, plus the versions on disk."""
    path = Path(path)
    directory = resolve_version(path)
    manifest = read_manifest(directory)
    data = manifest.data
    size = sum(entry["bytes"] for entry in manifest.files.values())
    versions = []
    if (path / VERSIONS).is_dir():
        versions = sorted(p.name for p in (path / VERSIONS).iterdir() if not p.name.startswith("."))
    return {
        "path": str(path),
        "version": data["version"],
        "published": current_version(path) if directory != path else data["version"],
        "format_version": data["format_version"],
        "tool_version": data.get("tool_version"),
        "created": data.get("created"),
        "entries": data.get("entries"),
        "bytes": size,
        "algorithms": {
            name: {**summary, "searched_by": manifest.searched_by(name)}
            for name, summary in data["algorithms"].items()
        },
        "lists": data["lists"],
        "versions_on_disk": versions,
    }


def verify_index(path: str | Path) -> list[str]:
    """Every problem found in the published version (empty when intact); never raises for
    a damaged index, only reports. Checks checksums, sizes, the SQLite file and structure."""
    try:
        directory = resolve_version(Path(path))
        manifest = read_manifest(directory)
    except HashmatchError as exc:
        return [str(exc)]
    problems = part_problems(manifest)
    if problems:
        return problems
    problems.extend(store_problems(directory / METADATA))
    for algorithm, data in manifest.algorithms.items():
        try:
            problems.extend(_check_algorithm(manifest, algorithm, data))
        except HashmatchError as exc:
            problems.append(f"{algorithm}: {exc}")
    return problems


def _check_algorithm(manifest: Any, algorithm: str, data: dict[str, Any]) -> list[str]:
    problems = []
    codes = read_array(manifest, f"{algorithm}.codes")
    keys = read_array(manifest, f"{algorithm}.keys")
    offsets = read_array(manifest, f"{algorithm}.entry_offsets")
    rows = read_array(manifest, f"{algorithm}.entry_rows")
    if len(codes) != data["codes"] or len(keys) != len(codes):
        problems.append(f"{algorithm}.codes: {len(codes)} codes, manifest says {data['codes']}")
    if len(keys) > 1 and bool(np.any(keys[1:] < keys[:-1])):
        problems.append(f"{algorithm}.keys: not in ascending order")
    if (
        len(offsets) != len(codes) + 1
        or offsets[-1] != len(rows)
        or bool(np.any(np.diff(offsets) < 1))
    ):
        problems.append(f"{algorithm}.entry_offsets: inconsistent with its codes and rows")
    if manifest.searched_by(algorithm) == "mih":
        problems += _check_multi_index(manifest, algorithm, len(codes), data["search"])
    return problems


def _check_multi_index(
    manifest: Any, algorithm: str, codes: int, search: dict[str, Any]
) -> list[str]:
    """The tables' shapes and counts agree with each other, so no search reads out of bounds."""
    buckets = read_array(manifest, f"{algorithm}.mih_buckets")
    starts = read_array(manifest, f"{algorithm}.mih_starts")
    ids = read_array(manifest, f"{algorithm}.mih_ids")
    problems = []
    substrings = len(search["substrings"])
    if len(ids) != codes * substrings or (len(ids) and int(ids.max()) >= codes):
        problems.append(f"{algorithm}.mih_ids: refers to codes that do not exist")
    if buckets.ndim != 2 or buckets.shape[1] != 2:
        return [*problems, f"{algorithm}.mih_buckets: not pairs of bitmap word and rank"]
    occupied = np.bitwise_count(buckets[:, 0]).astype(np.uint64)
    ranks = np.concatenate([[0], np.cumsum(occupied)]).astype(np.uint64)
    if not np.array_equal(ranks[:-1], buckets[:, 1]):
        problems.append(f"{algorithm}.mih_buckets: ranks disagree with the bitmap")
    if (
        len(starts) != int(ranks[-1]) + 1
        or (len(starts) and int(starts[-1]) != len(ids))
        or bool(np.any(np.diff(starts.astype(np.int64)) < 1))
    ):
        problems.append(f"{algorithm}.mih_starts: inconsistent with the bitmap and ids")
    return problems
