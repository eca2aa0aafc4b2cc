"""The overlay: a bank directory's state against one published version, searched exactly.

For a version built through record ``T`` of a bank (the manifest's ``bank.through``), a
content is *published* when it was enabled in the log read through ``T`` at the build's time,
and *current* when it is enabled now. Current but not published: its codes are in the overlay
and searched (faiss's exact scan, the same thresholds as the bank's published entries).
Published but no longer current (disabled, deleted, its bank dropped): its published matches
are hidden. Active exclusions hide matches of any list, by entry or stored hash. A rebuild
that folds the records makes a new version, and the overlay for it starts empty of them.

Readers never lock: every change is stamped with a generation, rows are only appended (a
row's ``added``/``dead`` generations say when it counts), and hidden sets are tuples of
generation intervals replaced whole. A :class:`View` is one generation: a lookup taken
while records are being applied sees all of a batch or none of it.
"""

from __future__ import annotations

import heapq
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from hashmatch.banks.directory import BankDirectory, Change
from hashmatch.banks.state import BankEntry, BankState, ExclusionKey, enabled_value
from hashmatch.errors import HashmatchError
from hashmatch.index.artifact import checked_index_path, read_manifest, resolve_version
from hashmatch.index.loaded import LoadedIndex
from hashmatch.index.results import Match
from hashmatch.index.search import FlatSearcher, SearchHits
from hashmatch.index.verdict import Query, nearest_hits, query_rows
from hashmatch.registry import get_algorithm

__all__ = ["Overlay", "View", "folded_lists", "folded_through"]

_OPEN = 1 << 62
_INITIAL_ROWS = 1024

Intervals = tuple[tuple[int, int], ...]
"""Generation intervals ``[from, to)`` in which something holds."""


def folded_through(snapshot: LoadedIndex) -> dict[str, tuple[int, float]]:
    """Per bank what the version folded in: ``(last record read, time it was read at)``."""
    return _folded(snapshot.manifest.data)


def folded_lists(index: Path) -> dict[str, tuple[int, float]]:
    """:func:`folded_through` of the version published at ``index`` (empty if none)."""
    try:
        manifest = read_manifest(resolve_version(checked_index_path(index)))
    except HashmatchError:
        return {}
    return _folded(manifest.data)


def _folded(data: dict[str, Any]) -> dict[str, tuple[int, float]]:
    folded = {}
    for item in data.get("lists", []):
        bank = item.get("bank")
        if isinstance(bank, dict):
            folded[str(item["name"])] = (int(bank.get("through", 0)), float(bank.get("at", 0.0)))
    return folded


@dataclass
class _Table:
    """One algorithm's added codes: rows appended in place, past what any view reads."""

    codes: np.ndarray
    added: np.ndarray
    dead: np.ndarray
    owners: list[tuple[str, int]]
    rows: int = 0
    banks: tuple[str, ...] = ()
    """The banks with rows here (replaced whole, so a reader can iterate it)."""


