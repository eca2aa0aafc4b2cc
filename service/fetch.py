"""Fetching the content a ``?url=`` route names, without making the server a proxy into its
own network.

A URL from a client is a request the server makes on its behalf (server-side request
forgery), so fetching is off until the operator names the hosts it may reach
(``--fetch-host``, exact names or ``*.example.com`` for subdomains). Only http and https are
fetched; the host is resolved here and refused when any of its addresses is loopback,
private, link-local, reserved or multicast (unless ``--fetch-private``), and the connection
goes to the address that was checked, so a second resolution cannot point it elsewhere (DNS
rebinding; https keeps the name for the Host header, SNI and the certificate check).
Redirects are followed by hand, each hop checked again. The body is streamed and dropped at
``--max-upload-bytes`` (413) and the whole fetch has ``--fetch-timeout`` seconds. Messages
are HMA's (``Invalid or unsafe URL provided``, ``Failed to fetch URL: ...``), with why.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from dataclasses import dataclass
from typing import Any

import httpx

from hashmatch.service.bodies import CONTENT_TYPES
from hashmatch.service.config import ServiceConfig
from hashmatch.service.state import ServiceError
from hashmatch.service.uploads import Upload

__all__ = [
    "MAX_REDIRECTS",
    "UNSAFE_URL",
    "FetchedContent",
    "check_content_type",
    "fetch_url",
    "host_allowed",
    "url_content_type",
]

UNSAFE_URL = "Invalid or unsafe URL provided"
"""HMA's message for a URL it will not fetch."""

MAX_REDIRECTS = 5

_FAILED = "Failed to fetch URL"
_TOO_LARGE = "Content too large"
_ACCEPT = "image/*, video/*;q=0.9, */*;q=0.1"

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


@dataclass(frozen=True)
class FetchedContent:
    """What a URL answered: its bytes as an upload (named after the URL's last path
    segment) and the ``Content-Type`` it declared (``""`` when none)."""

    upload: Upload
    media_type: str

    @property
    def data(self) -> bytes:
        return self.upload.data


async def fetch_url(
    config: ServiceConfig, url: str, *, transport: httpx.AsyncBaseTransport | None = None
) -> FetchedContent:
    """GET ``url`` within ``config``'s rules (see the module); a :class:`ServiceError`
    (400, or 413 past the size limit) when it is refused or fails. ``transport`` is a test
    seam: what the pinned requests are sent through."""
    if not config.fetch_hosts:
        raise ServiceError(
            400,
            f"{UNSAFE_URL}: fetching URLs is off on this server"
            " (start it with --fetch-host HOST to allow a host)",
        )
    try:
        return await asyncio.wait_for(_fetch(config, url, transport), config.fetch_timeout)
    except asyncio.TimeoutError:
        raise ServiceError(
            400, f"{_FAILED}: no complete answer within {config.fetch_timeout:g} s"
        ) from None


async def _fetch(
    config: ServiceConfig, text: str, transport: httpx.AsyncBaseTransport | None
) -> FetchedContent:
    url = _parsed(text)
    for _ in range(MAX_REDIRECTS + 1):
        address = await _checked_address(config, url)
        answer = await _get_pinned(config, url, address, transport)
        if isinstance(answer, FetchedContent):
            return answer
        url = answer
    raise ServiceError(400, f"{_FAILED}: more than {MAX_REDIRECTS} redirects")


async def _get_pinned(
    config: ServiceConfig,
    url: httpx.URL,
    address: IPAddress,
    transport: httpx.AsyncBaseTransport | None,
) -> FetchedContent | httpx.URL:
    """One hop: GET ``url`` from ``address``; its content, or the URL it redirects to."""
    headers = {"Host": url.netloc.decode("ascii"), "Accept": _ACCEPT}
    extensions: dict[str, Any] = {}
    if url.scheme == "https":
        extensions["sni_hostname"] = url.raw_host.decode("ascii")
    # a client per hop: no connection is ever reused for another name
    async with httpx.AsyncClient(
        transport=transport,
        trust_env=False,  # a proxy from the environment would undo the pinning
        follow_redirects=False,
        timeout=config.fetch_timeout,
    ) as client:
        try:
            async with client.stream(
                "GET", url.copy_with(host=str(address)), headers=headers, extensions=extensions
            ) as response:
                location = response.headers.get("location")
                if response.is_redirect and location:
                    return _parsed(str(url.join(location)))
                if not response.is_success:
                    raise ServiceError(400, f"{_FAILED}: {_status_text(response, url)}")
                data = await _read_limited(response, config.max_upload_bytes)
                media_type = response.headers.get("content-type", "")
        except httpx.TimeoutException:
            raise ServiceError(400, f"{_FAILED}: timed out") from None
        except httpx.HTTPError as exc:
            raise ServiceError(400, f"{_FAILED}: {type(exc).__name__}: {exc}") from None
    return FetchedContent(Upload(data, _name_of(url)), media_type)


