"""Building an index from hash lists and publishing it atomically.

Lists stream in chunks: entries go to SQLite as they are read, codes accumulate as compact
numpy arrays, so memory holds the codes (32 bytes per PDQ hash) and not a Python object per
line. Then per algorithm: duplicates merge (one stored code, many entries), the search tables
are built for the index's largest threshold, and everything lands in a staging directory that
is published by rename only when complete.
"""

from __future__ import annotations

import gc
import json
import multiprocessing
import multiprocessing.dummy
import os
import queue
import shutil
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import closing, contextmanager, suppress
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

import hashmatch
from hashmatch.errors import HashmatchError, IndexBuildError
from hashmatch.index.artifact import (
    ENTRY_LOOKUP,
    FORMAT_NAME,
    FORMAT_VERSION,
    METADATA,
    VERSIONS,
    ArrayWriter,
    Manifest,
    current_version,
    read_manifest,
    row_keys,
    write_manifest,
)
from hashmatch.index.diff import diff_manifests
from hashmatch.index.mih import MultiIndex, choose_layout
from hashmatch.index.publish import (
    build_lock,
    new_version_name,
    prepare_index_directory,
    publish_version,
    remove_old_versions,
    staging_directory,
)
from hashmatch.index.report import AlgorithmSummary, BuildReport
from hashmatch.lists import DEFAULT_MAX_INVALID, Exclusions, HashListReader
from hashmatch.lists.validate import ValidChunk
from hashmatch.registry import get_algorithm

__all__ = ["BuildOptions", "ListSource", "build_index"]

SCHEMA = """
CREATE TABLE entries (
    rowid INTEGER PRIMARY KEY,
    algorithm TEXT NOT NULL,
    list TEXT NOT NULL,
    entry_id TEXT,
    label TEXT,
    metadata TEXT,
    source_line INTEGER
);
"""


@dataclass(frozen=True)
class ListSource:
    """One list file to ingest and how to read it."""

    path: Path
    list_name: str | None = None
    algorithm: str | None = None
    list_format: str = "auto"
    thresholds: dict[str, int] = field(default_factory=dict)
    """Per-algorithm match thresholds for this list's entries (overriding the index's)."""


@dataclass(frozen=True)
class BuildOptions:
    thresholds: dict[str, int] = field(default_factory=dict)
    """Index-wide per-algorithm thresholds (default: each algorithm's own)."""
    strict: bool = False
    max_invalid: float = DEFAULT_MAX_INVALID
    exclusions: Exclusions = field(default_factory=Exclusions)
    allow_empty: bool = False
    """Publish an index with no entries (refused by default: an empty download would
    otherwise silently switch matching off)."""
    keep_versions: int = 3
    search: str = "auto"
    """Search structure for perceptual hashes: ``auto`` (by size), ``flat`` or ``mih``."""


@dataclass
class _Accumulator:
    codes: list[np.ndarray] = field(default_factory=list)
    rowids: list[np.ndarray] = field(default_factory=list)
    excluded: int = 0


def build_index(
    sources: list[ListSource],
    index: str | Path,
    options: BuildOptions | None = None,
    *,
    on_wait: Any = None,
) -> BuildReport:
    """Build from ``sources`` and publish to ``index``; raises HashmatchError subclasses."""
    options = options or BuildOptions()
    index = Path(index)
    if options.search not in ("auto", "flat", "mih"):
        raise IndexBuildError(f"unknown search structure {options.search!r} (auto, flat, mih)")
    started = time.monotonic()
    if not sources:
        raise IndexBuildError("no hash lists to build from")
    for algorithm in options.thresholds:
        get_algorithm(algorithm)
    prepare_index_directory(index)
    with build_lock(index, on_wait):
        previous = _readable_previous_version(index)
        name = new_version_name()
        staging = staging_directory(index, name)
        try:
            manifest, report = _build_version(sources, staging, name, options, index, previous)
            if previous is not None:
                _attach_diff(index, previous, manifest, report)
            publish_version(index, staging, name)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)  # gone already once published
            raise
        report.removed_versions = remove_old_versions(index, options.keep_versions)
    report.elapsed_seconds = time.monotonic() - started
    return report


