"""``Matcher``: the thread-safe entry point for upload pipelines.

``Matcher.open(path)`` loads the published version of an index. ``lookup`` searches given
hashes; ``match`` hashes an image (bytes, path, file or PIL image) and looks it up. ``reload``
swaps to a newly published version without blocking or failing concurrent calls: each call
takes the current version once and finishes on it, and the swap is a single reference
assignment. With ``reload_interval`` a background thread does this by itself.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from hashmatch.batch import HashJob, HashOutcome, hash_file
from hashmatch.errors import HashFormatError, IndexFormatError, OptionError
from hashmatch.hashes import Hash
from hashmatch.hashing import HashResult
from hashmatch.index.artifact import (
    MANIFEST,
    checked_index_path,
    current_version,
    resolve_version,
)
from hashmatch.index.loaded import LoadedIndex
from hashmatch.loading import DEFAULT_LIMITS, ImageLimits, ImageSource
from hashmatch.registry import checked_thresholds, get_algorithm, resolve_algorithms
from hashmatch.walking import WalkEntry

__all__ = [
    "LOW_QUALITY_THRESHOLD",
    "Match",
    "MatchResult",
    "Matcher",
    "nearest_distances",
    "query_codes",
]

LOW_QUALITY_THRESHOLD = 50
"""PDQ quality below this means too little detail: PDQ matches are not trusted."""
PDQ_CONFIRMATION = 64
"""A match by a 64-bit hash on an entry that also has a PDQ hash stands only when the query's
PDQ is within this distance of that PDQ: 64-bit hashes of distinct photos collide far more
often than PDQ, and PDQ of distinct photos stays above 75 (README, "Detection quality")."""

_log = logging.getLogger("hashmatch.index")


@dataclass(frozen=True)
class Match:
    """One list entry within threshold of a query hash."""

    algorithm: str
    distance: int
    hash: str
    """The stored hash that matched, as hex."""
    list: str
    entry_id: str | None
    label: str | None
    variant: str | None = None
    """The rotation/flip of the query that matched (PDQ dihedral), None for the image as is."""
    metadata: dict[str, str] = field(default_factory=dict, compare=False, hash=False)

    def to_json(self) -> dict[str, Any]:
        return {
            "algorithm": self.algorithm,
            "distance": self.distance,
            "hash": self.hash,
            "list": self.list,
            "entry_id": self.entry_id,
            "label": self.label,
            "variant": self.variant,
        }


@dataclass(frozen=True)
class MatchResult:
    """The verdict for one image."""

    status: str
    """``match``, ``no_match``, ``low_quality`` (PDQ quality < 50, nothing else matched) or
    ``error`` (the image could not be read or decoded)."""
    matches: list[Match] = field(default_factory=list)
    hashes: dict[str, Hash] = field(default_factory=dict)
    quality: int | None = None
    """PDQ quality 0-100 when PDQ was computed."""
    error: str | None = None
    width: int | None = None
    height: int | None = None
    index_version: str | None = None
    source: Any = None
    """What was matched, as given to :meth:`Matcher.match_many` (a path, or the position of
    bytes/file/PIL sources); None from :meth:`Matcher.match`."""

    @property
    def matched(self) -> bool:
        return self.status == "match"


HashInput = Mapping[str, "Hash | str | Sequence[Hash | str]"]


class Matcher:
    """Searches one index; safe to share between threads; picks up new versions on reload."""

    def __init__(self, path: Path, snapshot: LoadedIndex, *, verify: bool) -> None:
        self.path = path
        self._snapshot = snapshot
        self._verify = verify
        self._reload_lock = threading.Lock()
        self._stop = threading.Event()
        self._watcher: threading.Thread | None = None
        self.last_reload_error: str | None = None

    @classmethod
    def open(
        cls, path: str | Path, *, reload_interval: float | None = None, verify: bool = True
    ) -> Matcher:
        """Load the published version of the index at ``path`` (or a version directory).

        ``verify`` checks every file's checksum first (about a second per GB); with
        ``reload_interval`` seconds a background thread reloads when a new version is published.
        """
        path = checked_index_path(path)
        if reload_interval is not None and (
            isinstance(reload_interval, bool)
            or not isinstance(reload_interval, (int, float))
            or not reload_interval > 0
        ):
            raise OptionError(
                f"reload_interval must be seconds > 0 or None, got {reload_interval!r}"
            )
        matcher = cls(path, LoadedIndex(resolve_version(path), verify=verify), verify=verify)
        if reload_interval is not None:
            matcher._start_watcher(reload_interval)
        return matcher

    @property
    def version(self) -> str:
        return self._snapshot.version

    @property
    def algorithms(self) -> list[str]:
        return list(self._snapshot.algorithms)

    def threshold(self, algorithm: str, list_name: str | None = None) -> int:
        """The distance up to which ``algorithm`` matches (for ``list_name``'s entries, which
        may have their own); raises KeyError for an algorithm the index does not hold."""
        snapshot = self._snapshot
        if list_name is None:
            return snapshot.algorithms[algorithm].threshold
        return snapshot.threshold_for(algorithm, list_name)

    def reload(self) -> bool:
        """Switch to the published version if it changed; True if it did.

        Concurrent lookups keep running on the version they started with. If the new
        version cannot be loaded, the current one stays and the error is raised.
        """
        if (self.path / MANIFEST).is_file():
            return False  # opened as a fixed version directory
        with self._reload_lock:
            published = current_version(self.path)
            if published is None:
                raise IndexFormatError(f"{self.path}: nothing published")
            if published == self._snapshot.version:
                return False
            fresh = LoadedIndex(resolve_version(self.path), verify=self._verify)
            self._snapshot = fresh  # a single reference swap: readers never see a mix
            return True

    def close(self) -> None:
        """Stop the background reloader (the index itself is released when unreferenced)."""
        self._stop.set()
        if self._watcher is not None:
            self._watcher.join(timeout=5)

    def __enter__(self) -> Matcher:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def lookup(
        self,
        hashes: HashInput | HashResult,
        *,
        thresholds: Mapping[str, int] | None = None,
        dihedral: bool = True,
    ) -> list[Match]:
        """Every list entry within threshold of the given hashes, nearest first.

        ``hashes`` maps algorithm names to a :class:`Hash`, a hex string or a sequence of them
        (e.g. the dihedral variants); a :class:`HashResult` is accepted as is, its PDQ
        variants included when ``dihedral``. ``thresholds`` overrides per algorithm.
        """
        return _lookup(self._snapshot, hashes, thresholds, dihedral)

    def hash_job(
        self,
        source: ImageSource | WalkEntry,
        *,
        algorithms: Iterable[str] | None = None,
        dihedral: bool = True,
        trim_borders: bool = True,
        recover: bool = False,
        exact: bool = False,
        limits: ImageLimits = DEFAULT_LIMITS,
        time_limit: float | None = None,
    ) -> HashJob:
        """What to compute for ``source``: the given algorithms, or the index's.

        Of the index's, md5/sha256 are left out for a PIL image, which has no file bytes.
        """
        if algorithms is None:
            names = _algorithms_for(self._snapshot, source)
        else:
            names = tuple(a.name for a in resolve_algorithms(algorithms))
        return HashJob(names, exact, dihedral, limits, trim_borders, recover, time_limit)

    def match(
        self,
        source: ImageSource,
        *,
        algorithms: Iterable[str] | None = None,
        thresholds: Mapping[str, int] | None = None,
        dihedral: bool = True,
        trim_borders: bool = True,
        recover: bool = False,
        exact: bool = False,
        limits: ImageLimits = DEFAULT_LIMITS,
        time_limit: float | None = None,
    ) -> MatchResult:
        """Hash ``source`` with the index's algorithms (or ``algorithms``) and look it up.

        ``dihedral`` also matches its rotations and flips; ``trim_borders`` also matches the
        picture inside letterbox or padding borders; ``recover`` also matches the image with a
        small crop or tilt undone (eight more PDQ hashes to look up). ``time_limit`` abandons an
        image that takes longer (status ``error``, kind ``timeout``; main thread only).
        md5/sha256 come from the original bytes.
        Never raises for a bad image: the result's status is then ``error``.
        """
        snapshot = self._snapshot  # read once: what is hashed and what is searched agree
        thresholds = checked_thresholds(thresholds)  # a bad option raises before any work
        job = self.hash_job(
            source,
            algorithms=algorithms if algorithms is not None else _algorithms_for(snapshot, source),
            dihedral=dihedral,
            trim_borders=trim_borders,
            recover=recover,
            exact=exact,
            limits=limits,
            time_limit=time_limit,
        )
        return _verdict(snapshot, hash_file(source, job), thresholds, dihedral)

    def match_many(
        self,
        sources: Iterable[ImageSource],
        *,
        workers: int = 1,
        algorithms: Iterable[str] | None = None,
        thresholds: Mapping[str, int] | None = None,
        dihedral: bool = True,
        trim_borders: bool = True,
        recover: bool = False,
        exact: bool = False,
        limits: ImageLimits = DEFAULT_LIMITS,
        time_limit: float | None = None,
    ) -> Iterator[MatchResult]:
        """Match many images, yielding results as they complete (``result.source`` says which).

        Decoding and hashing run in ``workers`` processes; lookups run here, against this one
        loaded index. Paths are the cheapest sources to send to workers. With ``workers`` > 1
        a script must call this under ``if __name__ == "__main__":``, as with any
        multiprocessing code (the worker processes import the main module). A file that kills
        the worker hashing it, twice, becomes an ``error`` result of kind ``crashed``; workers
        that keep dying raise :class:`~hashmatch.WorkerError`.
        """
        from hashmatch.index.scan import ScanOptions, scan_sources

        if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
            raise OptionError(f"workers must be a whole number >= 1, got {workers!r}")
        if not isinstance(sources, Iterable) or isinstance(sources, (str, bytes, Image.Image)):
            raise OptionError(
                "sources must be an iterable of images (paths, bytes, files, PIL images),"
                f" got {type(sources).__name__}"
            )
        options = ScanOptions(
            tuple(a.name for a in resolve_algorithms(algorithms))
            if algorithms is not None
            else None,
            checked_thresholds(thresholds),
            dihedral,
            exact,
            limits,
            workers,
            trim_borders,
            recover,
            time_limit,
        )
        for position, source, result in scan_sources(self, sources, options):
            label = os.fspath(source) if isinstance(source, (str, os.PathLike)) else position
            yield replace(result, source=label)

    def verdict(
        self,
        result: HashResult | HashOutcome,
        *,
        thresholds: Mapping[str, int] | None = None,
        dihedral: bool = True,
    ) -> MatchResult:
        """Look up already computed hashes and decide their status; a failed
        :class:`~hashmatch.batch.HashOutcome` becomes an ``error`` result."""
        outcome = result if isinstance(result, HashOutcome) else HashOutcome(None, result)
        return _verdict(self._snapshot, outcome, thresholds, dihedral)

    def _start_watcher(self, interval: float) -> None:
        def watch() -> None:
            while not self._stop.wait(interval):
                try:
                    self.reload()
                    self.last_reload_error = None
                except Exception as exc:  # keep serving the current version
                    self.last_reload_error = str(exc)
                    _log.warning("hashmatch: reload of %s failed: %s", self.path, exc)

        self._watcher = threading.Thread(target=watch, name="hashmatch-reload", daemon=True)
        self._watcher.start()


def _algorithms_for(snapshot: LoadedIndex, source: ImageSource | WalkEntry) -> tuple[str, ...]:
    """The index's algorithms, less md5/sha256 for a PIL image (it has no file bytes)."""
    names = tuple(snapshot.algorithms)
    if isinstance(source, Image.Image):
        names = tuple(n for n in names if get_algorithm(n).needs_pixels) or names
    return names


