"""Bearer tokens: who may call the service.

A token file holds one token a line, as ``NAME TOKEN`` or just ``TOKEN`` (named after its
line); blank lines and ``#`` comments are skipped. It is re-read on ``SIGHUP``, so tokens
rotate without a restart. A request's token is compared with every known token in constant
time (``hmac.compare_digest``, no early exit), so timing says nothing about how much of a
guess was right. Only :data:`OPEN_PATHS` (and ``/metrics`` with ``--public-metrics``) answer
without one: 401 ``Authentication required``, as HMA deployments answer.
"""

from __future__ import annotations

import hmac
import logging
import threading
from collections.abc import Awaitable, Callable, MutableMapping
from pathlib import Path
from typing import Any

from hashmatch.errors import OptionError

__all__ = ["OPEN_PATHS", "AuthMiddleware", "TokenSet", "read_tokens"]

_log = logging.getLogger("hashmatch.service")

OPEN_PATHS = frozenset({"/status", "/status/live", "/site-map", "/healthz", "/readyz"})
"""What a load balancer and HMA's health checks call without credentials."""

METRICS_PATH = "/metrics"
_MIN_TOKEN_LENGTH = 16

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


def read_tokens(path: Path) -> dict[str, str]:
    """Token -> name from a token file; raises OptionError naming the file and line."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise OptionError(f"{path}: cannot read the token file: {exc}") from None
    tokens: dict[str, str] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        parts = stripped.split()
        if len(parts) > 2:
            raise OptionError(f"{path}:{number}: expected `NAME TOKEN` or `TOKEN`")
        name, token = (parts[0], parts[1]) if len(parts) == 2 else (f"token-{number}", parts[0])
        if not (token.isascii() and token.isprintable()):
            # a header arrives as bytes: a token outside ASCII could never be matched
            raise OptionError(f"{path}:{number}: a token must be printable ASCII characters")
        if len(token) < _MIN_TOKEN_LENGTH:
            raise OptionError(
                f"{path}:{number}: a token must be at least {_MIN_TOKEN_LENGTH} characters"
            )
        if token in tokens:
            raise OptionError(f"{path}:{number}: the same token appears twice")
        tokens[token] = name
    if not tokens:
        raise OptionError(f"{path}: the token file holds no tokens")
    return tokens


class TokenSet:
    """The tokens in force; ``None`` path: authentication is off."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self._tokens: dict[str, str] = read_tokens(path) if path is not None else {}
        self._lock = threading.Lock()

    @property
    def enabled(self) -> bool:
        return self.path is not None

    def reload(self) -> None:
        """Re-read the file; a broken file keeps the tokens in force (and is logged)."""
        if self.path is None:
            return
        try:
            fresh = read_tokens(self.path)
        except OptionError as exc:
            _log.warning("token file not reloaded, the old tokens stay in force: %s", exc)
            return
        with self._lock:
            self._tokens = fresh
        _log.info("token file reloaded: %d tokens", len(fresh))

    def identify(self, authorization: str | None) -> str | None:
        """The name of the caller whose ``Authorization: Bearer`` header this is, or None."""
        if not authorization:
            return None
        scheme, _, given = authorization.partition(" ")
        if scheme.lower() != "bearer" or not given.strip():
            return None
        offered = given.strip().encode("latin-1")  # the header's bytes as sent
        with self._lock:
            known = list(self._tokens.items())
        found: str | None = None
        for token, name in known:  # every comparison runs: no early exit to time
            if hmac.compare_digest(offered, token.encode()):
                found = name
        return found


class AuthMiddleware:
    """Answers 401 to a request without a known token, except on the open paths."""

    def __init__(self, app: ASGIApp, tokens: Callable[[], TokenSet | None], public_metrics: bool):
        self.app = app
        self._tokens = tokens
        self._open = OPEN_PATHS | ({METRICS_PATH} if public_metrics else set())

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        tokens = self._tokens()
        if scope["type"] not in ("http", "websocket") or tokens is None or not tokens.enabled:
            await self.app(scope, receive, send)
            return
        if scope["path"] in self._open:
            await self.app(scope, receive, send)
            return
        header = _header(scope, b"authorization")
        caller = tokens.identify(header)
        if caller is None:
            if scope["type"] == "websocket":  # refused before the handshake: 403
                await send({"type": "websocket.close", "code": 1008})
                return
            body = b"Authentication required"
            await send(
                {
                    "type": "http.response.start",
                    "status": 401,
                    "headers": [
                        (b"content-type", b"text/plain; charset=utf-8"),
                        (b"content-length", str(len(body)).encode()),
                        (b"www-authenticate", b'Bearer realm="hashmatch"'),
                    ],
                }
            )
            await send({"type": "http.response.body", "body": body})
            return
        scope.setdefault("state", {})["caller"] = caller
        await self.app(scope, receive, send)


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", []):
        if key.lower() == name:
            return bytes(value).decode("latin-1")
    return None
