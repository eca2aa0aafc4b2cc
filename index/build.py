"""Building an index from hash lists and publishing it atomically: the orchestration.

Lists (files, or entries a program holds in memory) stream in validated chunks: entries go to
the entry store as they are read (:mod:`~hashmatch.index.entry_store`), codes accumulate as
compact numpy arrays, so memory holds the codes (32 bytes per PDQ hash), not an object per
line. Then per algorithm: duplicates merge (:mod:`~hashmatch.index.codes`), the search
structure is chosen and its tables written (:func:`~hashmatch.index.search.write_search_tables`)
for the largest threshold any list gives, and everything lands in a staging directory that is
published by one rename only when complete (:mod:`~hashmatch.index.publish`).
"""

from __future__ import annotations

import gc
import json
import shutil
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from hashmatch.errors import HashmatchError, IndexBuildError, OptionError
from hashmatch.index.artifact import (
    METADATA,
    VERSIONS,
    ArrayWriter,
    Manifest,
    current_version,
    new_manifest,
    read_manifest,
    write_manifest,
)
from hashmatch.index.codes import merge_duplicates
from hashmatch.index.diff import diff_manifests
from hashmatch.index.entry_store import EntryWriter, Record, add_entry_lookup
from hashmatch.index.publish import (
    build_lock,
    new_version_name,
    prepare_index_directory,
    publish_version,
    remove_old_versions,
    staging_directory,
)
from hashmatch.index.report import AlgorithmSummary, BuildReport
from hashmatch.index.search import SEARCH_CHOICES, write_search_tables
from hashmatch.lists import DEFAULT_MAX_INVALID, Exclusions, HashListReader
from hashmatch.lists.memory import EntryLike, EntryListReader
from hashmatch.lists.reader import ListReading
from hashmatch.lists.validate import ValidChunk
from hashmatch.registry import checked_thresholds, get_algorithm

__all__ = ["BuildOptions", "EntryList", "ListSource", "build_index"]


@dataclass(frozen=True)
class ListSource:
    """One list file to ingest and how to read it."""

    path: Path
    list_name: str | None = None
    algorithm: str | None = None
    list_format: str = "auto"
    thresholds: dict[str, int] = field(default_factory=dict)
    """Per-algorithm match thresholds for this list's entries (overriding the index's)."""

    def reader(self, strict: bool, max_invalid: float) -> ListReading:
        return HashListReader(
            self.path,
            algorithm=self.algorithm,
            list_name=self.list_name,
            list_format=self.list_format,
            strict=strict,
            max_invalid=max_invalid,
        )


@dataclass(frozen=True)
class EntryList:
    """A list a program holds in memory: ``ListEntry`` values or ``(algorithm, hash, list,
    id, label)`` tuples (trailing fields optional), validated as a file's lines would be."""

    entries: Iterable[EntryLike]
    name: str = "entries"
    algorithm: str | None = None
    """The algorithm of entries that give none."""
    thresholds: dict[str, int] = field(default_factory=dict)
    bank: dict[str, Any] | None = None
    """For a live bank: the log position read (``through``, a record number, and ``at``,
    the time its states were judged at), kept in the manifest so servers know what this
    version folded in."""

    def reader(self, strict: bool, max_invalid: float) -> ListReading:
        return EntryListReader(
            self.entries,
            list_name=self.name,
            algorithm=self.algorithm,
            strict=strict,
            max_invalid=max_invalid,
        )