def _nearest_first(match: Match) -> tuple[int, str, str, str]:
    return (match.distance, match.algorithm, match.list, match.entry_id or "")


def _lookup(
    snapshot: LoadedIndex,
    hashes: HashInput | HashResult,
    thresholds: Mapping[str, int] | None,
    dihedral: bool,
) -> list[Match]:
    matches: list[Match] = []
    thresholds = checked_thresholds(thresholds)
    for algorithm, items in _queries(hashes, dihedral).items():
        if algorithm in snapshot.algorithms:
            matches.extend(_search(snapshot, algorithm, items, thresholds))
    return sorted(matches, key=_nearest_first)


def _verdict(
    snapshot: LoadedIndex,
    outcome: HashOutcome,
    thresholds: Mapping[str, int] | None,
    dihedral: bool,
) -> MatchResult:
    """Status and matches for one image, every lookup against the same index version."""
    result = outcome.result
    if result is None:
        return MatchResult("error", error=outcome.error, index_version=snapshot.version)
    matches = _lookup(snapshot, result, thresholds, dihedral)
    if result.trimmed is not None:
        inner = _lookup(snapshot, result.trimmed, thresholds, dihedral)
        matches = _merge(matches, [_as_derived(m, "trimmed") for m in inner])
    matches = _confirmed(snapshot, result, matches, dihedral)
    low_quality = result.pdq_quality is not None and result.pdq_quality < LOW_QUALITY_THRESHOLD
    if low_quality:
        matches = [m for m in matches if m.algorithm != "pdq"]
    if matches:
        status = "match"
    elif low_quality:
        status = "low_quality"
    else:
        status = "no_match"
    return MatchResult(
        status,
        matches,
        dict(result.hashes),
        result.pdq_quality,
        None,
        result.width,
        result.height,
        snapshot.version,
    )