class Overlay:
    """The banks of ``directory`` against ``snapshot``; changes applied by one thread at a
    time (the follower's lock), views taken by any number."""

    def __init__(
        self, snapshot: LoadedIndex, directory: BankDirectory, now: float | None = None
    ) -> None:
        self.version = snapshot.version
        self.directory = directory
        self.folded = folded_through(snapshot)
        self.generation = 0
        self._tables: dict[str, _Table] = {}
        self._live_rows: dict[tuple[str, int], list[tuple[str, int]]] = {}
        self._hidden: dict[tuple[str, str], Intervals] = {}
        self._excluded: dict[ExclusionKey, Intervals] = {}
        self._pending: list[tuple[int, str, int]] = []
        now = time.time() if now is None else now
        for state in directory.banks.values():
            for entry in state.entries.values():
                self._entry(state, entry, now, 1)
            for key in state.exclusions:
                self._exclusion(key, 1)
        self.generation = 1

    # -- applying changes (the follower's thread, under its lock) ----------------------------

    def apply(self, changes: list[Change], now: float | None = None) -> None:
        now = time.time() if now is None else now
        generation = self.generation + 1
        for bank, kind, what in changes:
            state = self.directory.banks[bank]
            if kind == "entry":
                self._entry(state, state.entries[what], now, generation)
            elif kind == "exclusion":
                self._exclusion(what, generation)
            else:  # the bank itself: its ratio (read live) or its existence (entries follow)
                continue
        self.generation = generation

    def due(self, now: float | None = None) -> bool:
        """Whether a content's ``disable_until_ts`` has come and waits to be applied."""
        try:  # read without the lock: the heap may empty under us
            return self._pending[0][0] <= (time.time() if now is None else now)
        except IndexError:
            return False

    def apply_due(self, now: float | None = None) -> bool:
        """Re-decide contents whose ``disable_until_ts`` has come; True if any had."""
        now = time.time() if now is None else now
        due = []
        while self._pending and self._pending[0][0] <= now:
            _, bank, content = heapq.heappop(self._pending)
            due.append((bank, "entry", content))
        if due:
            self.apply(due, now)
        return bool(due)

    def _entry(self, state: BankState, entry: BankEntry, now: float, generation: int) -> None:
        through, built_at = self.folded.get(state.name, (0, 0.0))
        published = entry.enabled_through(through, built_at)
        current = state.exists and enabled_value(entry.disable_until_ts, now)
        key = (state.name, entry.id)
        if current and not published:
            if key not in self._live_rows:
                self._live_rows[key] = [
                    (algorithm, self._append(algorithm, bytes.fromhex(value), key, generation))
                    for algorithm, value in entry.signals.items()
                ]
        else:
            for algorithm, row in self._live_rows.pop(key, ()):
                self._tables[algorithm].dead[row] = generation
        _set(self._hidden, (state.name, str(entry.id)), published and not current, generation)
        if entry.disable_until_ts > now and not entry.deleted:
            heapq.heappush(self._pending, (entry.disable_until_ts, state.name, entry.id))

    def _exclusion(self, key: ExclusionKey, generation: int) -> None:
        active = any(
            state.exclusions.get(key, [(0, False)])[-1][1]
            for state in self.directory.banks.values()
        )
        _set(self._excluded, key, active, generation)

    def _append(self, algorithm: str, code: bytes, owner: tuple[str, int], generation: int) -> int:
        table = self._tables.get(algorithm)
        if table is None or table.rows == len(table.codes):
            table = _grown(table, len(code))
            self._tables[algorithm] = table
        row = table.rows
        table.codes[row] = np.frombuffer(code, dtype=np.uint8)
        table.added[row] = generation
        table.dead[row] = _OPEN
        table.owners.append(owner)
        if owner[0] not in table.banks:
            table.banks = (*table.banks, owner[0])
        table.rows = row + 1
        return row

    # -- reading -----------------------------------------------------------------------------

    def view(self) -> View:
        generation = self.generation
        tables = {name: (table, table.rows) for name, table in self._tables.items()}
        return View(self, generation, tables)

    def size(self) -> int:
        """Contents in the overlay now (added since the build and matching)."""
        return len(self._live_rows)

    def hidden_count(self) -> int:
        return sum(
            1 for intervals in self._hidden.values() if intervals and intervals[-1][1] == _OPEN
        )


