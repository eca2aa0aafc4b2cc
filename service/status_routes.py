"""Health, readiness and metrics: what load balancers, HMA's health checks and Prometheus call.

``/status`` answers HMA's exact strings, which clients parse: ``I-AM-ALIVE`` (200), or 503
``INDEX-NOT-LOADED`` before an index is loaded and ``INDEX-STALE`` when no check of the
index succeeded for ``--stale-after`` seconds. ``/readyz`` says the same in JSON for a load
balancer; ``/healthz`` and ``/status/live`` only that the process answers.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response

from hashmatch.service.state import service_state

__all__ = ["router"]

router = APIRouter(tags=["status"])

ALIVE = "I-AM-ALIVE"
NOT_LOADED = "INDEX-NOT-LOADED"
STALE = "INDEX-STALE"


def _html_text(text: str, status: int = 200) -> Response:
    # HMA (Flask) answers these as text/html; clients compare the body only
    return PlainTextResponse(text, status_code=status, media_type="text/html")


@router.get("/status", response_class=PlainTextResponse)
async def status(request: Request) -> Response:
    """``I-AM-ALIVE`` when an index is loaded and fresh; else 503 with why."""
    state = service_state(request)
    if state.watch.matcher is None:
        return _html_text(NOT_LOADED, 503)
    if not state.watch.fresh():
        return _html_text(STALE, 503)
    return _html_text(ALIVE)


@router.get("/status/live", response_class=PlainTextResponse)
async def status_live() -> Response:
    """Always ``I-AM-ALIVE``: the process answers."""
    return _html_text(ALIVE)


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    """The process answers (liveness)."""
    return {"status": "alive"}


@router.get("/readyz")
async def readyz(request: Request) -> JSONResponse:
    """200 when an index is loaded and the last successful check is recent; else 503 with
    the reason (a load balancer sends traffic elsewhere meanwhile)."""
    state = service_state(request)
    watch = state.watch
    age = watch.seconds_since_success()
    body: dict[str, Any] = {
        "ready": watch.fresh(),
        "index_version": None if watch.matcher is None else watch.matcher.version,
        "seconds_since_check": None if age is None else round(age, 3),
        "last_error": watch.status.last_error,
    }
    if watch.matcher is None:
        body["reason"] = "no index loaded yet"
    elif not watch.fresh():
        body["reason"] = f"no successful index check for {state.config.stale_after:g} s"
    return JSONResponse(body, status_code=200 if body["ready"] else 503)


@router.get("/site-map")
async def site_map(request: Request) -> list[str]:
    """Every route's path, sorted (as HMA lists its rules)."""
    return [path for path, _ in request.app.state.routes]


@router.get("/metrics", response_class=PlainTextResponse)
async def metrics(request: Request) -> Response:
    """Prometheus text: requests, latency, matches, errors, the index and its reloads."""
    body, content_type = service_state(request).metrics.render()
    return Response(body, media_type=content_type)