def _confirmed(
    snapshot: LoadedIndex, result: HashResult, matches: list[Match], dihedral: bool
) -> list[Match]:
    """``matches`` without the 64-bit ones the same entry's PDQ contradicts."""
    if "pdq" not in snapshot.algorithms or "pdq" not in result.hashes:
        return matches
    kept: list[Match] = []
    query: np.ndarray | None = None
    for match in matches:
        weak = match.algorithm != "pdq" and get_algorithm(match.algorithm).needs_pixels
        rows = (
            snapshot.rows_of_entry("pdq", match.list, match.entry_id)
            if weak and match.entry_id is not None
            else None
        )
        if not rows:  # not a 64-bit match, or nothing to confirm it with
            kept.append(match)
            continue
        if query is None:
            query = query_codes(result, "pdq", dihedral)
        stored = snapshot.algorithms["pdq"].codes_of_entries(rows)
        if int(nearest_distances(query, stored).min()) <= PDQ_CONFIRMATION:
            kept.append(match)
    return kept


def query_codes(result: HashResult, algorithm: str, dihedral: bool = True) -> np.ndarray:
    """Every code of ``algorithm`` a verdict searches for this image (the hash, its variants,
    the trimmed picture's, the recovered ones), as rows of bytes."""
    hashes = [h for _, h in _queries(result, dihedral).get(algorithm, [])]
    if result.trimmed is not None:
        hashes += [h for _, h in _queries(result.trimmed, dihedral).get(algorithm, [])]
    return np.frombuffer(b"".join(h.value for h in hashes), dtype=np.uint8).reshape(len(hashes), -1)


