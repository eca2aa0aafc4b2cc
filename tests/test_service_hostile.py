"""The hostile corpus against every upload route of a running ``hashmatch serve``.

Each regular file of :func:`~hashmatch.fixtures.hostile.write_hostile_corpus` is posted to
``/v1/match`` (raw body and multipart), ``/v1/match/batch``, ``/v1/hash`` and HMA's
``POST /m/lookup`` and ``POST /h/hash``: a bad file answers 4xx (its result, in a batch) with a
message naming what was wrong, a good one is hashed; nothing answers 5xx, the server stays up,
and its processes' memory does not grow with repetition. Multipart file names go as the
corpus's raw bytes (one is not UTF-8).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from hashmatch.fixtures.hostile import HostileCase, write_hostile_corpus
from hashmatch.fixtures.service import (
    KnownIndex,
    ServeProcess,
    child_pids,
    known_index,
    rss_bytes,
    serve_process,
    server_pids,
)
from hashmatch.service.app import create_app
from hashmatch.service.config import ServiceConfig

RSS_GROWTH_BOUND = 200 * 1024 * 1024
PASSES = 3


@dataclass(frozen=True)
class Sent:
    """One corpus file as a request: its case, bytes and multipart file name (raw bytes)."""

    case: HostileCase
    data: bytes
    file_name: bytes

    @property
    def expected_kind(self) -> str | None:
        """The error kind the corpus expects when the file is named explicitly."""
        return None if self.case.expect == "hashed" else self.case.error_kind


@dataclass(frozen=True)
class UploadRoute:
    name: str
    path: str
    field: str | None
    """The multipart field the file goes in; None: the raw body."""


ROUTES = [
    UploadRoute("match_raw", "/v1/match", None),
    UploadRoute("match_multipart", "/v1/match", "file"),
    UploadRoute("batch", "/v1/match/batch", "file"),
    UploadRoute("hash", "/v1/hash", None),
    UploadRoute("hma_lookup", "/m/lookup", "photo"),
    UploadRoute("hma_hash", "/h/hash", "photo"),
]


@pytest.fixture(scope="module")
def known(tmp_path_factory: pytest.TempPathFactory) -> KnownIndex:
    return known_index(tmp_path_factory.mktemp("hostile"))


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> list[Sent]:
    """Every regular file of the corpus this process can read (the unreadable one is
    readable as root), with its bytes."""
    sent = []
    for case in write_hostile_corpus(tmp_path_factory.mktemp("corpus")):
        path = case.path
        if os.path.islink(path) or not os.path.isfile(path) or not os.access(path, os.R_OK):
            continue
        sent.append(Sent(case, path.read_bytes(), os.fsencode(path.name)))
    return sent


@pytest.fixture(scope="module")
def server(known: KnownIndex, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServeProcess]:
    with serve_process(
        known.path,
        "--workers",
        "1",
        "--hash-workers",
        "1",
        log_dir=tmp_path_factory.mktemp("hostile-log"),
    ) as served:
        yield served


@pytest.fixture(scope="module")
def client(server: ServeProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.base_url, timeout=120) as http:
        yield http


@pytest.fixture(scope="module")
def routes_served(known: KnownIndex) -> set[tuple[str, str]]:
    """(path, method) of every route the app has (the table, without starting it)."""
    table = create_app(ServiceConfig(index=known.path)).state.routes
    return {(path, method) for path, methods in table for method in methods}


def _multipart(field: str, file_name: bytes, data: bytes) -> tuple[bytes, str]:
    boundary = b"hostile-boundary-7f3a"
    body = (
        b"--" + boundary + b"\r\n"
        b'Content-Disposition: form-data; name="'
        + field.encode()
        + b'"; filename="'
        + file_name
        + b'"\r\nContent-Type: application/octet-stream\r\n\r\n'
        + data
        + b"\r\n--"
        + boundary
        + b"--\r\n"
    )
    return body, f"multipart/form-data; boundary={boundary.decode()}"


def _post(client: httpx.Client, route: UploadRoute, sent: Sent) -> httpx.Response:
    if route.field is None:
        body, content_type = sent.data, "application/octet-stream"
    else:
        body, content_type = _multipart(route.field, sent.file_name, sent.data)
    return client.post(route.path, content=body, headers={"content-type": content_type})


def _status_for(kind: str) -> int:
    return 413 if kind == "too_large" else 400


def _native_problem(route: UploadRoute, sent: Sent, status: int, body: Any) -> str | None:
    kind = sent.expected_kind
    if route.field is None and not sent.data:  # an empty raw body is the request's fault
        ok = status == 400 and "empty" in body["message"]
        return None if ok else f"empty body: {status} {body}"
    if route.name == "batch":
        error = body["results"][0]["error"]
        found = None if error is None else error["kind"]
        return None if (status, found) == (200, kind) else f"{status} {found}: {error}"
    if kind is None:
        return None if status == 200 and body.get("error") is None else f"{status} {body}"
    if status != _status_for(kind) or body["error"]["kind"] != kind:
        return f"{status} {body}"
    return None if body["message"].startswith(f"{kind}: ") else f"message: {body['message']}"


def _hma_problem(route: UploadRoute, sent: Sent, status: int, body: Any) -> str | None:
    kind = sent.expected_kind
    if status >= 500:
        return f"{status} {body}"
    if kind is not None:
        named = isinstance(body, dict) and kind in str(body.get("message", ""))
        return None if status == _status_for(kind) and named else f"{status} {body}"
    # a good file: its hashes, or 400 when too flat to match (HMA's "invalid signal")
    if status == 200 or (isinstance(body, dict) and body.get("message")):
        return None
    return f"{status} {body}"


def _problems(client: httpx.Client, route: UploadRoute, corpus: list[Sent]) -> list[str]:
    judge: Callable[[UploadRoute, Sent, int, Any], str | None] = (
        _hma_problem if route.name.startswith("hma_") else _native_problem
    )
    problems = []
    for sent in corpus:
        response = _post(client, route, sent)
        try:
            body = response.json()
        except ValueError:
            problems.append(f"{sent.case.kind}: not JSON: {response.status_code} {response.text}")
            continue
        problem = judge(route, sent, response.status_code, body)
        if problem is not None:
            problems.append(f"{sent.case.kind}: {problem}")
    return problems


def _skip_absent(route: UploadRoute, routes_served: set[tuple[str, str]]) -> None:
    if (route.path, "POST") not in routes_served:
        pytest.skip(f"POST {route.path} is not served yet (service/hma_routes.py)")


def test_corpus_covers_good_and_bad_files(corpus: list[Sent]) -> None:
    kinds = {sent.case.kind for sent in corpus}
    assert {"zero_bytes", "png_bomb_100k", "truncated_jpeg_50pct", "non_utf8_name"} <= kinds
    assert {sent.expected_kind for sent in corpus} >= {None, "decode", "unsupported", "too_large"}


@pytest.mark.parametrize("route", ROUTES, ids=[route.name for route in ROUTES])
def test_every_hostile_file_answers_4xx_naming_the_problem(
    client: httpx.Client,
    corpus: list[Sent],
    route: UploadRoute,
    routes_served: set[tuple[str, str]],
) -> None:
    _skip_absent(route, routes_served)
    assert _problems(client, route, corpus) == []
    assert client.get("/status").text == "I-AM-ALIVE"


def _server_rss(server: ServeProcess) -> int:
    """Resident memory of the server processes and their hashing processes."""
    servers = server_pids(server.process.pid)
    assert servers, "no server process found"
    processes = [*servers, *(child for pid in servers for child in child_pids(pid))]
    return sum(rss_bytes(pid) for pid in processes)


def test_memory_stays_bounded_over_repeated_corpus(
    server: ServeProcess,
    client: httpx.Client,
    corpus: list[Sent],
    routes_served: set[tuple[str, str]],
) -> None:
    routes = [route for route in ROUTES if (route.path, "POST") in routes_served]
    before = _server_rss(server)
    for _ in range(PASSES):
        for route in routes:
            for sent in corpus:
                assert _post(client, route, sent).status_code < 500, (route.name, sent.case.kind)
    after = _server_rss(server)
    assert client.get("/status").text == "I-AM-ALIVE"
    assert after - before < RSS_GROWTH_BOUND, f"{before >> 20} MiB -> {after >> 20} MiB"


def test_corpus_file_names_reach_batch_results(client: httpx.Client, corpus: list[Sent]) -> None:
    odd = next(sent for sent in corpus if sent.case.kind == "non_utf8_name")
    response = _post(client, ROUTES[2], odd)
    assert response.status_code == 200
    (result,) = response.json()["results"]
    assert result["error"] is None
    assert result["name"].endswith(".jpg")
    assert result["name"].startswith("caf")