def _build_version(
    sources: list[ListSource],
    staging: Path,
    name: str,
    options: BuildOptions,
    index: Path,
    previous: str | None,
) -> tuple[Manifest, BuildReport]:
    created = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    with _EntryWriter(staging / METADATA) as database:
        accumulators, list_reports, list_thresholds = _ingest_lists(sources, options, database)
    perceptual = [get_algorithm(a) for a in accumulators if get_algorithm(a).needs_pixels]
    if len(perceptual) > 1 and any(a.confirms_within is not None for a in perceptual):
        # the matcher looks up the confirming hash of an entry a weaker hash matched
        with closing(sqlite3.connect(staging / METADATA)) as connection:
            connection.execute(
                f"CREATE INDEX {ENTRY_LOOKUP} ON entries (entry_id, list, algorithm)"
            )
            connection.commit()
    # The writer has finished: every entry row is on disk before the checksums are taken.
    total = sum(sum(len(r) for r in acc.rowids) for acc in accumulators.values())
    if total == 0 and not options.allow_empty:
        raise IndexBuildError(
            "the lists hold no valid entries; refusing to publish an empty index that would"
            " match nothing (pass --allow-empty if that is intended)"
        )
    writer = ArrayWriter(staging)
    summaries: dict[str, AlgorithmSummary] = {}
    algorithm_data: dict[str, Any] = {}
    for algorithm, accumulator in sorted(accumulators.items()):
        summary, data = _write_algorithm(
            algorithm, accumulator, writer, options.thresholds, list_thresholds, options.search
        )
        summaries[algorithm] = summary
        algorithm_data[algorithm] = data
    writer.add_file(METADATA)
    manifest_data = {
        "format": FORMAT_NAME,
        "format_version": FORMAT_VERSION,
        "tool_version": hashmatch.__version__,
        "created": created,
        "version": name,
        "entries": total,
        "algorithms": algorithm_data,
        "lists": [
            {**_manifest_list(item), "thresholds": list_thresholds.get(item["name"], {})}
            for item in list_reports
        ],
        "files": writer.files,
    }
    write_manifest(staging, manifest_data)
    report = BuildReport(
        index=str(index),
        version=name,
        previous_version=previous,
        created=created,
        elapsed_seconds=0.0,
        lists=list_reports,
        algorithms=summaries,
    )
    return read_manifest(staging), report


def _ingest_lists(
    sources: list[ListSource], options: BuildOptions, database: _EntryWriter
) -> tuple[dict[str, _Accumulator], list[dict[str, Any]], dict[str, dict[str, int]]]:
    """Read every list: entries to the writer, codes into accumulators, a report per list."""
    accumulators: dict[str, _Accumulator] = {}
    list_reports: list[dict[str, Any]] = []
    list_thresholds: dict[str, dict[str, int]] = {}
    next_rowid = 1
    for source in sources:
        reader = HashListReader(
            source.path,
            algorithm=source.algorithm,
            list_name=source.list_name,
            list_format=source.list_format,
            strict=options.strict,
            max_invalid=options.max_invalid,
        )
        list_name = reader.stats.list_name
        _merge_thresholds(list_thresholds, list_name, source.thresholds)
        excluded_here = 0
        with _collector_paused():
            for chunk in reader.chunks():
                next_rowid, excluded = _ingest(
                    chunk, list_name, options.exclusions, accumulators, database, next_rowid
                )
                excluded_here += excluded
        entry = reader.stats.to_json()
        entry["excluded"] = excluded_here
        list_reports.append(entry)
    return accumulators, list_reports, list_thresholds


