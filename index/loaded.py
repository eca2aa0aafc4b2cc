"""One published version, opened for searching: verified arrays, searchers, entry lookups.

A :class:`LoadedIndex` never changes after it is built, so any number of threads can search it
while a newer version is being loaded next to it. Arrays are memory-mapped read-only, so
several processes opening the same version share one copy in the page cache.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import threading
import weakref
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from hashmatch.errors import IndexIntegrityError
from hashmatch.index.artifact import (
    ENTRY_LOOKUP,
    METADATA,
    Manifest,
    part_problems,
    read_array,
    read_manifest,
)
from hashmatch.index.mih import MihLayout, MultiIndex
from hashmatch.index.search import CodeSearcher, ExactSearcher, FlatSearcher, MultiIndexSearcher

__all__ = ["AlgorithmIndex", "EntryRecord", "LoadedIndex"]

_log = logging.getLogger("hashmatch.index")


@dataclass(frozen=True)
class EntryRecord:
    rowid: int
    list: str
    entry_id: str | None
    label: str | None
    metadata: dict[str, str]


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
        uri = (directory / METADATA).resolve().as_uri() + "?mode=ro&immutable=1"
        try:
            # One connection for the version's lifetime, opened now: its open file keeps the
            # entries readable even after newer builds delete this version's directory.
            self._database = sqlite3.connect(uri, uri=True, check_same_thread=False)
            self._database.execute("SELECT count(*) FROM entries WHERE rowid = 1").fetchone()
        except sqlite3.Error as exc:
            raise IndexIntegrityError(f"{directory / METADATA}: {exc}") from None
        self._database_lock = threading.Lock()
        # Python's sqlite3.Connection sits in a reference cycle with its statement cache, so
        # dropping it leaves the file open until the cycle collector runs (in a long-lived
        # process, possibly much later): close it as soon as this version is unreferenced.
        weakref.finalize(self, self._database.close)
        self._has_entry_lookup = self._lookup_by_entry_exists()

    @property
    def version(self) -> str:
        return self.manifest.version

    def threshold_for(self, algorithm: str, list_name: str) -> int:
        listed = self.list_thresholds.get(list_name, {}).get(algorithm)
        return listed if listed is not None else self.algorithms[algorithm].threshold

    def entries(self, rowids: list[int]) -> dict[int, EntryRecord]:
        """The list entries with these row ids."""
        found: dict[int, EntryRecord] = {}
        for start in range(0, len(rowids), 900):  # SQLite's bound-parameter limit
            batch = rowids[start : start + 900]
            marks = ",".join("?" * len(batch))
            query = (
                "SELECT rowid, list, entry_id, label, metadata FROM entries"
                f" WHERE rowid IN ({marks})"
            )
            for rowid, list_name, entry_id, label, metadata in self._query(query, batch):
                found[rowid] = EntryRecord(
                    rowid, list_name, entry_id, label, json.loads(metadata) if metadata else {}
                )
        return found

    def rows_of_entry(self, algorithm: str, list_name: str, entry_id: str) -> list[int] | None:
        """The entry rows of ``algorithm`` for one list entry; None when this version has no
        lookup by entry (built with one perceptual algorithm, or by an older hashmatch)."""
        if not self._has_entry_lookup:
            return None
        query = "SELECT rowid FROM entries WHERE entry_id = ? AND list = ? AND algorithm = ?"
        return [row for (row,) in self._query(query, [entry_id, list_name, algorithm])]

    def _lookup_by_entry_exists(self) -> bool:
        query = "SELECT 1 FROM sqlite_master WHERE type = 'index' AND name = ?"
        return bool(self._query(query, [ENTRY_LOOKUP]))

    def _query(self, query: str, parameters: list[Any]) -> list[tuple[Any, ...]]:
        """Rows of one query; the connection is shared, so threads take turns (a lookup's
        queries take microseconds)."""
        try:
            with self._database_lock:
                return self._database.execute(query, parameters).fetchall()
        except sqlite3.Error as exc:
            raise IndexIntegrityError(f"{self.directory / METADATA}: {exc}") from None


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
