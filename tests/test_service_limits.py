"""What the service does with requests that push its limits: bodies over the cap (declared,
streamed, chunked), bodies that stall, huge headers, malformed or mistyped bodies, too many
files or queries, and uploads that take too long or crash the process hashing them.

Socket-level cases talk to a real uvicorn (``serving_in_thread``) over raw sockets, since a
test client cannot send half a body; time limits and crashes need ``hashmatch serve`` with the
``faulty`` test algorithm registered (``cli_with_faults``). Every wait is bounded; no test
asserts how long anything took.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from hashmatch.fixtures.faults import MARKERS_VARIABLE, cli_with_faults, read_marker
from hashmatch.fixtures.service import (
    KnownIndex,
    ServeProcess,
    known_index,
    serve_process,
    serving_in_thread,
    wait_until,
)
from hashmatch.service.config import ServiceConfig
from hashmatch.service.limits import BodyLimitMiddleware, BodyStalled

MAX_UPLOAD = 100_000
BODY_TIMEOUT = 1.0
MAX_BATCH = 2
MAX_QUERIES = 3
ANSWER_BOUND = 30.0
"""The longest any socket waits for an answer (generous: these answers take a second)."""


@pytest.fixture(scope="module")
def known(tmp_path_factory: pytest.TempPathFactory) -> KnownIndex:
    return known_index(tmp_path_factory.mktemp("limits"))


@pytest.fixture(scope="module")
def server(known: KnownIndex) -> Iterator[str]:
    config = ServiceConfig(
        index=known.path,
        max_upload_bytes=MAX_UPLOAD,
        body_timeout=BODY_TIMEOUT,
        max_batch=MAX_BATCH,
        max_queries=MAX_QUERIES,
    )
    with serving_in_thread(config) as base_url:
        yield base_url


@pytest.fixture(scope="module")
def client(server: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server, timeout=ANSWER_BOUND) as http:
        yield http


def _port(base_url: str) -> int:
    return int(base_url.rsplit(":", 1)[1])


def _exchange(base_url: str, data: bytes) -> tuple[int, dict[str, str], bytes]:
    """Send ``data`` on a fresh connection and read one response (status, headers, body);
    the connection is not closed first, so a server that waits for more never answers."""
    with socket.create_connection(("127.0.0.1", _port(base_url)), timeout=ANSWER_BOUND) as sock:
        # a server may answer and close before taking everything: read the answer then
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            sock.sendall(data)
        received = b""
        while b"\r\n\r\n" not in received:
            chunk = sock.recv(65536)
            if not chunk:
                raise AssertionError(f"the connection closed without an answer: {received!r}")
            received += chunk
        head, _, body = received.partition(b"\r\n\r\n")
        status_line, *header_lines = head.decode("latin-1").split("\r\n")
        headers = {}
        for line in header_lines:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        length = int(headers.get("content-length", "0"))
        while len(body) < length:
            chunk = sock.recv(65536)
            if not chunk:
                break
            body += chunk
        return int(status_line.split()[1]), headers, body


def _request_head(path: str, *headers: str) -> bytes:
    lines = [f"POST {path} HTTP/1.1", "Host: 127.0.0.1", *headers, "", ""]
    return "\r\n".join(lines).encode("latin-1")


def _chunked(data: bytes, size: int = 16_384) -> bytes:
    pieces = [data[i : i + size] for i in range(0, len(data), size)]
    return b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in pieces) + b"0\r\n\r\n"


def _message(body: bytes) -> str:
    return str(json.loads(body)["message"])


def _still_serving(client: httpx.Client) -> None:
    assert client.get("/status").text == "I-AM-ALIVE"


# --- sizes ---------------------------------------------------------------------------------


def test_declared_length_over_cap_is_refused_without_reading_the_body(
    server: str, client: httpx.Client
) -> None:
    # 1 TB declared and 3 bytes sent: only an answer that does not wait for the body arrives
    head = _request_head("/v1/match", "Content-Type: image/jpeg", f"Content-Length: {10**12}")
    status, headers, body = _exchange(server, head + b"abc")
    assert status == 413
    assert (
        _message(body) == f"Content too large: the limit is {MAX_UPLOAD} bytes (--max-upload-bytes)"
    )
    assert headers["connection"] == "close"
    _still_serving(client)


@pytest.mark.parametrize(
    ("path", "content_type"),
    [
        ("/v1/match", "image/jpeg"),
        ("/v1/hash", "application/octet-stream"),
        ("/v1/lookup", "application/json"),  # FastAPI reads this body itself
    ],
)
def test_chunked_body_growing_past_cap_is_refused(
    server: str, client: httpx.Client, path: str, content_type: str
) -> None:
    head = _request_head(path, f"Content-Type: {content_type}", "Transfer-Encoding: chunked")
    status, _, body = _exchange(server, head + _chunked(b"a" * (MAX_UPLOAD + 50_000)))
    assert status == 413
    assert "the limit is 100000 bytes" in _message(body)
    _still_serving(client)


def test_chunked_multipart_growing_past_cap_is_refused(server: str, client: httpx.Client) -> None:
    part = (
        b'--edge\r\nContent-Disposition: form-data; name="file"; filename="big.jpg"\r\n'
        b"Content-Type: image/jpeg\r\n\r\n" + b"a" * (MAX_UPLOAD + 50_000) + b"\r\n--edge--\r\n"
    )
    head = _request_head(
        "/v1/match/batch",
        "Content-Type: multipart/form-data; boundary=edge",
        "Transfer-Encoding: chunked",
    )
    status, _, body = _exchange(server, head + _chunked(part))
    assert status == 413
    assert "the limit is 100000 bytes" in _message(body)
    _still_serving(client)


@pytest.mark.parametrize(
    ("path", "content_type", "start"),
    [
        ("/v1/match", "image/jpeg", b"\xff\xd8\xff"),
        ("/v1/lookup", "application/json", b'{"queries'),  # FastAPI reads this body itself
    ],
)
def test_stalled_body_answers_408_and_server_keeps_serving(
    server: str, client: httpx.Client, path: str, content_type: str, start: bytes
) -> None:
    head = _request_head(path, f"Content-Type: {content_type}", "Content-Length: 1000")
    status, _, body = _exchange(server, head + start)  # 997 bytes never come
    assert status == 408
    assert _message(body) == "the request body stalled for 1 s (--body-timeout)"
    _still_serving(client)


def test_body_timeout_ends_with_the_body() -> None:
    """After the last body message the app may wait for a disconnect as long as it likes."""
    disconnected = asyncio.Event()
    messages = [{"type": "http.request", "body": b"whole", "more_body": False}]
    heard: list[str] = []

    async def receive() -> dict[str, Any]:
        if messages:
            return messages.pop(0)
        await disconnected.wait()
        return {"type": "http.disconnect"}

    async def app(scope: Any, receive: Any, send: Any) -> None:
        heard.append((await receive())["type"])
        heard.append((await receive())["type"])  # waits past the body timeout

    async def send(message: Any) -> None:
        raise AssertionError("nothing is sent")

    async def run() -> None:
        middleware = BodyLimitMiddleware(app, max_bytes=100, body_timeout=0.05)
        scope = {"type": "http", "method": "POST", "path": "/", "headers": []}
        task = asyncio.create_task(middleware(scope, receive, send))
        await asyncio.sleep(0.2)  # four body timeouts go by with the body already in
        disconnected.set()
        await task

    asyncio.run(run())
    assert heard == ["http.request", "http.disconnect"]


def test_body_stall_in_the_middle_raises_body_stalled() -> None:
    async def receive() -> dict[str, Any]:
        await asyncio.Event().wait()  # never answers
        raise AssertionError("unreachable")

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await receive()

    async def send(message: Any) -> None:
        raise AssertionError("nothing is sent")

    middleware = BodyLimitMiddleware(app, max_bytes=100, body_timeout=0.05)
    scope = {"type": "http", "method": "POST", "path": "/", "headers": []}
    with pytest.raises(BodyStalled, match=r"stalled for 0\.05 s") as raised:
        asyncio.run(middleware(scope, receive, send))
    assert raised.value.status_code == 408


@pytest.mark.parametrize("size", [70 * 1024, 300 * 1024])
def test_huge_headers_answer_4xx_and_server_keeps_serving(
    server: str, client: httpx.Client, size: int
) -> None:
    head = b"GET /status HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Padding: " + b"a" * size + b"\r\n\r\n"
    status, _, _ = _exchange(server, head)
    assert status in (400, 431)  # h11's 400 when they come in pieces, ours 431 when whole
    _still_serving(client)


# --- shapes --------------------------------------------------------------------------------


def _multipart(parts: list[tuple[str, str, bytes]], boundary: str = "edge") -> bytes:
    body = b""
    for field, name, data in parts:
        body += (
            (
                f'--{boundary}\r\nContent-Disposition: form-data; name="{field}"; '
                f'filename="{name}"\r\nContent-Type: image/jpeg\r\n\r\n'
            ).encode()
            + data
            + b"\r\n"
        )
    return body + f"--{boundary}--\r\n".encode()


@pytest.mark.parametrize(
    ("content_type", "body", "status", "message"),
    [
        (
            "multipart/form-data; boundary=other",
            _multipart([("file", "a.jpg", b"x")]),
            400,
            "malformed multipart body: Invalid multipart data.",
        ),
        (
            "multipart/form-data",
            _multipart([("file", "a.jpg", b"x")]),
            400,
            "malformed multipart body: Missing boundary in multipart.",
        ),
        (
            "multipart/form-data; boundary=edge",
            _multipart([("file", "a.jpg", b"x" * 5000)])[:200],  # cut inside the file
            400,
            "the multipart body holds no complete file part",
        ),
        (
            "multipart/form-data; boundary=edge",
            b"--edge--\r\n",
            400,
            "the multipart body holds no complete file part",
        ),
        ("image/jpeg", b"", 400, "the request body is empty: send the image's bytes"),
    ],
    ids=["wrong_boundary", "no_boundary", "truncated", "no_parts", "empty"],
)
def test_malformed_upload_answers_400_naming_the_problem(
    client: httpx.Client, content_type: str, body: bytes, status: int, message: str
) -> None:
    response = client.post("/v1/match", content=body, headers={"content-type": content_type})
    assert (response.status_code, response.json()) == (status, {"message": message})


@pytest.mark.parametrize(
    ("content_type", "shown"),
    [("text/plain", "'text/plain'"), ("application/json", "'application/json'"), (None, "'none'")],
)
def test_upload_route_refuses_other_content_types_with_415(
    client: httpx.Client, content_type: str | None, shown: str
) -> None:
    headers = {"content-type": content_type} if content_type else {}
    response = client.post("/v1/match", content=b'{"pdq": "00"}', headers=headers)
    assert response.status_code == 415
    assert response.json()["message"].startswith(f"unsupported Content-Type {shown}: send")


@pytest.mark.parametrize(
    ("content_type", "body", "summary"),
    [
        ("application/json", b"not json", "body.0: JSON decode error"),
        (
            "text/plain",
            b"not json",
            "body: Input should be a valid dictionary or object to extract fields from",
        ),
        ("application/json", b'{"hashes": []}', "body.queries: Field required"),
    ],
    ids=["broken_json", "not_json", "wrong_shape"],
)
def test_lookup_refuses_what_is_not_its_json_with_422(
    client: httpx.Client, content_type: str, body: bytes, summary: str
) -> None:
    response = client.post("/v1/lookup", content=body, headers={"content-type": content_type})
    assert response.status_code == 422
    answer = response.json()
    assert answer["message"] == f"invalid request: {summary}"
    assert all("input" not in error for error in answer["errors"])  # the body is not echoed


@pytest.mark.parametrize("files", [MAX_BATCH + 1, MAX_BATCH + 5])
def test_batch_over_max_batch_files_answers_413(client: httpx.Client, files: int) -> None:
    parts = [("file", f"{n}.jpg", b"tiny") for n in range(files)]
    response = client.post(
        "/v1/match/batch",
        content=_multipart(parts),
        headers={"content-type": "multipart/form-data; boundary=edge"},
    )
    assert (response.status_code, response.json()) == (
        413,
        {"message": f"at most {MAX_BATCH} files per request"},
    )


def test_single_match_with_two_files_answers_413(client: httpx.Client) -> None:
    parts = [("file", "a.jpg", b"tiny"), ("file", "b.jpg", b"tiny")]
    response = client.post(
        "/v1/match",
        content=_multipart(parts),
        headers={"content-type": "multipart/form-data; boundary=edge"},
    )
    assert (response.status_code, response.json()) == (
        413,
        {"message": "at most 1 files per request"},
    )


def test_lookup_over_max_queries_answers_413(client: httpx.Client, known: KnownIndex) -> None:
    too_many = {"queries": [{"pdq": known.pdq[0]}] * (MAX_QUERIES + 1)}
    response = client.post("/v1/lookup", json=too_many)
    assert (response.status_code, response.json()) == (
        413,
        {"message": f"at most {MAX_QUERIES} queries per request (--max-queries)"},
    )
    within = client.post("/v1/lookup", json={"queries": [{"pdq": known.pdq[0]}] * MAX_QUERIES})
    assert [r["status"] for r in within.json()["results"]] == ["match"] * MAX_QUERIES


# --- time limits and crashes, off the event loop -------------------------------------------


@pytest.fixture(scope="module")
def markers(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where the faults record which process met them (``hang-``: the worker is on it)."""
    return tmp_path_factory.mktemp("markers")