def nearest_distances(queries: np.ndarray, stored: np.ndarray) -> np.ndarray:
    """Per row of ``stored``, the Hamming distance to the nearest row of ``queries``."""
    return np.bitwise_count(queries[:, None, :] ^ stored[None, :, :]).sum(axis=2).min(axis=0)


def _as_derived(match: Match, derivation: str) -> Match:
    """The match, its variant naming the derived picture it came from (``trimmed+rotate90``)."""
    variant = f"{derivation}+{match.variant}" if match.variant else derivation
    return replace(match, variant=variant)


def _merge(first: list[Match], second: list[Match]) -> list[Match]:
    """Both lists, one match per entry (the nearest), nearest first."""
    best: dict[tuple[str, str, str | None, str], Match] = {}
    for match in [*first, *second]:
        key = (match.algorithm, match.list, match.entry_id, match.hash)
        if key not in best or match.distance < best[key].distance:
            best[key] = match
    return sorted(best.values(), key=_nearest_first)


def _queries(
    hashes: HashInput | HashResult, dihedral: bool
) -> dict[str, list[tuple[str | None, Hash]]]:
    """Every hash to search, by algorithm, with the variant it stands for; raises a
    HashmatchError subclass for any malformed input (never quoting a hash)."""
    if not isinstance(hashes, Mapping):
        raise HashFormatError(
            "expected a mapping of algorithm names to hashes (hex strings or Hash values),"
            f" got {type(hashes).__name__}"
        )
    if not hashes:
        raise HashFormatError("no hashes given")
    queries: dict[str, list[tuple[str | None, Hash]]] = {}
    for name, value in hashes.items():
        algorithm = get_algorithm(name).name
        values = [value] if isinstance(value, (Hash, str)) else value
        if not isinstance(values, (list, tuple)):
            raise HashFormatError(
                f"{algorithm}: expected a hex string or a Hash, got {type(value).__name__}"
            )
        if not values:
            raise HashFormatError(f"no hash given for {algorithm}")
        for item in values:
            queries.setdefault(algorithm, []).append((None, _parsed(algorithm, item)))
    if isinstance(hashes, HashResult):
        for algorithm, variants in hashes.variants.items() if dihedral else ():
            queries.setdefault(algorithm, []).extend(variants.items())
        for algorithm, edits in hashes.recovered.items():
            queries.setdefault(algorithm, []).extend(edits.items())
    return queries


