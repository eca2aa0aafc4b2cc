"""``Matcher``: the thread-safe entry point for upload pipelines and scans.

``Matcher.open(path)`` loads the published version of an index. ``lookup`` searches given
hashes; ``match`` hashes an image (bytes, path, file or PIL image) and looks it up;
``match_many`` does that for a stream of images, hashing in worker processes and looking up
here. ``reload`` swaps to a newly published version without blocking or failing concurrent
calls: each image is hashed and searched on the one version current when it started, and the
swap is a single reference assignment. With ``reload_interval`` a background thread reloads.
The rules that turn hashes into a verdict live in :mod:`hashmatch.index.verdict`.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Iterable, Iterator, Mapping
from contextlib import nullcontext
from pathlib import Path
from typing import TYPE_CHECKING, Any

from PIL import Image

from hashmatch.batch import DeferredSource, HashJob, HashOutcome, crashed_outcome, hash_file
from hashmatch.errors import IndexFormatError, OptionError
from hashmatch.hashing import HashResult
from hashmatch.index.artifact import (
    MANIFEST,
    checked_index_path,
    current_version,
    resolve_version,
)
from hashmatch.index.loaded import LoadedIndex
from hashmatch.index.options import MatchOptions, match_options
from hashmatch.index.overlay import LiveAdditions, OverlayView
from hashmatch.index.results import Match, MatchResult
from hashmatch.index.search import single_threaded_searches
from hashmatch.index.verdict import HashInput, image_queries, search, verdict
from hashmatch.loading import ImageSource
from hashmatch.parallel import WorkerCrash, parallel_map
from hashmatch.registry import checked_thresholds, get_algorithm
from hashmatch.walking import WalkEntry

if TYPE_CHECKING:
    from typing_extensions import Unpack

    from hashmatch.index.options import MatchSwitches

__all__ = ["Match", "MatchResult", "Matcher"]

_log = logging.getLogger("hashmatch.index")

Source = ImageSource | WalkEntry | DeferredSource
"""What ``match_many`` takes: an image source, an entry of a directory walk, or a source made
in the worker that hashes it."""


class Matcher:
    """Searches one index; safe to share between threads; picks up new versions on reload."""

    def __init__(
        self,
        path: Path,
        snapshot: LoadedIndex,
        *,
        verify: bool,
        banks: LiveAdditions | None = None,
    ) -> None:
        self.path = path
        self._snapshot = snapshot
        self.banks = banks
        """What follows live banks, whose overlay every search here includes (None: none)."""
        self._pinned_overlay: OverlayView | None = None
        self._verify = verify
        self._reload_lock = threading.Lock()
        self._stop = threading.Event()
        self._watcher: threading.Thread | None = None
        self._fixed = False
        self.last_reload_error: str | None = None
        self.loaded_at = time.time()
        """When the current version was loaded (Unix time)."""

    @classmethod
    def open(
        cls,
        path: str | Path,
        *,
        reload_interval: float | None = None,
        verify: bool = True,
        banks: LiveAdditions | None = None,
    ) -> Matcher:
        """Load the published version of the index at ``path`` (or a version directory).

        ``verify`` checks every file's checksum first (about a second per GB); with
        ``reload_interval`` seconds a background thread reloads when a new version is published.
        ``banks`` (a :class:`hashmatch.banks.BankFollower`) adds live banks: their contents
        added since the build match at once, disabled ones and exclusions stop matching.
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
        snapshot = LoadedIndex(resolve_version(path), verify=verify)
        if banks is not None:
            banks.view_for(snapshot)  # the overlay for it, made before it serves
        matcher = cls(path, snapshot, verify=verify, banks=banks)
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
        if self._fixed or (self.path / MANIFEST).is_file():
            return False  # pinned, or opened as a fixed version directory
        with self._reload_lock:
            published = current_version(self.path)
            if published is None:
                raise IndexFormatError(f"{self.path}: nothing published")
            if published == self._snapshot.version:
                return False
            fresh = LoadedIndex(resolve_version(self.path), verify=self._verify)
            if self.banks is not None:
                self.banks.view_for(fresh)  # the overlay for it, made before it serves
            self._snapshot = fresh  # a single reference swap: readers never see a mix
            self.loaded_at = time.time()
            return True

    def pinned(self) -> Matcher:
        """This matcher fixed to its current version, which reloads do not change.

        For work split across steps, like a service that hashes an upload in a worker process
        and then searches: every step of one request uses the version it started on."""
        snapshot, overlay = self._current()
        view = Matcher(self.path, snapshot, verify=self._verify, banks=self.banks)
        view._fixed = True
        view._pinned_overlay = overlay
        view.loaded_at = self.loaded_at
        return view

    def _current(self) -> tuple[LoadedIndex, OverlayView | None]:
        """The version to search and the overlay view that goes with it, read once."""
        snapshot = self._snapshot
        return snapshot, self._overlay_for(snapshot)

    def _overlay_for(self, snapshot: LoadedIndex) -> OverlayView | None:
        if self._fixed:
            return self._pinned_overlay
        return self.banks.view_for(snapshot) if self.banks is not None else None

    def hash_job(
        self,
        options: MatchOptions | None = None,
        *,
        pixels_only: bool = False,
        **switches: Unpack[MatchSwitches],
    ) -> HashJob:
        """What matching an image on this version computes, for hashing it elsewhere (a
        worker process) and passing the outcome to :meth:`verdict`. ``pixels_only`` leaves
        out md5/sha256 (a PIL image has no file bytes)."""
        chosen = match_options(options, switches)
        return chosen.hash_job(_algorithms_for(self._snapshot, pixels_only, chosen))

    def info(self) -> dict[str, Any]:
        """The loaded version: when it was built and loaded, per algorithm its entries, codes,
        threshold and structure, per list its counts and thresholds."""
        snapshot = self._snapshot
        data = snapshot.manifest.data
        return {
            "version": snapshot.version,
            "created": data.get("created"),
            "loaded_at": self.loaded_at,
            "entries": data.get("entries"),
            "algorithms": {
                name: {
                    "entries": len(algorithm.entry_rows),
                    "codes": len(algorithm.codes),
                    "threshold": algorithm.threshold,
                    "searched_by": snapshot.manifest.searched_by(name),
                }
                for name, algorithm in snapshot.algorithms.items()
            },
            "lists": [
                {
                    "name": item["name"],
                    "accepted": item.get("accepted"),
                    "rejected": item.get("rejected"),
                    "excluded": item.get("excluded"),
                    "thresholds": item.get("thresholds", {}),
                }
                for item in data["lists"]
            ],
        }

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

        ``hashes`` maps algorithm names to a :class:`~hashmatch.Hash`, a hex string or a
        sequence of them (e.g. the dihedral variants); a :class:`~hashmatch.HashResult` is
        accepted as is, its variants (when ``dihedral``), recovered edits and trimmed picture
        included. ``thresholds`` overrides per algorithm.
        """
        checked = checked_thresholds(thresholds)
        snapshot, overlay = self._current()
        return search(snapshot, image_queries(hashes, dihedral), checked, overlay)

    def match(
        self,
        source: ImageSource,
        options: MatchOptions | None = None,
        **switches: Unpack[MatchSwitches],
    ) -> MatchResult:
        """Hash ``source`` with the index's algorithms (or ``algorithms``) and look it up.

        ``options`` (a :class:`MatchOptions`) or its fields as keywords: ``dihedral`` also
        matches rotations and flips; ``trim_borders`` the picture inside letterbox or padding
        borders; ``recover`` the image with a small crop or tilt undone (eight more PDQ
        hashes to look up); ``time_limit`` abandons an image that takes longer (status
        ``error``, kind ``timeout``; main thread only). md5/sha256 come from the original
        bytes. Never raises for a bad image (the result's status is then ``error``); bad
        options raise :class:`~hashmatch.OptionError` before any work.
        """
        chosen = match_options(options, switches)
        snapshot = self._snapshot  # read once: what is hashed and what is searched agree
        pixels_only = isinstance(source, Image.Image)
        job = chosen.hash_job(_algorithms_for(snapshot, pixels_only, chosen))
        outcome = hash_file(source, job)
        overlay = self._overlay_for(snapshot)  # after hashing: what was added meanwhile counts
        return verdict(snapshot, outcome, chosen.thresholds, chosen.dihedral, overlay=overlay)

    def match_many(
        self,
        sources: Iterable[Source],
        options: MatchOptions | None = None,
        *,
        workers: int = 1,
        **switches: Unpack[MatchSwitches],
    ) -> Iterator[MatchResult]:
        """Match many images, yielding results as they complete (``result.source`` says which:
        the path, or the position of a bytes, file or PIL source).

        This is what ``hashmatch scan`` runs. Decoding and hashing run in ``workers``
        processes; lookups run here, against this one loaded index, each image on the
        version current when it was sent to be hashed. Paths are the cheapest sources to
        send to workers. With ``workers`` > 1 a script must call this under
        ``if __name__ == "__main__":``, as with any multiprocessing code (the worker
        processes import the main module). A file that kills the worker hashing it, twice,
        becomes an ``error`` result of kind ``crashed``; workers that keep dying raise
        :class:`~hashmatch.WorkerError`.
        """
        chosen = match_options(options, switches)
        if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
            raise OptionError(f"workers must be a whole number >= 1, got {workers!r}")
        if not isinstance(sources, Iterable) or isinstance(sources, (str, bytes, Image.Image)):
            raise OptionError(
                "sources must be an iterable of images (paths, bytes, files, PIL images),"
                f" got {type(sources).__name__}"
            )
        return self._match_stream(sources, chosen, workers)

    def _match_stream(
        self, sources: Iterable[Source], options: MatchOptions, workers: int
    ) -> Iterator[MatchResult]:
        in_flight: dict[int, tuple[Any, LoadedIndex]] = {}
        jobs: dict[tuple[str, bool], HashJob] = {}

        def tasks() -> Iterator[tuple[int, Source, HashJob]]:
            for number, source in enumerate(sources):
                snapshot = self._snapshot  # this image is hashed and searched on it
                key = (snapshot.version, isinstance(source, Image.Image))
                if key not in jobs:
                    if any(version != snapshot.version for version, _ in jobs):
                        jobs.clear()  # a reload: the old version's jobs are done with
                    jobs[key] = options.hash_job(_algorithms_for(snapshot, key[1], options))
                in_flight[number] = (_label(number, source), snapshot)
                # the source travels to the worker; its hashes travel back
                yield number, source, jobs[key]

        hashed = parallel_map(
            _hash_task,
            tasks(),
            workers=workers,
            crashed=_crashed_task,
            time_limit=options.time_limit,
        )
        for number, outcome in hashed:
            label, snapshot = in_flight.pop(number)
            overlay = self._overlay_for(snapshot)
            # the workers have the cores: this thread's searches take no more than one
            with single_threaded_searches() if workers > 1 else nullcontext():
                result = verdict(
                    snapshot, outcome, options.thresholds, options.dihedral, label, overlay
                )
            yield result

    def verdict(
        self,
        result: HashResult | HashOutcome,
        options: MatchOptions | None = None,
        **switches: Unpack[MatchSwitches],
    ) -> MatchResult:
        """Look up already computed hashes and decide their status; a failed
        :class:`~hashmatch.batch.HashOutcome` becomes an ``error`` result. Of the options,
        ``thresholds`` and ``dihedral`` apply (the rest say how to hash)."""
        chosen = match_options(options, switches)
        outcome = result if isinstance(result, HashOutcome) else HashOutcome(None, result)
        snapshot, overlay = self._current()
        return verdict(snapshot, outcome, chosen.thresholds, chosen.dihedral, overlay=overlay)

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


def _algorithms_for(
    snapshot: LoadedIndex, pixels_only: bool, options: MatchOptions
) -> tuple[str, ...]:
    """The options' algorithms, else the index's less md5/sha256 when there are only pixels
    (a PIL image has no file bytes)."""
    if options.algorithms is not None:
        return tuple(options.algorithms)
    names = tuple(snapshot.algorithms)
    if pixels_only:
        names = tuple(n for n in names if get_algorithm(n).needs_pixels) or names
    return names


def _label(number: int, source: Source) -> str | int:
    """How a result names its source: the path, else its position in the stream (bytes,
    files, PIL images, deferred sources)."""
    if isinstance(source, WalkEntry):
        return source.path
    return os.fspath(source) if isinstance(source, (str, os.PathLike)) else number


def _hash_task(task: tuple[int, Source, HashJob]) -> tuple[int, HashOutcome]:
    number, source, job = task
    return number, hash_file(source, job)


def _crashed_task(task: tuple[int, Source, HashJob], crash: WorkerCrash) -> tuple[int, HashOutcome]:
    number, source, _ = task
    return number, crashed_outcome(source, crash)