def _parsed(text: str) -> httpx.URL:
    """``text`` as an absolute http(s) URL with a host; else the refusal."""
    try:
        url = httpx.URL(text)
    except (httpx.InvalidURL, TypeError, ValueError):
        raise ServiceError(400, UNSAFE_URL) from None
    if url.scheme not in ("http", "https") or not url.host:
        raise ServiceError(400, UNSAFE_URL)
    return url


def host_allowed(host: str, patterns: tuple[str, ...]) -> bool:
    """Whether ``host`` is one of ``patterns``: exact names or addresses, or ``*.example.com``
    for any subdomain of example.com (not example.com itself); case and a final dot ignored."""
    name = host.strip("[]").rstrip(".").lower()
    for pattern in patterns:
        wanted = pattern.strip().strip("[]").rstrip(".").lower()
        if wanted.startswith("*."):
            if name.endswith(wanted[1:]) and len(name) > len(wanted) - 1:
                return True
        elif wanted and name == wanted:
            return True
    return False


def _public(address: IPAddress) -> bool:
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return address.is_global and not address.is_multicast


async def _checked_address(config: ServiceConfig, url: httpx.URL) -> IPAddress:
    """The address to connect to for ``url``'s host, once the host is allowed and every
    address it resolves to is acceptable."""
    if not host_allowed(url.host, config.fetch_hosts):
        raise ServiceError(
            400, f"{UNSAFE_URL}: {url.host!r} is not a host this server fetches from"
        )
    host = url.raw_host.decode("ascii")
    port = url.port or (443 if url.scheme == "https" else 80)
    try:
        found = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
        addresses = [ipaddress.ip_address(str(info[4][0]).split("%", 1)[0]) for info in found]
    except (OSError, ValueError) as exc:
        raise ServiceError(400, f"{_FAILED}: cannot resolve {url.host!r}: {exc}") from None
    if not addresses:
        raise ServiceError(400, f"{_FAILED}: {url.host!r} has no address")
    if not config.fetch_private and not all(_public(a) for a in addresses):
        raise ServiceError(
            400,
            f"{UNSAFE_URL}: {url.host!r} resolves to a loopback, private or reserved address"
            " (--fetch-private allows those)",
        )
    return addresses[0]


def _status_text(response: httpx.Response, url: httpx.URL) -> str:
    """The status as HMA's HTTP library words it: ``404 Client Error: Not Found for url: U``."""
    status = response.status_code
    kind = "Client Error" if 400 <= status < 500 else "Server Error" if status >= 500 else ""
    reason = response.reason_phrase
    return f"{status} {kind + ': ' if kind else ''}{reason} for url: {url}"


async def _read_limited(response: httpx.Response, limit: int) -> bytes:
    """The body, stopping (413) as soon as it is known to exceed ``limit`` bytes."""
    declared = response.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise ServiceError(413, _TOO_LARGE)
    chunks: list[bytes] = []
    size = 0
    async for chunk in response.aiter_bytes():
        size += len(chunk)  # decoded bytes: a compressed body is limited by what it expands to
        if size > limit:
            raise ServiceError(413, _TOO_LARGE)
        chunks.append(chunk)
    return b"".join(chunks)


def _name_of(url: httpx.URL) -> str:
    segment = url.path.rsplit("/", 1)[-1]
    return segment or url.host


def check_content_type(hint: str | None) -> None:
    """A ``content_type`` parameter must be one of HMA's content types (400 otherwise)."""
    if hint and hint not in CONTENT_TYPES:
        raise ServiceError(400, f"no such content_type: '{hint}'")


def url_content_type(hint: str | None, media_type: str) -> str:
    """HMA's content type for fetched content: the ``content_type`` parameter, else
    ``photo`` for ``image/*`` and ``video`` for ``video/*``; 400 for anything else."""
    if hint:
        check_content_type(hint)
        return hint
    lowered = media_type.lower()
    if lowered.startswith("image"):
        return "photo"
    if lowered.startswith("video"):
        return "video"
    raise ServiceError(
        400,
        f"unsupported url ContentType: '{media_type}', if you know the expected type,"
        " provide it with the content_type query param",
    )