@pytest.fixture(scope="module")
def faulty_server(
    known: KnownIndex, markers: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServeProcess]:
    with serve_process(
        known.path,
        "--time-limit",
        "2",
        "--workers",
        "1",
        "--hash-workers",
        "1",
        log_dir=tmp_path_factory.mktemp("faulty-log"),
        environment={MARKERS_VARIABLE: str(markers)},
        command=cli_with_faults(),
    ) as served:
        yield served


def _post_faulty(base_url: str, name: str, photo: bytes) -> httpx.Response:
    return httpx.post(
        base_url + "/v1/match?algorithms=pdq,faulty",
        files={"file": (name, photo, "image/jpeg")},
        timeout=120,
    )


def test_slow_upload_answers_timeout(faulty_server: ServeProcess, known: KnownIndex) -> None:
    response = _post_faulty(faulty_server.base_url, "slow-x.jpg", known.photos[0])
    assert response.status_code == 422
    answer = response.json()
    assert answer["error"] == {"kind": "timeout", "message": "took longer than 2 s"}
    assert answer["message"] == "timeout: took longer than 2 s"


def test_lookups_answer_while_an_upload_is_being_hashed(
    faulty_server: ServeProcess, known: KnownIndex, markers: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    base_url = faulty_server.base_url
    monkeypatch.setenv(MARKERS_VARIABLE, str(markers))
    answers: list[httpx.Response] = []
    upload = threading.Thread(
        target=lambda: answers.append(_post_faulty(base_url, "hang-x.jpg", known.photos[0]))
    )
    upload.start()
    try:
        wait_until("the hashing process starting on hang-x.jpg", lambda: read_marker("hang-x.jpg"))
        lookup = httpx.post(
            base_url + "/v1/lookup", json={"queries": [{"pdq": known.pdq[1]}]}, timeout=30
        )
        status = httpx.get(base_url + "/status", timeout=30)
    finally:
        upload.join(timeout=120)
    assert lookup.status_code == 200
    assert lookup.json()["results"][0]["matches"][0]["entry_id"] == "2"
    assert (status.status_code, status.text) == (200, "I-AM-ALIVE")
    assert not upload.is_alive()
    assert answers[0].status_code == 422
    assert answers[0].json()["error"]["kind"] == "timeout"


def test_crashing_upload_answers_crashed_and_server_keeps_serving(
    faulty_server: ServeProcess, known: KnownIndex
) -> None:
    response = _post_faulty(faulty_server.base_url, "crash-x.jpg", known.photos[0])
    assert response.status_code == 422
    error = response.json()["error"]
    assert error["kind"] == "crashed"
    assert "SIGSEGV" in error["message"]
    after = _post_faulty(faulty_server.base_url, "fine.jpg", known.photos[2])
    assert after.status_code == 200
    assert [(m["list"], m["entry_id"]) for m in after.json()["matches"]] == [("KNOWN", "3")]
