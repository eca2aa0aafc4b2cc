"""Hashing many files: one outcome per file, failures captured as values, never raised.

This is what ``hashmatch hash`` runs; other batch jobs (scans, index builds from images) reuse
:func:`hash_file`'s error capture so every command reports a bad file the same way.
"""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from hashmatch.deadline import DeadlineExceeded, deadline
from hashmatch.errors import (
    HashmatchError,
    ImageError,
    ImageReadError,
    ImageTimeoutError,
    OptionError,
)
from hashmatch.hashing import HashResult, hash_image
from hashmatch.loading import DEFAULT_LIMITS, ImageLimits, ImageSource
from hashmatch.parallel import WorkerCrash, parallel_map, picklable
from hashmatch.registry import DEFAULT_ALGORITHMS, resolve_algorithms
from hashmatch.walking import WalkEntry

__all__ = [
    "DeferredSource",
    "HashJob",
    "HashOutcome",
    "HashTask",
    "crashed_outcome",
    "crashed_task",
    "failed_outcome",
    "hash_file",
    "hash_files",
    "hash_task",
]


@dataclass(frozen=True)
class HashJob:
    """What to compute for every file of a batch."""

    algorithms: tuple[str, ...] = DEFAULT_ALGORITHMS
    exact: bool = False
    dihedral: bool = False
    limits: ImageLimits = DEFAULT_LIMITS
    trim_borders: bool = False
    recover: bool = False
    """Also hash the image with a small crop or tilt undone (:mod:`hashmatch.recovery`)."""
    time_limit: float | None = None
    """Seconds one file may take before it is abandoned as a ``timeout`` error; applied where
    :func:`~hashmatch.deadline.deadline_supported` (worker processes, the main thread)."""

    def __post_init__(self) -> None:
        """Options are the caller's: wrong ones raise here, before any file is touched."""
        names = tuple(a.name for a in resolve_algorithms(self.algorithms))
        object.__setattr__(self, "algorithms", names)  # canonical names, frozen otherwise
        if not isinstance(self.limits, ImageLimits):
            raise OptionError(f"limits must be ImageLimits, got {type(self.limits).__name__}")
        limit = self.time_limit
        if limit is not None and (
            isinstance(limit, bool) or not isinstance(limit, (int, float)) or not limit >= 0
        ):
            raise OptionError(f"time_limit must be seconds >= 0 or None, got {limit!r}")


class DeferredSource(ABC):
    """A source whose image is made where it is hashed (in a batch worker): an edit of a
    file, say, so that only a small recipe crosses the process boundary, not the pixels."""

    @abstractmethod
    def load(self) -> ImageSource:
        """The image; raises an ImageError subclass when it cannot be made."""


@dataclass(frozen=True)
class HashOutcome:
    """The hashes of one file, or why there are none (the failure's kind and message, and the
    exception itself where one was raised)."""

    path: str | None
    """The file, when the source was a path (None for bytes, file objects, PIL images)."""
    result: HashResult | None
    error_kind: str | None = None
    """Why there is no result, as a short stable label: those of
    :class:`~hashmatch.ImageError` (``read``, ``decode``, ``too_large``, ``unsupported``,
    ``timeout``), ``crashed`` (the file killed the worker process hashing it, twice),
    ``error`` (another HashmatchError) and ``internal`` (a bug). None on success."""
    error_message: str | None = None
    """What went wrong, without the path (records carry it separately)."""
    exception: BaseException | None = field(default=None, compare=False, repr=False)
    """The exception behind the failure, when there was one (not for a crash)."""

    @property
    def error(self) -> str | None:
        """``kind: message``, e.g. ``decode: image file is truncated``, as reports print it."""
        return None if self.error_kind is None else f"{self.error_kind}: {self.error_message}"

    def __getstate__(self) -> dict[str, object]:
        """What crosses a process boundary: the exception only if it survives pickling."""
        state = dict(self.__dict__)
        if state["exception"] is not None and not picklable(state["exception"]):
            state["exception"] = None
        return state

    def __setstate__(self, state: dict[str, object]) -> None:
        self.__dict__.update(state)


