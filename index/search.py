"""Exact Hamming range search over one algorithm's codes, by the fastest structure that fits.

* ``flat``: faiss's SIMD Hamming scan over the codes in place (small sets, any radius);
* ``mih``: multi-index hashing (:mod:`hashmatch.index.mih`), exact up to its design radius,
  falling back to the flat scan for a larger per-call radius;
* ``exact``: binary search on row keys, for md5/sha256 (radius 0).

Every searcher returns all codes within the radius: there is no approximate mode.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, Protocol

import faiss
import numpy as np

from hashmatch.errors import IndexBuildError
from hashmatch.index.artifact import ArrayWriter, row_keys
from hashmatch.index.mih import MultiIndex, choose_layout
from hashmatch.registry import Algorithm

__all__ = [
    "SEARCH_CHOICES",
    "CodeSearcher",
    "ExactSearcher",
    "FlatSearcher",
    "MultiIndexSearcher",
    "SearchHits",
    "single_threaded_searches",
    "write_search_tables",
]

SEARCH_CHOICES = ("auto", "flat", "mih")
"""What a build may be told: choose by size (``auto``), or one structure for every
perceptual algorithm."""

SearchHits = tuple[np.ndarray, np.ndarray, np.ndarray]
"""Parallel arrays: query row, code number, distance."""

_EMPTY = np.empty(0, dtype=np.int64)
_hamming_range_search: Callable[..., None] = faiss.__dict__["hamming_range_search"]
"""faiss's exact Hamming range scan over raw codes (missing from faiss's type stubs)."""


class CodeSearcher(Protocol):
    kind: str

    def search(self, queries: np.ndarray, radius: int) -> SearchHits: ...


@contextmanager
def single_threaded_searches() -> Iterator[None]:
    """Flat scans from this thread use one core while inside.

    faiss spreads a scan of several queries over OpenMP threads: on an idle machine that
    halves a lookup's latency, but while worker processes hash on every core (a scan), the
    extra threads only take cores from them, and their spin-waiting made an evaluation run
    1.5-2x slower. OpenMP's thread count is per calling thread, so other threads keep theirs.
    """
    previous = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)
    try:
        yield
    finally:
        faiss.omp_set_num_threads(previous)


class FlatSearcher:
    """Compares every query with every code (faiss, no copy of the codes)."""

    kind = "flat"

    def __init__(self, codes: np.ndarray) -> None:
        self.codes = np.ascontiguousarray(codes)

    def search(self, queries: np.ndarray, radius: int) -> SearchHits:
        queries = np.ascontiguousarray(queries, dtype=np.uint8)
        if len(self.codes) == 0 or len(queries) == 0:
            return _EMPTY, _EMPTY, _EMPTY
        result = faiss.RangeSearchResult(len(queries))
        _hamming_range_search(  # distance < radius + 1, i.e. <= radius
            faiss.swig_ptr(queries),
            faiss.swig_ptr(self.codes),
            len(queries),
            len(self.codes),
            radius + 1,
            self.codes.shape[1],
            result,
        )
        limits = faiss.rev_swig_ptr(result.lims, len(queries) + 1).copy().astype(np.int64)
        found = int(limits[-1])
        if found == 0:
            return _EMPTY, _EMPTY, _EMPTY
        rows = faiss.rev_swig_ptr(result.labels, found).copy().astype(np.int64)
        distances = faiss.rev_swig_ptr(result.distances, found).copy().astype(np.int64)
        owners = np.repeat(np.arange(len(queries)), np.diff(limits))
        return owners, rows, distances


class MultiIndexSearcher:
    """Multi-index hashing within its design radius, the flat scan beyond it."""

    kind = "mih"

    def __init__(self, index: MultiIndex) -> None:
        self.index = index
        self._flat = FlatSearcher(index.codes)

    def search(self, queries: np.ndarray, radius: int) -> SearchHits:
        if radius > self.index.layout.radius:
            return self._flat.search(queries, radius)
        return self.index.search(np.ascontiguousarray(queries, dtype=np.uint8), radius)


class ExactSearcher:
    """Identical codes only, by binary search on the sorted row keys."""

    kind = "exact"

    def __init__(self, codes: np.ndarray, keys: np.ndarray) -> None:
        self.codes = codes
        self.keys = keys

    def search(self, queries: np.ndarray, radius: int) -> SearchHits:
        queries = np.ascontiguousarray(queries, dtype=np.uint8)
        if len(self.codes) == 0 or len(queries) == 0:
            return _EMPTY, _EMPTY, _EMPTY
        query_keys = row_keys(queries)
        lows = np.searchsorted(self.keys, query_keys, side="left")
        highs = np.searchsorted(self.keys, query_keys, side="right")
        owners, rows = [], []
        for query, (low, high) in enumerate(zip(lows.tolist(), highs.tolist(), strict=True)):
            for row in range(low, high):  # equal keys: almost always one row
                if np.array_equal(self.codes[row], queries[query]):
                    owners.append(query)
                    rows.append(row)
        if not rows:
            return _EMPTY, _EMPTY, _EMPTY
        return (
            np.array(owners, dtype=np.int64),
            np.array(rows, dtype=np.int64),
            np.zeros(len(rows), dtype=np.int64),
        )


def write_search_tables(
    algorithm: Algorithm, codes: np.ndarray, design_radius: int, choice: str, writer: ArrayWriter
) -> dict[str, Any]:
    """Choose what searches ``algorithm``'s (unique, sorted) codes, write its tables, and
    return the manifest's ``search`` entry for it.

    Exact hashes are searched by key; perceptual ones by multi-index hashing where its cost
    model beats the flat scan at ``design_radius`` (or always, with ``choice`` ``mih``), else
    by the flat scan, which needs no tables.
    """
    if choice not in SEARCH_CHOICES:
        raise IndexBuildError(f"unknown search structure {choice!r} ({', '.join(SEARCH_CHOICES)})")
    if not algorithm.needs_pixels:
        return {"kind": ExactSearcher.kind}
    layout = None
    if choice != FlatSearcher.kind:
        layout = choose_layout(
            len(codes), algorithm.bits, design_radius, force=choice == MultiIndexSearcher.kind
        )
    if layout is None:
        return {"kind": FlatSearcher.kind}
    tables = MultiIndex.build(codes, layout)
    writer.write(f"{algorithm.name}.mih_buckets", tables.buckets)
    writer.write(f"{algorithm.name}.mih_starts", tables.starts)
    writer.write(f"{algorithm.name}.mih_ids", tables.ids)
    return {"kind": MultiIndexSearcher.kind, "radius": layout.radius, **layout.to_json()}
