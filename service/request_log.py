"""One structured log line and the request metrics per request, and its request id.

The line is JSON on the ``hashmatch.service.requests`` logger: request id, method, route
template, status, duration and, for matching routes, the match count. It never holds a
hash, an image byte, a query string or a token (queries carry hashes). A client's
``X-Request-ID`` (up to 64 letters, digits, ``-`` ``_`` ``.``) is kept, else one is made;
it is echoed in the response so a pipeline can find its request in the logs.
"""

from __future__ import annotations

import json
import logging
import re
import time
import uuid
from collections.abc import Callable

from hashmatch.service.auth import ASGIApp, Message, Receive, Scope, Send, _header
from hashmatch.service.metrics import ServiceMetrics

__all__ = ["MATCH_COUNT_KEY", "RequestLogMiddleware"]

_log = logging.getLogger("hashmatch.service.requests")

MATCH_COUNT_KEY = "match_count"
"""Where a matching route leaves its match count in ``request.state`` for the log line."""

_REQUEST_ID = re.compile(r"[A-Za-z0-9._-]{1,64}")

_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
"""Methods logged and counted by name; any other a client invents is ``OTHER`` (labels stay
bounded: a client must not be able to mint metric series)."""


class RequestLogMiddleware:
    def __init__(self, app: ASGIApp, metrics: Callable[[], ServiceMetrics | None]) -> None:
        self.app = app
        self._metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        given = _header(scope, b"x-request-id")
        request_id = given if given and _REQUEST_ID.fullmatch(given) else uuid.uuid4().hex
        state = scope.setdefault("state", {})
        state["request_id"] = request_id
        method = scope["method"] if scope["method"] in _METHODS else "OTHER"
        status = 500
        started = time.perf_counter()
        metrics = self._metrics()

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
                headers = list(message.get("headers", []))
                headers.append((b"x-request-id", request_id.encode()))
                message["headers"] = headers
            await send(message)

        if metrics is not None:
            metrics.in_flight.inc()
        try:
            await self.app(scope, receive, send_with_id)
        finally:
            seconds = time.perf_counter() - started
            route = _route_template(scope)
            if metrics is not None:
                metrics.in_flight.dec()
                metrics.observe_request(route, method, status, seconds)
            line = {
                "request_id": request_id,
                "method": method,
                "route": route,
                "status": status,
                "ms": round(seconds * 1000, 2),
            }
            if MATCH_COUNT_KEY in state:
                line["matches"] = state[MATCH_COUNT_KEY]
            caller = state.get("caller")
            if caller is not None:
                line["caller"] = caller
            _log.info(json.dumps(line, separators=(",", ":")))


def _route_template(scope: Scope) -> str:
    """The matched route's path template (bounded label values), or ``unmatched``."""
    route = scope.get("route")
    path = getattr(route, "path", None)
    return path if isinstance(path, str) else "unmatched"
