"""One published version, opened for searching: verified arrays, searchers, entry lookups.

A :class:`LoadedIndex` never changes after it is built, so any number of threads can search it
while a newer version is being loaded next to it. Arrays are memory-mapped read-only, so
several processes opening the same version share one copy in the page cache.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from hashmatch.errors import IndexIntegrityError
from hashmatch.index.artifact import (
    METADATA,
    Manifest,
    part_problems,
    read_array,
    read_manifest,
)
from hashmatch.index.entry_store import EntryRecord, EntryStore
from hashmatch.index.mih import MihLayout, MultiIndex
from hashmatch.index.search import CodeSearcher, ExactSearcher, FlatSearcher, MultiIndexSearcher

__all__ = ["AlgorithmIndex", "EntryRecord", "LoadedIndex"]

_log = logging.getLogger("hashmatch.index")


@dataclass(frozen=True)
class AlgorithmIndex:
    """Everything searchable for one algorithm."""

    name: str
    codes: np.ndarray
    entry_offsets: np.ndarray
    entry_rows: np.ndarray
    searcher: CodeSearcher
    threshold: int
    design_radius: int
    _inverse_lock: threading.Lock = field(
        default_factory=threading.Lock, init=False, repr=False, compare=False
    )
    _inverse: tuple[np.ndarray, np.ndarray] | None = field(
        default=None, init=False, repr=False, compare=False
    )

    def entries_of(self, code_rows: np.ndarray) -> list[np.ndarray]:
        return [
            self.entry_rows[self.entry_offsets[row] : self.entry_offsets[row + 1]]
            for row in code_rows.tolist()
        ]

    def codes_of_entries(self, rowids: list[int]) -> np.ndarray:
        """The stored codes of these entry rows (rows of this algorithm only)."""
        sorted_rows, code_rows = self._rows_sorted()
        positions = np.searchsorted(sorted_rows, rowids)
        positions = np.minimum(positions, len(sorted_rows) - 1)
        found = sorted_rows[positions] == np.asarray(rowids, dtype=np.int64)
        return self.codes[code_rows[positions[found]]]

    def _rows_sorted(self) -> tuple[np.ndarray, np.ndarray]:
        """Entry rows in ascending order, and the code row of each: the inverse of the CSR.

        Built on first use (a sort of every entry row: seconds at 10M), once, however many
        threads ask for it together."""
        if self._inverse is None:
            with self._inverse_lock:
                if self._inverse is None:
                    owners = np.repeat(np.arange(len(self.codes)), np.diff(self.entry_offsets))
                    order = np.argsort(self.entry_rows, kind="stable")
                    inverse = (self.entry_rows[order].astype(np.int64), owners[order])
                    object.__setattr__(self, "_inverse", inverse)  # frozen: set once, here
        assert self._inverse is not None
        return self._inverse


class LoadedIndex:
    """A verified, searchable version of an index."""

    def __init__(self, directory: Path, *, verify: bool = True) -> None:
        self.manifest: Manifest = read_manifest(directory)
        self.directory = directory
        if verify:
            problems = part_problems(self.manifest)
            if problems:
                raise IndexIntegrityError(f"{directory}: " + "; ".join(problems))
        self.algorithms = {
            name: _load_algorithm(self.manifest, name, data)
            for name, data in self.manifest.algorithms.items()
        }
        self.list_thresholds: dict[str, dict[str, int]] = {
            item["name"]: {k: int(v) for k, v in item.get("thresholds", {}).items()}
            for item in self.manifest.data["lists"]
        }
        self.store = EntryStore(directory / METADATA)

    @property
    def version(self) -> str:
        return self.manifest.version

    def threshold_for(self, algorithm: str, list_name: str) -> int:
        listed = self.list_thresholds.get(list_name, {}).get(algorithm)
        return listed if listed is not None else self.algorithms[algorithm].threshold

    def entries(self, rowids: list[int]) -> dict[int, EntryRecord]:
        """The list entries with these row ids."""
        return self.store.entries(rowids)

    def rows_of_entry(self, algorithm: str, list_name: str, entry_id: str) -> list[int] | None:
        """The entry rows of ``algorithm`` for one list entry (None: no lookup by entry)."""
        return self.store.rows_of_entry(algorithm, list_name, entry_id)


def _load_algorithm(manifest: Manifest, name: str, data: dict[str, Any]) -> AlgorithmIndex:
    codes = read_array(manifest, f"{name}.codes")
    offsets = read_array(manifest, f"{name}.entry_offsets")
    rows = read_array(manifest, f"{name}.entry_rows")
    if len(offsets) != len(codes) + 1 or (len(offsets) and offsets[-1] != len(rows)):
        raise IndexIntegrityError(f"{manifest.directory}: {name} entry tables do not fit its codes")
    search = data["search"]
    kind = manifest.searched_by(name)
    if kind != search["kind"]:
        _log.warning(
            "%s: %s's %s tables are in format %s, which this version no longer reads;"
            " searching it with the (exact, slower) %s scan until the index is rebuilt",
            manifest.directory,
            name,
            search["kind"],
            manifest.data["format_version"],
            kind,
        )
    searcher: CodeSearcher
    if kind == "exact":
        searcher = ExactSearcher(codes, read_array(manifest, f"{name}.keys"))
    elif kind == "mih":
        layout = MihLayout.from_json(int(data["bits"]), search)
        try:
            tables = MultiIndex(
                codes,
                layout,
                read_array(manifest, f"{name}.mih_buckets"),
                read_array(manifest, f"{name}.mih_starts"),
                read_array(manifest, f"{name}.mih_ids"),
            )
        except ValueError as exc:
            raise IndexIntegrityError(f"{manifest.directory}: {name}: {exc}") from None
        searcher = MultiIndexSearcher(tables)
    elif kind == "flat":
        searcher = FlatSearcher(codes)
    else:
        raise IndexIntegrityError(f"{manifest.path}: unknown search kind {kind!r}")
    return AlgorithmIndex(
        name,
        codes,
        offsets,
        rows,
        searcher,
        int(data["threshold"]),
        int(data.get("design_radius", data["threshold"])),
    )
