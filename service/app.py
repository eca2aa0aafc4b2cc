"""``create_app(config)``: the FastAPI application one server process runs.

Routers: :mod:`~hashmatch.service.status_routes` (health, readiness, metrics),
:mod:`~hashmatch.service.hma_routes` (HMA's matching API, same shapes) and
:mod:`~hashmatch.service.native_routes` (``/v1``). Middleware, outermost first: the request
log (request id, one line, request metrics), authentication, the body limits. The lifespan
loads the index and starts the hashing processes (:class:`ServiceState`); errors become
``{"message": ...}`` bodies here, in one place.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import APIRouter, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

import hashmatch
from hashmatch.service import bank_routes, hma_curation, hma_routes, native_routes, status_routes
from hashmatch.service.auth import AuthMiddleware
from hashmatch.service.config import ServiceConfig
from hashmatch.service.limits import BodyLimitMiddleware, BodyStalled, BodyTooLarge
from hashmatch.service.metrics import ServiceMetrics
from hashmatch.service.request_log import RequestLogMiddleware
from hashmatch.service.state import ServiceError, ServiceState

__all__ = ["create_app", "route_table"]

_log = logging.getLogger("hashmatch.service")


def create_app(config: ServiceConfig) -> FastAPI:
    """The application for ``config``; its lifespan loads the index and starts the hashing
    processes, and stops them at shutdown."""
    metrics = ServiceMetrics()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        state = ServiceState.start(config, metrics)
        app.state.service = state
        try:
            yield
        finally:
            app.state.service = None
            state.stop()

    app = FastAPI(
        title="hashmatch",
        version=hashmatch.__version__,
        summary="Known-image hash matching; HMA-compatible matching API plus /v1.",
        lifespan=lifespan,
        docs_url="/docs",
        redoc_url=None,
        openapi_url="/openapi.json",
    )
    app.state.service = None
    routers = (
        status_routes.router,
        hma_routes.router,
        hma_curation.router,
        native_routes.router,
        bank_routes.router,
    )
    for router in routers:
        app.include_router(router)
    app.state.routes = route_table(app, routers)
    _install_error_handlers(app)

    def current_tokens() -> Any:
        state = app.state.service
        return None if state is None else state.tokens

    app.add_middleware(
        BodyLimitMiddleware, max_bytes=config.max_upload_bytes, body_timeout=config.body_timeout
    )
    app.add_middleware(AuthMiddleware, tokens=current_tokens, public_metrics=config.public_metrics)
    app.add_middleware(RequestLogMiddleware, metrics=lambda: metrics)
    return app


def route_table(app: FastAPI, routers: tuple[APIRouter, ...]) -> list[tuple[str, list[str]]]:
    """Every (path, methods) the app answers, sorted: for ``/site-map`` and the test that
    no route is left open by mistake (FastAPI keeps included routes out of ``app.routes``)."""
    table: dict[str, set[str]] = {}
    for route in [*app.routes, *(r for router in routers for r in router.routes)]:
        path = getattr(route, "path", None)
        if isinstance(path, str) and path:
            table.setdefault(path, set()).update(getattr(route, "methods", None) or {"GET"})
    return sorted((path, sorted(methods)) for path, methods in table.items())


def _message(
    status: int, message: str, headers: dict[str, str] | None = None, **extra: Any
) -> JSONResponse:
    return JSONResponse({"message": message, **extra}, status_code=status, headers=headers)


def _install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ServiceError)
    async def service_error(request: Request, exc: ServiceError) -> JSONResponse:
        return _message(exc.status, exc.message)

    @app.exception_handler(BodyTooLarge)
    async def too_large(request: Request, exc: BodyTooLarge) -> JSONResponse:
        # the rest of the body is not read: the connection cannot carry another request
        return _message(413, str(exc), headers={"connection": "close"})

    @app.exception_handler(BodyStalled)
    async def stalled(request: Request, exc: BodyStalled) -> JSONResponse:
        return _message(408, str(exc), headers={"connection": "close"})

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [
            {key: value for key, value in error.items() if key != "ctx"} for error in exc.errors()
        ]
        if request.url.path.startswith("/v1/"):
            summary = "; ".join(
                f"{'.'.join(str(p) for p in e.get('loc', ()))}: {e.get('msg')}" for e in errors
            )
            # "input" can be the whole body (bytes, up to --max-upload-bytes): not echoed
            shown = [{key: value for key, value in e.items() if key != "input"} for e in errors]
            return _message(422, f"invalid request: {summary}", errors=_jsonable(shown))
        # HMA 1.1.x answers pydantic's error list as the whole body, locations without
        # FastAPI's "query"/"body" prefix (HMA's models hold the fields themselves)
        for error in errors:
            location = tuple(error.get("loc", ()))
            if location and location[0] in ("query", "body"):
                error["loc"] = location[1:]
        return JSONResponse(_jsonable(errors), status_code=422)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return JSONResponse(
            {"message": str(exc.detail)}, status_code=exc.status_code, headers=exc.headers
        )

    @app.exception_handler(Exception)
    async def internal(request: Request, exc: Exception) -> JSONResponse:
        request_id = getattr(request.state, "request_id", "?")
        _log.error("internal error on request %s", request_id, exc_info=exc)
        return _message(500, f"internal error (request id {request_id}); it is logged")


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {key: _jsonable(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(item) for item in value]
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return str(value)
