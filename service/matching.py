"""Matching and hashing uploads for any route: options from query parameters, hashing in the
pool, the verdict on the request's pinned version, and the HTTP status of a failed image.
"""

from __future__ import annotations

from collections.abc import Sequence

from hashmatch.batch import HashJob, HashOutcome
from hashmatch.errors import HashmatchError
from hashmatch.index.matcher import Matcher
from hashmatch.index.options import MatchOptions
from hashmatch.index.results import MatchResult
from hashmatch.service.config import ServiceConfig
from hashmatch.service.state import ServiceError, ServiceState
from hashmatch.service.uploads import ServerBusy, Upload

__all__ = [
    "error_status",
    "hash_upload",
    "match_options_from_query",
    "match_upload",
    "parse_thresholds",
]

_ERROR_STATUS = {
    "too_large": 413,
    "timeout": 422,
    "crashed": 422,
    "internal": 500,
}
"""A failed image's HTTP status by error kind; any other kind (read, decode, unsupported,
error) is the client's image: 400."""


def error_status(kind: str | None) -> int:
    return 200 if kind is None else _ERROR_STATUS.get(kind, 400)


def parse_thresholds(values: Sequence[str] | None) -> dict[str, int]:
    """``["pdq:20", "phash:8"]`` (or ``pdq:20,phash:8``; ``pdq=20`` as the CLI spells it)
    as a mapping; 400 when malformed."""
    thresholds: dict[str, int] = {}
    for value in values or ():
        for item in value.split(","):
            name, separator, number = item.replace("=", ":").partition(":")
            if not separator or not number.strip().isdigit():
                raise ServiceError(
                    400, f"threshold must be ALGORITHM:DISTANCE, e.g. pdq:20 (got {item!r})"
                )
            thresholds[name.strip().lower()] = int(number)
    return thresholds


def match_options_from_query(
    config: ServiceConfig,
    *,
    algorithms: str | None = None,
    threshold: Sequence[str] | None = None,
    dihedral: bool = True,
    trim_borders: bool = True,
    recover: bool = False,
    exact: bool = False,
) -> MatchOptions:
    """The options a request asks for, within the server's limits; 400 when invalid."""
    try:
        return MatchOptions(
            algorithms=algorithms or None,
            thresholds=parse_thresholds(threshold),
            dihedral=dihedral,
            trim_borders=trim_borders,
            recover=recover,
            exact=exact,
            limits=config.limits,
            time_limit=config.time_limit,
        )
    except HashmatchError as exc:
        raise ServiceError(400, str(exc)) from None


async def hash_upload(state: ServiceState, upload: Upload, job: HashJob) -> HashOutcome:
    """The upload's hashes from a hashing process; 503 when all are busy and many wait."""
    try:
        return await state.hasher.hash(upload, job)
    except ServerBusy as exc:
        raise ServiceError(503, f"busy, try again: {exc}") from None


async def match_upload(
    state: ServiceState, matcher: Matcher, upload: Upload, options: MatchOptions
) -> MatchResult:
    """Hash ``upload`` for ``matcher``'s version and decide its verdict on that version."""
    outcome = await hash_upload(state, upload, matcher.hash_job(options))
    # searched here, on the event loop: at 10M entries it takes about 3 ms, and sending it to
    # a thread measured about 10% slower (the thread hop and the GIL cost more than it saves)
    result = matcher.verdict(outcome, options)
    state.metrics.observe_result(result)
    return result
