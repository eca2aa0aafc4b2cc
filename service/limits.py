"""Request bodies within bounds: a size cap checked before reading, and a stall timeout.

uvicorn reads a body only as the app asks for it, and has no timeout for a client that
sends half a body and stops; so :class:`BodyLimitMiddleware` answers 413 at once for a
declared ``Content-Length`` over ``--max-upload-bytes`` (nothing of the body is read), and
wraps ``receive`` so that a body growing past the cap while it streams (chunked uploads, a
lying length) raises :class:`BodyTooLarge`, and one that stalls longer than
``--body-timeout`` raises :class:`BodyStalled`; the app's handlers answer those 413 and 408.
Both are HTTP exceptions, so FastAPI passes them on when they interrupt its own reading of a
JSON body (any other error there it would answer 400 "error parsing the body"). The stall
timeout ends with the body: afterwards ``receive`` only waits for the client to disconnect.

h11 caps only headers that arrive in pieces; headers that come in one read are checked here
against :data:`MAX_HEADER_BYTES` (431), so the cap holds however the bytes arrive.
"""

from __future__ import annotations

import asyncio
import json

from fastapi import HTTPException

from hashmatch.service.auth import ASGIApp, Message, Receive, Scope, Send, _header

__all__ = [
    "MAX_HEADER_BYTES",
    "BodyLimitMiddleware",
    "BodyStalled",
    "BodyTooLarge",
    "too_large_message",
]

MAX_HEADER_BYTES = 64 * 1024
"""The largest request head (all header names and values) a server process accepts."""


class _BodyError(HTTPException):
    """A body error whose text is its message alone (handlers quote ``str(exc)``)."""

    status = 400

    def __init__(self, message: str) -> None:
        super().__init__(self.status, message)

    def __str__(self) -> str:
        return str(self.detail)


class BodyTooLarge(_BodyError):
    """The request body is larger than the server accepts (HTTP 413)."""

    status = 413


class BodyStalled(_BodyError):
    """The client stopped sending its body (HTTP 408)."""

    status = 408


def too_large_message(limit: int) -> str:
    return f"Content too large: the limit is {limit} bytes (--max-upload-bytes)"


class BodyLimitMiddleware:
    def __init__(
        self,
        app: ASGIApp,
        max_bytes: int,
        body_timeout: float,
        max_header_bytes: int = MAX_HEADER_BYTES,
    ) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.body_timeout = body_timeout
        self.max_header_bytes = max_header_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        head = sum(len(name) + len(value) + 4 for name, value in scope.get("headers", []))
        if head > self.max_header_bytes:
            message = f"request headers too large: the limit is {self.max_header_bytes} bytes"
            await _answer(send, 431, message)
            return
        declared = _header(scope, b"content-length")
        if declared is not None:
            declared = declared.strip()
            if not (declared.isascii() and declared.isdigit()):
                await _answer(send, 400, "Content-Length must be a whole number of bytes")
                return
            if int(declared) > self.max_bytes:
                await _answer(send, 413, too_large_message(self.max_bytes))
                return
        received = 0
        body_done = False

        async def limited_receive() -> Message:
            nonlocal received, body_done
            if body_done:  # only the disconnect is left to wait for: no stall timeout
                return await receive()
            try:
                message = await asyncio.wait_for(receive(), self.body_timeout)
            except asyncio.TimeoutError:
                raise BodyStalled(
                    f"the request body stalled for {self.body_timeout:g} s (--body-timeout)"
                ) from None
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise BodyTooLarge(too_large_message(self.max_bytes))
                body_done = not message.get("more_body", False)
            else:
                body_done = True
            return message

        await self.app(scope, limited_receive, send)


async def _answer(send: Send, status: int, message: str) -> None:
    body = json.dumps({"message": message}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
