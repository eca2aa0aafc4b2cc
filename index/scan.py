"""Scanning many images against an index: decode and hash in worker processes, match here.

The index is loaded once, in this process: workers only turn files into hashes (the CPU-bound
part), and every lookup runs against the one Matcher, so memory does not grow with workers.
Results come back as files finish; a bad file becomes an ``error`` result, never an exception.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field

from hashmatch.batch import describe_error
from hashmatch.errors import HashmatchError
from hashmatch.hashing import HashResult, hash_image
from hashmatch.index.matcher import Matcher, MatchResult
from hashmatch.loading import DEFAULT_LIMITS, ImageLimits, ImageSource
from hashmatch.parallel import parallel_map
from hashmatch.walking import WalkEntry

__all__ = ["ScanOptions", "scan_sources"]


@dataclass(frozen=True)
class ScanOptions:
    algorithms: tuple[str, ...] | None = None
    """None: every algorithm the index holds."""
    thresholds: Mapping[str, int] = field(default_factory=dict)
    dihedral: bool = True
    exact: bool = False
    limits: ImageLimits = DEFAULT_LIMITS
    workers: int = 1
    trim_borders: bool = True


@dataclass(frozen=True)
class _Job:
    source: ImageSource | WalkEntry
    algorithms: tuple[str, ...]
    dihedral: bool
    exact: bool
    limits: ImageLimits
    trim_borders: bool


def _hash_job(job: _Job) -> HashResult | str:
    """Runs in a worker: the hashes, or the error text."""
    source = job.source
    if isinstance(source, WalkEntry):
        if source.error is not None:
            return f"read: {source.error}"
        source = source.path
    try:
        return hash_image(
            source,
            job.algorithms,
            exact=job.exact,
            dihedral=job.dihedral,
            trim_borders=job.trim_borders,
            limits=job.limits,
        )
    except HashmatchError as exc:
        return describe_error(exc)
    except Exception as exc:  # a bug; one file must not end a scan of millions
        return describe_error(exc)


def _algorithms_for(matcher: Matcher, options: ScanOptions) -> tuple[str, ...]:
    return tuple(options.algorithms) if options.algorithms else tuple(matcher.algorithms)


def scan_sources(
    matcher: Matcher,
    sources: Iterable[ImageSource | WalkEntry],
    options: ScanOptions = ScanOptions(),
) -> Iterator[tuple[int, ImageSource | WalkEntry, MatchResult]]:
    """``(position, source, result)`` for every source, as they finish (in order with one
    worker); ``position`` counts the sources from 0."""
    algorithms = _algorithms_for(matcher, options)
    in_flight: dict[int, ImageSource | WalkEntry] = {}

    def jobs() -> Iterator[tuple[int, _Job]]:
        for number, source in enumerate(sources):
            in_flight[number] = source
            # a path travels to the worker; the result travels back; the source stays here
            yield (
                number,
                _Job(
                    source,
                    algorithms,
                    options.dihedral,
                    options.exact,
                    options.limits,
                    options.trim_borders,
                ),
            )

    for number, outcome in parallel_map(_numbered_hash_job, jobs(), workers=options.workers):
        source = in_flight.pop(number)
        if isinstance(outcome, str):
            yield number, source, MatchResult("error", error=outcome, index_version=matcher.version)
        else:
            verdict = matcher.verdict(
                outcome, thresholds=options.thresholds, dihedral=options.dihedral
            )
            yield number, source, verdict


def _numbered_hash_job(task: tuple[int, _Job]) -> tuple[int, HashResult | str]:
    number, job = task
    return number, _hash_job(job)
