"""``?url=`` fetching: off by default, allow-listed hosts only, no private addresses, every
redirect re-checked, the connection pinned to the checked address, bounded in size and time.

A real ``http.server`` on 127.0.0.1 (ephemeral port, in a thread) answers the requests that
need a network; a ``MockTransport`` stands in where a test needs a public address or https.
Waits are bounded; nothing asserts how long anything took.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from hashmatch.service.config import ServiceConfig
from hashmatch.service.fetch import (
    MAX_REDIRECTS,
    UNSAFE_URL,
    FetchedContent,
    fetch_url,
    host_allowed,
    url_content_type,
)
from hashmatch.service.state import ServiceError

PHOTO = b"\xff\xd8\xff\xe0 not really a jpeg, but the fetcher does not care"
CHUNK = 64 * 1024
ENDLESS = 256 * 1024 * 1024
"""What the endless routes would send if nobody stopped reading (far past any limit)."""


@dataclass
class ServerLog:
    """What the test server saw: requested paths, and the bytes its endless routes sent
    before the client went away."""

    paths: list[str] = field(default_factory=list)
    sent: dict[str, int] = field(default_factory=dict)
    finished: dict[str, threading.Event] = field(default_factory=dict)
    release: threading.Event = field(default_factory=threading.Event)

    def finished_event(self, path: str) -> threading.Event:
        return self.finished.setdefault(path, threading.Event())


def _handler(log: ServerLog) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: object) -> None:
            pass

        def do_GET(self) -> None:
            parts = urlsplit(self.path)
            log.paths.append(parts.path)
            query = parse_qs(parts.query)
            if parts.path == "/photo.jpg":
                self._answer(200, PHOTO, "image/jpeg")
            elif parts.path == "/redirect":
                self.send_response(302)
                self.send_header("Location", query["to"][0])
                self.end_headers()
            elif parts.path == "/loop":
                self.send_response(302)
                self.send_header("Location", "/loop")
                self.end_headers()
            elif parts.path in ("/endless", "/declared"):
                self._endless(parts.path)
            elif parts.path == "/slow":
                log.release.wait(30)
                with contextlib.suppress(OSError):  # the client gave up long ago
                    self._answer(200, PHOTO, "image/jpeg")
            else:
                self.send_error(404, "File not found")

        def _answer(self, status: int, body: bytes, media_type: str) -> None:
            self.send_response(status)
            self.send_header("Content-Type", media_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def _endless(self, path: str) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "image/jpeg")
            if path == "/declared":
                self.send_header("Content-Length", str(ENDLESS))
            self.end_headers()
            sent = 0
            try:
                while sent < ENDLESS:
                    self.wfile.write(b"\0" * CHUNK)
                    sent += CHUNK
            except OSError:
                pass  # the client hung up: what this route is for
            finally:
                log.sent[path] = sent
                log.finished_event(path).set()

    return Handler


@dataclass
class Server:
    base_url: str
    port: int
    log: ServerLog


@pytest.fixture(scope="module")
def server() -> Iterator[Server]:
    log = ServerLog()
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler(log))
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, name="test-http", daemon=True)
    thread.start()
    port = int(httpd.server_address[1])
    try:
        yield Server(f"http://127.0.0.1:{port}", port, log)
    finally:
        log.release.set()
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=10)


def _config(tmp_path: Path, **settings: Any) -> ServiceConfig:
    return ServiceConfig(index=tmp_path / "index", **settings)


def _local(tmp_path: Path, **settings: Any) -> ServiceConfig:
    """Fetching from the test server: 127.0.0.1 allowed, private addresses allowed."""
    settings = {"fetch_hosts": ("127.0.0.1",), "fetch_private": True, **settings}
    return _config(tmp_path, **settings)


def _fetch(
    config: ServiceConfig, url: str, transport: httpx.MockTransport | None = None
) -> FetchedContent:
    return asyncio.run(fetch_url(config, url, transport=transport))


def _refused(
    config: ServiceConfig, url: str, transport: httpx.MockTransport | None = None
) -> ServiceError:
    with pytest.raises(ServiceError) as caught:
        _fetch(config, url, transport)
    return caught.value


def test_allowlisted_fetch_returns_the_bytes_named_after_the_path(
    server: Server, tmp_path: Path
) -> None:
    fetched = _fetch(_local(tmp_path), f"{server.base_url}/photo.jpg")
    assert fetched.data == PHOTO
    assert fetched.upload.name == "photo.jpg"
    assert fetched.media_type == "image/jpeg"


def test_fetching_is_off_by_default_and_says_which_flag_turns_it_on(
    server: Server, tmp_path: Path
) -> None:
    before = len(server.log.paths)
    error = _refused(_config(tmp_path), f"{server.base_url}/photo.jpg")
    assert error.status == 400
    assert error.message.startswith(UNSAFE_URL)
    assert "--fetch-host" in error.message
    assert len(server.log.paths) == before


def test_host_not_on_the_allowlist_is_refused(server: Server, tmp_path: Path) -> None:
    config = _config(tmp_path, fetch_hosts=("images.example.com",), fetch_private=True)
    error = _refused(config, f"{server.base_url}/photo.jpg")
    assert (error.status, error.message.startswith(UNSAFE_URL)) == (400, True)


def test_loopback_is_refused_without_fetch_private_even_when_allowlisted(
    server: Server, tmp_path: Path
) -> None:
    before = len(server.log.paths)
    config = _config(tmp_path, fetch_hosts=("127.0.0.1", "localhost"))
    for url in (f"{server.base_url}/photo.jpg", f"http://localhost:{server.port}/photo.jpg"):
        error = _refused(config, url)
        assert error.status == 400
        assert error.message.startswith(UNSAFE_URL)
        assert "--fetch-private" in error.message
    assert len(server.log.paths) == before


@pytest.mark.parametrize(
    "url",
    ["ftp://127.0.0.1/x.jpg", "file:///etc/passwd", "gopher://127.0.0.1/", "/photo.jpg", ""],
)
def test_non_http_schemes_are_refused_with_hma_s_message(tmp_path: Path, url: str) -> None:
    error = _refused(_local(tmp_path), url)
    assert (error.status, error.message) == (400, UNSAFE_URL)


def test_a_redirect_is_followed_and_checked_again(server: Server, tmp_path: Path) -> None:
    fetched = _fetch(_local(tmp_path), f"{server.base_url}/redirect?to=/photo.jpg")
    assert fetched.data == PHOTO
    assert fetched.upload.name == "photo.jpg"


def test_a_redirect_to_a_host_not_allowlisted_is_refused(server: Server, tmp_path: Path) -> None:
    target = f"http://localhost:{server.port}/photo.jpg"
    error = _refused(_local(tmp_path), f"{server.base_url}/redirect?to={target}")
    assert error.status == 400
    assert error.message.startswith(UNSAFE_URL)
    assert "localhost" in error.message


def test_a_redirect_to_a_non_http_scheme_is_refused(server: Server, tmp_path: Path) -> None:
    error = _refused(_local(tmp_path), f"{server.base_url}/redirect?to=file:///etc/passwd")
    assert (error.status, error.message) == (400, UNSAFE_URL)


def test_endless_redirects_stop_after_the_limit(server: Server, tmp_path: Path) -> None:
    before = server.log.paths.count("/loop")
    error = _refused(_local(tmp_path), f"{server.base_url}/loop")
    assert error.status == 400
    assert error.message == f"Failed to fetch URL: more than {MAX_REDIRECTS} redirects"
    assert server.log.paths.count("/loop") - before == MAX_REDIRECTS + 1


def test_a_redirect_from_a_public_address_to_loopback_is_refused(tmp_path: Path) -> None:
    asked: list[str] = []

    def answer(request: httpx.Request) -> httpx.Response:
        asked.append(request.url.host)
        return httpx.Response(302, headers={"Location": "http://127.0.0.1/secret"})

    config = _config(tmp_path, fetch_hosts=("93.184.216.34", "127.0.0.1"))
    error = _refused(config, "http://93.184.216.34/start", httpx.MockTransport(answer))
    assert error.status == 400
    assert error.message.startswith(UNSAFE_URL)
    assert asked == ["93.184.216.34"]


def test_the_connection_goes_to_the_checked_address_with_the_name_for_host_and_sni(
    tmp_path: Path,
) -> None:
    seen: list[httpx.Request] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, content=PHOTO, headers={"Content-Type": "image/png"})

    config = _config(tmp_path, fetch_hosts=("localhost",), fetch_private=True)
    fetched = _fetch(config, "https://localhost:8443/a/b.png", httpx.MockTransport(answer))
    assert fetched.data == PHOTO
    (request,) = seen
    assert request.url.host in ("127.0.0.1", "::1")
    assert request.url.port == 8443
    assert request.url.path == "/a/b.png"
    assert request.headers["host"] == "localhost:8443"
    assert request.extensions["sni_hostname"] == "localhost"


def test_a_body_past_the_limit_is_413_without_reading_it_all(
    server: Server, tmp_path: Path
) -> None:
    config = _local(tmp_path, max_upload_bytes=1024 * 1024)
    for path in ("/endless", "/declared"):
        error = _refused(config, f"{server.base_url}{path}")
        assert (error.status, error.message) == (413, "Content too large")
        assert server.log.finished_event(path).wait(30), f"{path} never saw the client leave"
        assert server.log.sent[path] < ENDLESS


def test_a_slow_server_fails_the_fetch_at_the_time_limit(server: Server, tmp_path: Path) -> None:
    try:
        error = _refused(_local(tmp_path, fetch_timeout=0.5), f"{server.base_url}/slow")
    finally:
        server.log.release.set()
    assert error.status == 400
    assert error.message.startswith("Failed to fetch URL: ")


def test_an_error_status_is_reported_as_hma_words_it(server: Server, tmp_path: Path) -> None:
    url = f"{server.base_url}/missing.jpg"
    error = _refused(_local(tmp_path), url)
    assert error.status == 400
    assert error.message == f"Failed to fetch URL: 404 Client Error: File not found for url: {url}"


@pytest.mark.parametrize(
    ("host", "allowed"),
    [
        ("images.example.com", True),
        ("IMAGES.example.com.", True),
        ("a.b.example.com", True),
        ("example.com", False),
        ("badexample.com", False),
        ("example.com.evil.net", False),
        ("cdn.test", True),
        ("other.test", False),
        ("::1", True),
    ],
)
def test_host_allowlist_matches_exact_names_and_subdomain_wildcards(
    host: str, allowed: bool
) -> None:
    patterns = ("*.example.com", "cdn.test", "[::1]")
    assert host_allowed(host, patterns) is allowed


@pytest.mark.parametrize(
    ("hint", "media_type", "expected"),
    [
        (None, "image/jpeg", "photo"),
        (None, "IMAGE/PNG; charset=x", "photo"),
        (None, "video/mp4", "video"),
        ("photo", "text/plain", "photo"),
        ("video", "image/jpeg", "video"),
    ],
)
def test_content_type_follows_hma_s_rules(hint: str | None, media_type: str, expected: str) -> None:
    assert url_content_type(hint, media_type) == expected


def test_content_type_errors_are_hma_s() -> None:
    with pytest.raises(ServiceError) as caught:
        url_content_type(None, "text/plain")
    assert caught.value.message == (
        "unsupported url ContentType: 'text/plain', if you know the expected type,"
        " provide it with the content_type query param"
    )
    with pytest.raises(ServiceError) as caught:
        url_content_type("nope", "image/jpeg")
    assert (caught.value.status, caught.value.message) == (400, "no such content_type: 'nope'")
