"""Scanning many images against an index: decode and hash in worker processes, match here.

The index is loaded once, in this process: workers only turn files into hashes (the CPU-bound
part), and every lookup runs against the one Matcher, so memory does not grow with workers.
Results come back as files finish; a bad file becomes an ``error`` result, never an exception.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field

from hashmatch.batch import HashJob, HashOutcome, crashed_outcome, hash_file
from hashmatch.index.matcher import Matcher, MatchResult
from hashmatch.loading import DEFAULT_LIMITS, ImageLimits, ImageSource
from hashmatch.parallel import WorkerCrash, parallel_map
from hashmatch.walking import WalkEntry

__all__ = ["ScanOptions", "scan_sources"]


@dataclass(frozen=True)
class ScanOptions:
    algorithms: tuple[str, ...] | None = None
    """None: every algorithm the index holds (that applies to the source)."""
    thresholds: Mapping[str, int] = field(default_factory=dict)
    dihedral: bool = True
    exact: bool = False
    limits: ImageLimits = DEFAULT_LIMITS
    workers: int = 1
    trim_borders: bool = True
    recover: bool = False
    time_limit: float | None = None
    """Seconds one file may take to decode and hash before it becomes a ``timeout`` error."""


def scan_sources(
    matcher: Matcher,
    sources: Iterable[ImageSource | WalkEntry],
    options: ScanOptions = ScanOptions(),
) -> Iterator[tuple[int, ImageSource | WalkEntry, MatchResult]]:
    """``(position, source, result)`` for every source, as they finish (in order with one
    worker); ``position`` counts the sources from 0."""
    in_flight: dict[int, ImageSource | WalkEntry] = {}

    def jobs() -> Iterator[tuple[int, ImageSource | WalkEntry, HashJob]]:
        for number, source in enumerate(sources):
            in_flight[number] = source
            job = matcher.hash_job(
                source,
                algorithms=options.algorithms,
                dihedral=options.dihedral,
                trim_borders=options.trim_borders,
                recover=options.recover,
                time_limit=options.time_limit,
                exact=options.exact,
                limits=options.limits,
            )
            # a path travels to the worker; the result travels back; the source stays here
            yield number, source, job

    hashed = parallel_map(_numbered_hash, jobs(), workers=options.workers, crashed=_numbered_crash)
    for number, outcome in hashed:
        source = in_flight.pop(number)
        yield (
            number,
            source,
            matcher.verdict(outcome, thresholds=options.thresholds, dihedral=options.dihedral),
        )


def _numbered_hash(task: tuple[int, ImageSource | WalkEntry, HashJob]) -> tuple[int, HashOutcome]:
    number, source, job = task
    return number, hash_file(source, job)


def _numbered_crash(
    task: tuple[int, ImageSource | WalkEntry, HashJob], crash: WorkerCrash
) -> tuple[int, HashOutcome]:
    number, source, _ = task
    return number, crashed_outcome(source, crash)