def _merge_thresholds(
    known: dict[str, dict[str, int]], list_name: str, thresholds: dict[str, int]
) -> None:
    for algorithm, value in thresholds.items():
        get_algorithm(algorithm)
        current = known.setdefault(list_name, {}).get(algorithm)
        if current is not None and current != value:
            raise IndexBuildError(
                f"list {list_name!r} is given two {algorithm} thresholds ({current}, {value})"
            )
        known[list_name][algorithm] = value


def _manifest_list(item: dict[str, Any]) -> dict[str, Any]:
    keys = ("name", "source", "format", "sha256", "rows", "accepted", "rejected", "excluded")
    return {key: item[key] for key in keys}


def _ingest(
    chunk: ValidChunk,
    list_name: str,
    exclusions: Exclusions,
    accumulators: dict[str, _Accumulator],
    database: _EntryWriter,
    next_rowid: int,
) -> tuple[int, int]:
    """Store one chunk's entries; returns the next row id and how many were excluded."""
    excluded = 0
    batch = chunk.batch
    for algorithm, positions in chunk.positions.items():
        codes = chunk.codes[algorithm]
        accumulator = accumulators.setdefault(algorithm, _Accumulator())
        keep = _exclusion_mask(codes, chunk.column(algorithm, "entry_ids"), exclusions, algorithm)
        if keep is not None:
            dropped = len(positions) - int(keep.sum())
            excluded += dropped
            accumulator.excluded += dropped
            codes = codes[keep]
            positions = [p for p, ok in zip(positions, keep.tolist(), strict=True) if ok]
        if not positions:
            continue
        rowids = range(next_rowid, next_rowid + len(positions))
        extras = batch.extras
        records = list(
            zip(
                rowids,
                [algorithm] * len(positions),
                [batch.lists[p] or list_name for p in positions],
                [batch.entry_ids[p] for p in positions],
                [batch.labels[p] for p in positions],
                [
                    json.dumps(extras[p], ensure_ascii=False) if extras[p] else None
                    for p in positions
                ],
                [batch.lines[p] for p in positions],
                strict=True,
            )
        )
        database.put(records)
        accumulator.codes.append(codes)
        accumulator.rowids.append(np.arange(next_rowid, next_rowid + len(positions)))
        next_rowid += len(positions)
    return next_rowid, excluded


