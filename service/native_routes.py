"""The native API under ``/v1``: what HMA's routes cannot say.

``/v1/match`` and ``/v1/match/batch`` take image bytes and answer the library's
:class:`~hashmatch.MatchResult` as JSON (``MatchResult.to_json``; the client reads it back
with ``from_json``); ``/v1/lookup`` answers many hash queries in one call; ``/v1/hash``
hashes; ``/v1/index`` describes the served version. Matching switches are query
parameters, named as :class:`~hashmatch.MatchOptions` names them.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from hashmatch.errors import HashmatchError
from hashmatch.index.options import MatchOptions
from hashmatch.registry import resolve_algorithms
from hashmatch.service.bodies import image_uploads
from hashmatch.service.matching import (
    error_status,
    hash_upload,
    match_options_from_query,
    match_upload,
)
from hashmatch.service.metrics import bank_stats, served_snapshot
from hashmatch.service.request_log import MATCH_COUNT_KEY
from hashmatch.service.state import ServiceError, service_state

__all__ = ["LookupRequest", "router"]

router = APIRouter(prefix="/v1", tags=["native"])

_IMAGE_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "image/*": {"schema": {"type": "string", "format": "binary"}},
            "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "properties": {"file": {"type": "string", "format": "binary"}},
                }
            },
        },
    }
}

Algorithms = Annotated[
    str | None, Query(description="Comma-separated algorithms (default: the index's).")
]
Thresholds = Annotated[
    list[str] | None,
    Query(description="Per-call distance, ALGORITHM:N (repeatable or comma-separated)."),
]
Dihedral = Annotated[bool, Query(description="Also match rotations and flips.")]
TrimBorders = Annotated[bool, Query(description="Also match the picture inside borders.")]
Recover = Annotated[bool, Query(description="Also match with a small crop or tilt undone.")]
Exact = Annotated[bool, Query(description="Hash full-resolution pixels (slower).")]
WithHashes = Annotated[bool, Query(description="Return the computed hashes too.")]


@dataclass(frozen=True)
class MatchQuery:
    """A matching route's query: the options, and whether to return the hashes."""

    options: MatchOptions
    with_hashes: bool


def match_query(
    request: Request,
    algorithms: Algorithms = None,
    threshold: Thresholds = None,
    dihedral: Dihedral = True,
    trim_borders: TrimBorders = True,
    recover: Recover = False,
    exact: Exact = False,
    hashes: WithHashes = False,
) -> MatchQuery:
    """The switches of ``/v1/match`` and ``/v1/match/batch``, declared once."""
    options = match_options_from_query(
        service_state(request).config,
        algorithms=algorithms,
        threshold=threshold,
        dihedral=dihedral,
        trim_borders=trim_borders,
        recover=recover,
        exact=exact,
    )
    return MatchQuery(options, hashes)


Switches = Annotated[MatchQuery, Depends(match_query)]


@router.post("/match", openapi_extra=_IMAGE_BODY)
async def match_image(request: Request, query: Switches) -> JSONResponse:
    """Match one image (the body, or one multipart file): the MatchResult as JSON. A failed
    image answers 4xx with the same body, its ``error`` saying what was wrong."""
    state = service_state(request)
    matcher = state.matcher()
    (upload,) = await image_uploads(request, max_files=1)
    result = await match_upload(state, matcher, upload, query.options)
    setattr(request.state, MATCH_COUNT_KEY, len(result.matches))
    body = result.to_json(with_hashes=query.with_hashes)
    if result.error_kind is not None:
        body["message"] = result.error
    return JSONResponse(body, status_code=error_status(result.error_kind))


@router.post("/match/batch", openapi_extra=_IMAGE_BODY)
async def match_batch(request: Request, query: Switches) -> dict[str, Any]:
    """Match every file of a multipart request: ``{"results": [...]}``, one MatchResult per
    file in the order sent (each with its ``name``); a bad image fails only its own result."""
    state = service_state(request)
    matcher = state.matcher()
    uploads = await image_uploads(request, max_files=state.config.max_batch)
    results = await asyncio.gather(
        *(match_upload(state, matcher, upload, query.options) for upload in uploads)
    )
    setattr(request.state, MATCH_COUNT_KEY, sum(len(r.matches) for r in results))
    answers = [
        {"name": upload.name, **result.to_json(with_hashes=query.with_hashes)}
        for upload, result in zip(uploads, results, strict=True)
    ]
    return {"index_version": matcher.version, "results": answers}