Source = ListSource | EntryList


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
    sources: Sequence[Source],
    index: str | Path,
    options: BuildOptions | None = None,
    *,
    on_wait: Callable[[], None] | None = None,
) -> BuildReport:
    """Build from ``sources`` (list files and in-memory lists) and publish to ``index``.

    Returns the build report; raises HashmatchError subclasses (``HashListError`` naming the
    list and line, ``IndexBuildError``), leaving the published index untouched on failure.
    ``on_wait`` is called if another build of the same index holds its lock.
    """
    options = options or BuildOptions()
    index = Path(index)
    if options.search not in SEARCH_CHOICES:
        raise IndexBuildError(
            f"unknown search structure {options.search!r} ({', '.join(SEARCH_CHOICES)})"
        )
    started = time.monotonic()
    if not sources:
        raise IndexBuildError("no hash lists to build from")
    for source in sources:
        if not isinstance(source, (ListSource, EntryList)):
            raise OptionError(f"build sources are ListSource or EntryList, got {source!r:.80}")
    options = replace(options, thresholds=checked_thresholds(options.thresholds))
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
    sources: Sequence[Source],
    staging: Path,
    name: str,
    options: BuildOptions,
    index: Path,
    previous: str | None,
) -> tuple[Manifest, BuildReport]:
    created = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    with EntryWriter(staging / METADATA) as database:
        accumulators, list_reports, list_thresholds = _ingest_lists(sources, options, database)
    perceptual = [get_algorithm(a) for a in accumulators if get_algorithm(a).needs_pixels]
    if len(perceptual) > 1 and any(a.confirms_within is not None for a in perceptual):
        add_entry_lookup(staging / METADATA)  # to find an entry's confirming hash
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
    lists = [(item, list_thresholds.get(item["name"], {})) for item in list_reports]
    write_manifest(staging, new_manifest(name, created, total, algorithm_data, lists, writer.files))
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
    sources: Sequence[Source], options: BuildOptions, database: EntryWriter
) -> tuple[dict[str, _Accumulator], list[dict[str, Any]], dict[str, dict[str, int]]]:
    """Read every list: entries to the writer, codes into accumulators, a report per list."""
    accumulators: dict[str, _Accumulator] = {}
    list_reports: list[dict[str, Any]] = []
    list_thresholds: dict[str, dict[str, int]] = {}
    next_rowid = 1
    for source in sources:
        reader = source.reader(options.strict, options.max_invalid)
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
        if isinstance(source, EntryList) and source.bank is not None:
            entry["bank"] = dict(source.bank)
        list_reports.append(entry)
    return accumulators, list_reports, list_thresholds


def _merge_thresholds(
    known: dict[str, dict[str, int]], list_name: str, thresholds: dict[str, int]
) -> None:
    for algorithm, value in checked_thresholds(thresholds).items():
        current = known.setdefault(list_name, {}).get(algorithm)
        if current is not None and current != value:
            raise IndexBuildError(
                f"list {list_name!r} is given two {algorithm} thresholds ({current}, {value})"
            )
        known[list_name][algorithm] = value


def _ingest(
    chunk: ValidChunk,
    list_name: str,
    exclusions: Exclusions,
    accumulators: dict[str, _Accumulator],
    database: EntryWriter,
    next_rowid: int,
) -> tuple[int, int]:
    """Store one chunk's entries; returns the next row id and how many were excluded."""
    excluded = 0
    batch = chunk.batch
    for algorithm, positions in chunk.positions.items():
        codes = chunk.codes[algorithm]
        accumulator = accumulators.setdefault(algorithm, _Accumulator())
        keep = _exclusion_mask(
            codes,
            chunk.column(algorithm, "entry_ids"),
            [batch.lists[p] or list_name for p in positions],
            exclusions,
            algorithm,
        )
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
        records: list[Record] = list(
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


def _exclusion_mask(
    codes: np.ndarray,
    entry_ids: list[str | None],
    list_names: list[str],
    exclusions: Exclusions,
    algorithm: str,
) -> np.ndarray | None:
    """Which rows survive the exclusions (None: all of them, the usual case)."""
    excluded_codes = exclusions.hashes.get(algorithm)
    if not excluded_codes and not exclusions.entry_ids and not exclusions.list_entries:
        return None
    keep = np.ones(len(codes), dtype=bool)
    if excluded_codes:
        keep &= np.array([code.tobytes() not in excluded_codes for code in codes], dtype=bool)
    if exclusions.entry_ids:
        keep &= np.array([e not in exclusions.entry_ids for e in entry_ids], dtype=bool)
    if exclusions.list_entries:
        pairs = exclusions.list_entries
        keep &= np.array(
            [(n, e) not in pairs for n, e in zip(list_names, entry_ids, strict=True)], dtype=bool
        )
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
    unique_codes, keys, entry_offsets, entry_rows = merge_duplicates(codes, rowids)
    threshold = index_thresholds.get(algorithm, spec.default_threshold)
    design_radius = max(
        [threshold, *(t[algorithm] for t in list_thresholds.values() if algorithm in t)]
    )
    writer.write(f"{algorithm}.codes", unique_codes)
    writer.write(f"{algorithm}.keys", keys)
    writer.write(f"{algorithm}.entry_offsets", entry_offsets)
    writer.write(f"{algorithm}.entry_rows", entry_rows)
    search = write_search_tables(spec, unique_codes, design_radius, search_choice, writer)
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
