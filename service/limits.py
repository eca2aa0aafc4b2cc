"""Request bodies within bounds: a size cap checked before reading, and a stall timeout.

uvicorn reads a body only as the app asks for it, and has no timeout for a client that
sends half a body and stops; so :class:`BodyLimitMiddleware` answers 413 at once for a
declared ``Content-Length`` over ``--max-upload-bytes`` (nothing of the body is read), and
wraps ``receive`` so that a body growing past the cap while it streams (chunked uploads, a
lying length) raises :class:`BodyTooLarge`, and one that stalls longer than
``--body-timeout`` raises :class:`BodyStalled`; the app's handlers answer those 413 and 408.
"""

from __future__ import annotations

import asyncio
import json

from hashmatch.service.auth import ASGIApp, Message, Receive, Scope, Send, _header

__all__ = ["BodyLimitMiddleware", "BodyStalled", "BodyTooLarge", "too_large_message"]


class BodyTooLarge(Exception):
    """The request body is larger than the server accepts (HTTP 413)."""


class BodyStalled(Exception):
    """The client stopped sending its body (HTTP 408)."""


def too_large_message(limit: int) -> str:
    return f"Content too large: the limit is {limit} bytes (--max-upload-bytes)"


class BodyLimitMiddleware:
    def __init__(self, app: ASGIApp, max_bytes: int, body_timeout: float) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.body_timeout = body_timeout

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = _header(scope, b"content-length")
        if declared is not None:
            if not declared.strip().isdigit():
                await _answer(send, 400, "Content-Length must be a whole number of bytes")
                return
            if int(declared) > self.max_bytes:
                await _answer(send, 413, too_large_message(self.max_bytes))
                return
        received = 0

        async def limited_receive() -> Message:
            nonlocal received
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