def failed_outcome(path: str | None, exc: BaseException) -> HashOutcome:
    """The outcome of a file whose hashing raised ``exc``."""
    kind, message = _kind_and_message(exc)
    return HashOutcome(path, None, kind, message, exc)


def _kind_and_message(exc: BaseException) -> tuple[str, str]:
    if isinstance(exc, ImageError):
        return exc.kind, exc.reason
    if isinstance(exc, HashmatchError):
        return "error", str(exc)
    return "internal", f"{type(exc).__name__}: {exc}"


def crashed_outcome(
    source: ImageSource | WalkEntry | DeferredSource, crash: WorkerCrash
) -> HashOutcome:
    """The outcome of a file that killed the worker processes hashing it (or that ran past its
    time limit in code the worker's timer could not interrupt, so the pool killed it)."""
    path = _path_of(source)
    if crash.overran is not None:
        return failed_outcome(path, ImageTimeoutError(path or "<image>", str(crash)))
    return HashOutcome(path, None, "crashed", str(crash))


def _path_of(source: ImageSource | WalkEntry | DeferredSource) -> str | None:
    if isinstance(source, WalkEntry):
        return source.path
    return os.fspath(source) if isinstance(source, (str, os.PathLike)) else None


def hash_file(source: ImageSource | WalkEntry | DeferredSource, job: HashJob) -> HashOutcome:
    """Hash one source (or walk entry); any failure becomes the outcome's error.

    Every batch job (``hashmatch hash``, scans, ``Matcher.match``) hashes through here, so a
    bad file is reported the same way everywhere.
    """
    path = _path_of(source)
    if isinstance(source, WalkEntry):
        if source.error is not None:
            return failed_outcome(path, ImageReadError(source.path, source.error))
        source = source.path
    try:
        with deadline(job.time_limit):
            if isinstance(source, DeferredSource):
                source = source.load()
            result = hash_image(
                source,
                job.algorithms,
                exact=job.exact,
                dihedral=job.dihedral,
                trim_borders=job.trim_borders,
                recover=job.recover,
                limits=job.limits,
            )
    except DeadlineExceeded as exc:
        return failed_outcome(path, ImageTimeoutError(path or "<image>", str(exc)))
    except Exception as exc:  # HashmatchError, or a bug: one file must not end a batch
        return failed_outcome(path, exc)
    return HashOutcome(path, result)


HashTask = tuple[ImageSource | WalkEntry | DeferredSource, HashJob]
"""One source and what to compute: what worker pools hashing files are given."""


def hash_task(task: HashTask) -> HashOutcome:
    """:func:`hash_file` on a task: the function a worker pool runs."""
    return hash_file(*task)


def crashed_task(task: HashTask, crash: WorkerCrash) -> HashOutcome:
    """The outcome of a task whose worker died on it (a pool's ``crashed``)."""
    return crashed_outcome(task[0], crash)


def hash_files(
    items: Iterable[str | WalkEntry],
    job: HashJob = HashJob(),
    *,
    workers: int = 1,
    ordered: bool = True,
) -> Iterator[HashOutcome]:
    """Hash every path, yielding outcomes in input order (or as they finish if not ``ordered``).

    ``items`` may come straight from :func:`~hashmatch.walking.walk_images`: entries that
    carry a walk error become error outcomes; skipped entries must be filtered out first. A
    file that kills its worker twice becomes a ``crashed`` outcome; workers that keep dying
    raise :class:`~hashmatch.WorkerError`.
    """
    tasks = ((item, job) for item in items)
    return parallel_map(
        hash_task,
        tasks,
        workers=workers,
        ordered=ordered,
        crashed=crashed_task,
        time_limit=job.time_limit,
    )