class View:
    """The overlay at one generation: what :class:`~hashmatch.index.overlay.OverlayView`
    promises the verdict."""

    def __init__(
        self, overlay: Overlay, generation: int, tables: dict[str, tuple[_Table, int]]
    ) -> None:
        self.overlay = overlay
        self.generation = generation
        self.tables = tables

    def search(
        self,
        snapshot: LoadedIndex,
        queries: Mapping[str, list[Query]],
        thresholds: Mapping[str, int],
    ) -> list[Match]:
        matches: list[Match] = []
        for algorithm, items in queries.items():
            held = self.tables.get(algorithm)
            if held is None or not held[1] or not items:
                continue
            table, rows = held
            override = thresholds.get(algorithm)
            owners = table.owners
            limits = {bank: _limit(snapshot, algorithm, bank, override) for bank in table.banks}
            hits = _scan(table.codes[:rows], query_rows(items), max(limits.values()))
            for row, (distance, query) in nearest_hits(items, hits).items():
                if not table.added[row] <= self.generation < table.dead[row]:
                    continue
                bank, content = owners[row]
                if distance > limits[bank]:
                    continue
                entry = self.overlay.directory.banks[bank].entries[content]
                matches.append(
                    Match(
                        algorithm,
                        distance,
                        table.codes[row].tobytes().hex(),
                        bank,
                        str(content),
                        entry.note,
                        items[query][0],
                        entry.match_metadata(),
                    )
                )
        return matches

    def hides(self, match: Match) -> bool:
        generation = self.generation
        if match.entry_id is not None:
            if _holds(self.overlay._hidden.get((match.list, match.entry_id)), generation):
                return True
            if _holds(
                self.overlay._excluded.get(("entry", match.list, match.entry_id)), generation
            ):
                return True
        return _holds(self.overlay._excluded.get(("hash", match.algorithm, match.hash)), generation)

    def codes_of_entry(self, list_name: str, entry_id: str, algorithm: str) -> np.ndarray | None:
        state = self.overlay.directory.banks.get(list_name)
        if state is None or not entry_id.isdigit():
            return None
        entry = state.entries.get(int(entry_id))
        if entry is None or (list_name, entry.id) not in self.overlay._live_rows:
            return None
        value = entry.signals.get(algorithm)
        if value is None:
            return np.empty((0, get_algorithm(algorithm).bits // 8), dtype=np.uint8)
        return np.frombuffer(bytes.fromhex(value), dtype=np.uint8).reshape(1, -1)

    def bank_ratio(self, name: str) -> float | None:
        """A bank's ``matching_enabled_ratio`` (None: not a bank of this directory)."""
        state = self.overlay.directory.banks.get(name)
        return state.ratio if state is not None and state.exists else None


_NUMPY_PAIRS = 16_384
"""Up to this many (query, code) pairs numpy's scan beats faiss's, whose call and result
set-up cost more than comparing a few thousand codes."""


def _scan(codes: np.ndarray, queries: np.ndarray, radius: int) -> SearchHits:
    """Every (query, code) within ``radius``: the exact scan, by numpy or by faiss."""
    if len(codes) * len(queries) > _NUMPY_PAIRS:
        return FlatSearcher(codes).search(queries, radius)
    if codes.shape[1] % 8 == 0:  # 64-bit words: an eighth of the elements to count and sum
        codes, queries = codes.view(np.uint64), np.ascontiguousarray(queries).view(np.uint64)
    distances = np.bitwise_count(queries[:, None, :] ^ codes[None, :, :]).sum(axis=2)
    owners, rows = np.nonzero(distances <= radius)
    return owners, rows, distances[owners, rows].astype(np.int64)


def _limit(snapshot: LoadedIndex, algorithm: str, bank: str, override: int | None) -> int:
    """The threshold of a bank's added content: the call's, else the bank's as the published
    version has it, else the algorithm's default."""
    if override is not None:
        return override
    if algorithm in snapshot.algorithms:
        return snapshot.threshold_for(algorithm, bank)
    return get_algorithm(algorithm).default_threshold


def _grown(table: _Table | None, width: int) -> _Table:
    size = _INITIAL_ROWS if table is None else 2 * len(table.codes)
    codes = np.zeros((size, width), dtype=np.uint8)
    added = np.zeros(size, dtype=np.int64)
    dead = np.zeros(size, dtype=np.int64)
    if table is None:
        return _Table(codes, added, dead, [])
    codes[: table.rows] = table.codes[: table.rows]
    added[: table.rows] = table.added[: table.rows]
    dead[: table.rows] = table.dead[: table.rows]
    return _Table(codes, added, dead, table.owners, table.rows, table.banks)


def _set(intervals: dict[Any, Intervals], key: Any, active: bool, generation: int) -> None:
    held = intervals.get(key, ())
    open_now = bool(held) and held[-1][1] == _OPEN
    if active and not open_now:
        intervals[key] = (*held, (generation, _OPEN))
    elif not active and open_now:
        intervals[key] = (*held[:-1], (held[-1][0], generation))


def _holds(intervals: Intervals | None, generation: int) -> bool:
    return bool(intervals) and any(start <= generation < end for start, end in intervals or ())