def _parsed(algorithm: str, item: object) -> Hash:
    if isinstance(item, Hash):
        if item.algorithm != algorithm:
            raise HashFormatError(f"a {item.algorithm} hash given as {algorithm}")
        return item
    if isinstance(item, str):
        return Hash.from_hex(algorithm, item)
    raise HashFormatError(
        f"{algorithm}: expected a hex string or a Hash, got {type(item).__name__}"
    )


def _search(
    snapshot: LoadedIndex,
    algorithm: str,
    items: list[tuple[str | None, Hash]],
    thresholds: Mapping[str, int] | None,
) -> list[Match]:
    index = snapshot.algorithms[algorithm]
    override = thresholds.get(algorithm) if thresholds else None
    radius = override if override is not None else index.design_radius
    queries = np.frombuffer(b"".join(h.value for _, h in items), dtype=np.uint8)
    owners, rows, distances = index.searcher.search(queries.reshape(len(items), -1), radius)
    best: dict[int, tuple[int, int]] = {}  # code row -> (distance, query)
    for owner, row, distance in zip(
        owners.tolist(), rows.tolist(), distances.tolist(), strict=True
    ):
        if row not in best or distance < best[row][0]:
            best[row] = (distance, owner)
    if not best:
        return []
    code_rows = np.array(sorted(best), dtype=np.int64)
    entry_groups = index.entries_of(code_rows)
    records = snapshot.entries([int(r) for group in entry_groups for r in group.tolist()])
    matches = []
    for row, group in zip(code_rows.tolist(), entry_groups, strict=True):
        distance, owner = best[row]
        stored = index.codes[row].tobytes().hex()
        for rowid in group.tolist():
            record = records.get(rowid)
            if record is None:
                continue
            limit = (
                override if override is not None else snapshot.threshold_for(algorithm, record.list)
            )
            if distance > limit:
                continue
            matches.append(
                Match(
                    algorithm,
                    distance,
                    stored,
                    record.list,
                    record.entry_id,
                    record.label,
                    items[owner][0],
                    record.metadata,
                )
            )
    return matches