class LookupRequest(BaseModel):
    queries: list[dict[str, str | list[str]]] = Field(
        description="One object per query: algorithm name -> a hex hash, or a list of them"
        " (an image's dihedral variants, as /v1/hash?dihedral=true gives them)."
    )
    thresholds: dict[str, int] | None = Field(
        default=None, description="Per-call distances by algorithm."
    )
    dihedral: bool = Field(
        default=True,
        description="Search every hash a query lists; false: only the first of each list.",
    )


@router.post("/lookup")
async def lookup_hashes(request: Request, body: LookupRequest) -> dict[str, Any]:
    """Look up many hash queries: ``{"results": [{"status", "matches"}...]}`` in order."""
    state = service_state(request)
    if len(body.queries) > state.config.max_queries:
        raise ServiceError(
            413, f"at most {state.config.max_queries} queries per request (--max-queries)"
        )
    matcher = state.matcher()
    thresholds = body.thresholds or {}

    def run() -> list[dict[str, Any]]:
        answers = []
        for number, query in enumerate(body.queries):
            if not query:
                raise ServiceError(400, f"queries[{number}]: no hash given")
            if not body.dihedral:
                query = {
                    name: value[:1] if isinstance(value, list) else value
                    for name, value in query.items()
                }
            try:
                found = matcher.lookup(query, thresholds=thresholds)
            except HashmatchError as exc:
                raise ServiceError(400, f"queries[{number}]: {exc}") from None
            answers.append(
                {
                    "status": "match" if found else "no_match",
                    "matches": [match.to_json() for match in found],
                }
            )
        return answers

    results = await run_in_threadpool(run) if len(body.queries) > 8 else run()
    setattr(request.state, MATCH_COUNT_KEY, sum(len(r["matches"]) for r in results))
    return {"index_version": matcher.version, "results": results}


@router.post("/hash", openapi_extra=_IMAGE_BODY)
async def hash_image(
    request: Request,
    algorithms: Algorithms = None,
    dihedral: Annotated[bool, Query(description="Also return the PDQ rotations.")] = False,
) -> JSONResponse:
    """Hash an image: ``{"hashes": {algorithm: hex}, "quality", "width", "height"}``
    (default algorithms: the index's, or PDQ while none is loaded)."""
    state = service_state(request)
    matcher = state.watch.matcher
    try:
        if algorithms:
            names = tuple(a.name for a in resolve_algorithms(algorithms))
        else:
            names = tuple(matcher.algorithms) if matcher is not None else ("pdq",)
        options = match_options_from_query(state.config, algorithms=",".join(names))
    except HashmatchError as exc:
        raise ServiceError(400, str(exc)) from None
    job = options.hash_job(names)
    (upload,) = await image_uploads(request, max_files=1)
    outcome = await hash_upload(state, upload, job)
    if outcome.result is None:
        if outcome.error_kind is not None:
            state.metrics.upload_errors.labels(outcome.error_kind).inc()
        return JSONResponse(
            {
                "message": outcome.error,
                "error": {"kind": outcome.error_kind, "message": outcome.error_message},
            },
            status_code=error_status(outcome.error_kind),
        )
    hashed = outcome.result
    body: dict[str, Any] = {
        "hashes": {name: value.hex for name, value in hashed.hashes.items()},
        "quality": hashed.pdq_quality,
        "width": hashed.width,
        "height": hashed.height,
    }
    if dihedral and hashed.variants:
        body["variants"] = {
            name: {variant: value.hex for variant, value in variants.items()}
            for name, variants in hashed.variants.items()
        }
    return JSONResponse(body)


@router.get("/index")
async def index_info(request: Request) -> dict[str, Any]:
    """The served version: build and load times, per algorithm entries and thresholds, per
    list counts, the state of reload checks, and the banks against it (records not yet
    folded in, the overlay's size)."""
    state = service_state(request)
    matcher = state.matcher()
    status = state.watch.status
    age = state.watch.seconds_since_success()
    state.banks.poll()
    return {
        **matcher.info(),
        "banks": bank_stats(state.banks, served_snapshot(matcher)),
        "reload": {
            "interval": state.config.reload_interval,
            "seconds_since_check": None if age is None else round(age, 3),
            "last_error": status.last_error,
            "reloads": status.reloads,
            "failures": status.failures,
            "load_seconds": status.load_seconds,
        },
        "server_time": time.time(),
    }
