"""Hashing many files: one outcome per file, failures captured as values, never raised.

This is what ``hashmatch hash`` runs; other batch jobs (scans, index builds from images) reuse
:func:`hash_file`'s error capture so every command reports a bad file the same way.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from hashmatch.errors import HashmatchError, ImageError
from hashmatch.hashing import HashResult, hash_image
from hashmatch.loading import DEFAULT_LIMITS, ImageLimits
from hashmatch.parallel import parallel_map
from hashmatch.walking import WalkEntry

__all__ = ["HashJob", "HashOutcome", "describe_error", "hash_file", "hash_files"]


@dataclass(frozen=True)
class HashJob:
    """What to compute for every file of a batch."""

    algorithms: tuple[str, ...] = ("pdq",)
    exact: bool = False
    dihedral: bool = False
    limits: ImageLimits = DEFAULT_LIMITS


@dataclass(frozen=True)
class HashOutcome:
    """The hashes of one file, or why there are none."""

    path: str
    result: HashResult | None
    error: str | None = None
    """``kind: reason``, e.g. ``decode: image file is truncated``; None on success."""


def describe_error(exc: BaseException) -> str:
    """``kind: reason`` for reports, without the path (records carry it separately)."""
    if isinstance(exc, ImageError):
        return f"{exc.kind}: {exc.reason}"
    if isinstance(exc, HashmatchError):
        return f"error: {exc}"
    return f"internal: {type(exc).__name__}: {exc}"


def hash_file(path: str, job: HashJob) -> HashOutcome:
    """Hash one file; any failure becomes the outcome's ``error``."""
    try:
        result = hash_image(
            path, job.algorithms, exact=job.exact, dihedral=job.dihedral, limits=job.limits
        )
    except HashmatchError as exc:
        return HashOutcome(path, None, describe_error(exc))
    except Exception as exc:  # a bug, but one file must not end a batch of millions
        return HashOutcome(path, None, describe_error(exc))
    return HashOutcome(path, result)


def _hash_task(task: tuple[str | WalkEntry, HashJob]) -> HashOutcome:
    item, job = task
    if isinstance(item, WalkEntry):
        if item.error is not None:
            return HashOutcome(item.path, None, f"read: {item.error}")
        item = item.path
    return hash_file(item, job)


def hash_files(
    items: Iterable[str | WalkEntry],
    job: HashJob = HashJob(),
    *,
    workers: int = 1,
    ordered: bool = True,
) -> Iterator[HashOutcome]:
    """Hash every path, yielding outcomes in input order (or as they finish if not ``ordered``).

    ``items`` may come straight from :func:`~hashmatch.walking.walk_images`: entries that
    carry a walk error become error outcomes; skipped entries must be filtered out first.
    """
    tasks = ((item, job) for item in items)
    return parallel_map(_hash_task, tasks, workers=workers, ordered=ordered)