@contextmanager
def _collector_paused() -> Iterator[None]:
    """Parsing creates millions of short-lived acyclic objects; the cycle collector's passes
    over them cost about a fifth of the parse time and find nothing."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


class _EntryWriter:
    """Inserts entry rows beside the parsing, so SQLite's work (about a third of an ingest)
    overlaps with it: in a forked process when this process has no other threads (forking
    then is safe, and nothing is re-imported), else in a thread."""

    def __init__(self, path: Path) -> None:
        forkable = (
            threading.active_count() == 1 and "fork" in multiprocessing.get_all_start_methods()
        )
        context: Any = multiprocessing.get_context("fork") if forkable else multiprocessing.dummy
        self._queue = context.Queue(maxsize=4)
        self._results = context.Queue()
        self._process = context.Process(
            target=_write_entries, args=(str(path), self._queue, self._results, os.getpid())
        )
        self._process.daemon = True
        self._process.start()
        self._path = path
        self._closed = False
        self._error: str | None = None

    def put(self, records: list[tuple[Any, ...]]) -> None:
        if not self._process.is_alive():
            self.close()
        self._queue.put(records)

    def __enter__(self) -> _EntryWriter:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, *_: object) -> None:
        try:
            self.close()
        except IndexBuildError:
            if exc_type is None:  # do not hide the error that stopped the build
                raise

    def close(self) -> None:
        """Finish writing (idempotent); raises if writing failed."""
        if not self._closed:
            self._closed = True
            if self._process.is_alive():
                self._queue.put(None)
            self._process.join()
            self._error = None if self._results.empty() else self._results.get()
            if self._error is None and self._process.exitcode != 0:
                self._error = f"the writer process exited with code {self._process.exitcode}"
        if self._error is not None:
            raise IndexBuildError(f"{self._path}: writing entries failed: {self._error}")


def _write_entries(path: str, records_queue: Any, results: Any, builder: int) -> None:
    """The writer process: one transaction, then a result (None, or the error text).

    If the builder dies (killed mid-build) the writer notices it was orphaned and exits
    rather than waiting forever on a queue nobody will fill.
    """
    received_end = False
    try:
        database = sqlite3.connect(path, isolation_level=None)
        database.executescript("PRAGMA journal_mode=OFF; PRAGMA synchronous=OFF;" + SCHEMA)
        database.execute("BEGIN")
        while (records := _next_records(records_queue, builder)) is not None:
            _insert_entries(database, records)
        received_end = True
        database.execute("COMMIT")  # most pages reach the file here: a full disk fails here
        database.close()
    except _BuilderGone:
        return
    except BaseException as exc:
        results.put(f"{type(exc).__name__}: {exc}")
        if not received_end:  # drain so the builder never blocks on a full queue
            with suppress(_BuilderGone):
                while _next_records(records_queue, builder) is not None:
                    pass


class _BuilderGone(Exception):
    """The builder died: nobody will send the end of the records or read the result."""


def _next_records(records_queue: Any, builder: int) -> list[tuple[Any, ...]] | None:
    """The next batch of records (None: the end), for as long as the builder lives.

    ``builder`` is the builder's pid taken before the fork: a builder killed before this
    process ran would otherwise go unnoticed (its parent would already be init).
    """
    while True:
        try:
            return records_queue.get(timeout=1.0)
        except queue.Empty:
            if os.getpid() != builder and os.getppid() != builder:
                raise _BuilderGone from None


_ROWS_PER_INSERT = 100
_INSERT_MANY = "INSERT INTO entries VALUES " + ",".join(
    ["(?, ?, ?, ?, ?, ?, ?)"] * _ROWS_PER_INSERT
)


def _insert_entries(database: sqlite3.Connection, records: list[tuple[Any, ...]]) -> None:
    """Insert with 100 rows per statement: about twice as fast as one row per statement."""
    whole = len(records) - len(records) % _ROWS_PER_INSERT
    if whole:
        flat = [value for record in records[:whole] for value in record]
        step = _ROWS_PER_INSERT * 7
        database.executemany(_INSERT_MANY, (flat[i : i + step] for i in range(0, len(flat), step)))
    if whole < len(records):
        database.executemany("INSERT INTO entries VALUES (?, ?, ?, ?, ?, ?, ?)", records[whole:])


def _exclusion_mask(
    codes: np.ndarray, entry_ids: list[str | None], exclusions: Exclusions, algorithm: str
) -> np.ndarray | None:
    """Which rows survive the exclusions (None: all of them, the usual case)."""
    excluded_codes = exclusions.hashes.get(algorithm)
    if not excluded_codes and not exclusions.entry_ids:
        return None
    keep = np.ones(len(codes), dtype=bool)
    if excluded_codes:
        keep &= np.array([code.tobytes() not in excluded_codes for code in codes], dtype=bool)
    if exclusions.entry_ids:
        keep &= np.array([e not in exclusions.entry_ids for e in entry_ids], dtype=bool)
    return None if keep.all() else keep


def _write_algorithm(
    algorithm: str,
    accumulator: _Accumulator,
    writer: ArrayWriter,
    index_thresholds: dict[str, int],
    list_thresholds: dict[str, dict[str, int]],
    search_choice: str,
) -> tuple[AlgorithmSummary, dict[str, Any]]:
    spec = get_algorithm(algorithm)
    codes = (
        np.concatenate(accumulator.codes)
        if accumulator.codes
        else np.zeros((0, spec.bits // 8), np.uint8)
    )
    rowids = np.concatenate(accumulator.rowids) if accumulator.rowids else np.zeros(0, np.int64)
    unique_codes, keys, entry_offsets, entry_rows = _merge_duplicates(codes, rowids)
    threshold = index_thresholds.get(algorithm, spec.default_threshold)
    design_radius = max(
        [threshold, *(t[algorithm] for t in list_thresholds.values() if algorithm in t)]
    )
    writer.write(f"{algorithm}.codes", unique_codes)
    writer.write(f"{algorithm}.keys", keys)
    writer.write(f"{algorithm}.entry_offsets", entry_offsets)
    writer.write(f"{algorithm}.entry_rows", entry_rows)
    search: dict[str, Any]
    if not spec.needs_pixels:
        search = {"kind": "exact"}
    else:
        layout = None
        if search_choice != "flat":
            force = search_choice == "mih"
            layout = choose_layout(len(unique_codes), spec.bits, design_radius, force=force)
        if layout is None:
            search = {"kind": "flat"}
        else:
            tables = MultiIndex.build(unique_codes, layout)
            writer.write(f"{algorithm}.mih_buckets", tables.buckets)
            writer.write(f"{algorithm}.mih_starts", tables.starts)
            writer.write(f"{algorithm}.mih_ids", tables.ids)
            search = {"kind": "mih", "radius": layout.radius, **layout.to_json()}
    data = {
        "bits": spec.bits,
        "codes": len(unique_codes),
        "entries": len(rowids),
        "threshold": threshold,
        "design_radius": design_radius,
        "search": search,
    }
    summary = AlgorithmSummary(
        name=algorithm,
        entries=len(rowids),
        codes=len(unique_codes),
        duplicates_merged=len(rowids) - len(unique_codes),
        excluded=accumulator.excluded,
        threshold=threshold,
        index_kind=search["kind"],
    )
    return summary, data


def _merge_duplicates(
    codes: np.ndarray, rowids: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Unique codes in row-key order, their keys, and each code's entries (CSR)."""
    if len(codes) == 0:
        empty = np.zeros(0, dtype=np.int64)
        return codes, np.zeros(0, dtype=np.uint64), np.zeros(1, dtype=np.int64), empty
    keys = row_keys(codes)
    order = np.argsort(keys, kind="stable")
    codes, keys, rowids = codes[order], keys[order], rowids[order]
    same_key = keys[1:] == keys[:-1]
    if same_key.any():
        codes, keys, rowids = _separate_collisions(codes, keys, rowids, same_key)
        same_key = (keys[1:] == keys[:-1]) & np.all(codes[1:] == codes[:-1], axis=1)
    starts = np.concatenate([[0], np.flatnonzero(~same_key) + 1])
    offsets = np.concatenate([starts, [len(codes)]]).astype(np.int64)
    return codes[starts], keys[starts], offsets, rowids


def _separate_collisions(
    codes: np.ndarray, keys: np.ndarray, rowids: np.ndarray, same_key: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Within runs of equal keys, order rows by their bytes so identical codes are adjacent.

    Equal keys almost always mean identical codes; distinct codes sharing a key (a 2**-64
    event) must still stay distinct entries.
    """
    different = ~np.all(codes[1:] == codes[:-1], axis=1) & same_key
    if not different.any():
        return codes, keys, rowids
    order = np.lexsort([*codes.T[::-1], keys])
    return codes[order], keys[order], rowids[order]


def _readable_previous_version(index: Path) -> str | None:
    """The published version, or None if ``CURRENT`` is damaged: a rebuild is the repair."""
    try:
        return current_version(index)
    except HashmatchError:
        return None


def _attach_diff(index: Path, previous: str, manifest: Manifest, report: BuildReport) -> None:
    try:
        diffs = diff_manifests(read_manifest(index / VERSIONS / previous), manifest)
    except Exception:  # a damaged previous version must not block the rebuild repairing it
        return
    for algorithm, diff in diffs.items():
        if algorithm in report.algorithms:
            report.algorithms[algorithm].diff = diff
