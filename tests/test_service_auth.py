"""Who may call the service: bearer tokens from a token file, on every route but the open ones.

Every route the app has (``app.state.routes``, HMA's included, read at test time, never
listed here) is asked with each of its methods without a token, with wrong ones and with
right ones. Token files are checked line by line; they are re-read by ``TokenSet.reload`` and
by ``SIGHUP`` on a running ``hashmatch serve``, whose log never holds a token. The command
refuses a reachable address without tokens unless told it is meant.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from hashmatch.errors import OptionError
from hashmatch.fixtures.service import (
    KnownIndex,
    ServeProcess,
    free_port,
    known_index,
    serve_process,
    wait_until,
)
from hashmatch.service.app import create_app
from hashmatch.service.auth import OPEN_PATHS, TokenSet, read_tokens
from hashmatch.service.config import ServiceConfig

ALICE = "alice-token-0123456789abcdef"
BARE = "bare-token-fedcba9876543210"
REQUIRED = "Authentication required"
OPEN = {"/status", "/status/live", "/site-map", "/healthz", "/readyz"}
TOKEN_FILE = f"""# the service's callers
alice   {ALICE}

   # an indented comment, then a token without a name
{BARE}
"""


@pytest.fixture(scope="module")
def known(tmp_path_factory: pytest.TempPathFactory) -> KnownIndex:
    return known_index(tmp_path_factory.mktemp("auth"))


@pytest.fixture(scope="module")
def token_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("tokens") / "tokens.txt"
    path.write_text(TOKEN_FILE)
    return path


def _client(config: ServiceConfig) -> Iterator[tuple[FastAPI, TestClient]]:
    app = create_app(config)
    with TestClient(app) as client:
        yield app, client


@pytest.fixture(scope="module")
def guarded(known: KnownIndex, token_file: Path) -> Iterator[tuple[FastAPI, TestClient]]:
    yield from _client(ServiceConfig(index=known.path, token_file=token_file))


@pytest.fixture(scope="module")
def public_metrics(known: KnownIndex, token_file: Path) -> Iterator[tuple[FastAPI, TestClient]]:
    yield from _client(ServiceConfig(index=known.path, token_file=token_file, public_metrics=True))


def _requests(app: FastAPI) -> list[tuple[str, str]]:
    """(method, concrete path) for every route and method the app answers."""
    table = app.state.routes
    return [
        (method, re.sub(r"\{[^}]*\}", "x", path)) for path, methods in table for method in methods
    ]


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


# --- every route ---------------------------------------------------------------------------


def test_open_paths_are_exactly_the_health_checks() -> None:
    assert OPEN_PATHS == OPEN


def test_route_table_includes_every_router(guarded: tuple[FastAPI, TestClient]) -> None:
    paths = {path for path, _ in guarded[0].state.routes}
    assert {"/v1/match", "/v1/lookup", "/metrics", "/status", "/openapi.json"} <= paths
    assert any(path.startswith("/m/") for path in paths)  # HMA's, once its router is filled


def test_every_route_without_a_token_answers_401_except_open_paths(
    guarded: tuple[FastAPI, TestClient],
) -> None:
    app, client = guarded
    refused, answered = [], []
    for method, path in _requests(app):
        response = client.request(method, path)
        if path in OPEN:
            answered.append((method, path, response.status_code))
            continue
        refused.append((method, path))
        assert response.status_code == 401, (method, path)
        assert response.headers["content-type"].startswith("text/plain")
        if method != "HEAD":
            assert response.text == REQUIRED, (method, path)
    assert all(status != 401 for _, _, status in answered)
    assert ("GET", "/metrics") in refused
    assert {path for _, path, _ in answered} == OPEN


@pytest.mark.parametrize(
    "authorization",
    [
        "Bearer wrong-token-0123456789abcdef",
        f"Bearer {ALICE[:-1]}",  # a prefix of a right one
        f"Bearer {ALICE}x",  # a right one and more
        f"Basic {ALICE}",  # the right token in another scheme
        f"{ALICE}",  # no scheme
        "Bearer ",
        "Bearer alice",  # the name is not the token
    ],
)
def test_every_route_with_a_wrong_token_answers_401(
    guarded: tuple[FastAPI, TestClient], authorization: str
) -> None:
    app, client = guarded
    for method, path in _requests(app):
        if path in OPEN:
            continue
        response = client.request(method, path, headers={"Authorization": authorization})
        assert response.status_code == 401, (method, path)


@pytest.mark.parametrize("token", [ALICE, BARE], ids=["named", "bare"])
def test_every_route_with_a_right_token_passes(
    guarded: tuple[FastAPI, TestClient], token: str
) -> None:
    app, client = guarded
    for method, path in _requests(app):
        response = client.request(method, path, headers=_bearer(token))
        assert response.status_code != 401, (method, path, response.text)
    assert client.get("/v1/index", headers=_bearer(token)).status_code == 200


def test_bearer_scheme_is_case_insensitive(guarded: tuple[FastAPI, TestClient]) -> None:
    client = guarded[1]
    response = client.get("/v1/index", headers={"Authorization": f"bearer  {ALICE} "})
    assert response.status_code == 200


def test_public_metrics_opens_metrics_only(
    public_metrics: tuple[FastAPI, TestClient],
) -> None:
    client = public_metrics[1]
    metrics = client.get("/metrics")
    assert metrics.status_code == 200
    assert "hashmatch_requests_total" in metrics.text
    assert client.get("/v1/index").status_code == 401
    assert client.post("/v1/lookup", json={"queries": []}).status_code == 401


# --- token files ---------------------------------------------------------------------------


def test_token_file_names_tokens_and_skips_comments(token_file: Path) -> None:
    # a bare token is named after its line
    assert read_tokens(token_file) == {ALICE: "alice", BARE: "token-5"}


def test_token_set_identifies_callers_by_name(token_file: Path) -> None:
    tokens = TokenSet(token_file)
    assert tokens.enabled
    assert tokens.identify(f"Bearer {ALICE}") == "alice"
    assert tokens.identify(f"Bearer {BARE}") == "token-5"
    assert tokens.identify("Bearer nobody-0123456789abcdef") is None
    assert tokens.identify(None) is None
    assert not TokenSet(None).enabled


@pytest.mark.parametrize(
    ("content", "where", "reason"),
    [
        ("# ok\nalice short\n", ":2:", "a token must be at least 16 characters"),
        ("alice tok-0123456789abcdef extra\n", ":1:", "expected `NAME TOKEN` or `TOKEN`"),
        (
            f"alice {ALICE}\n\nbob {ALICE}\n",
            ":3:",
            "the same token appears twice",
        ),
        ("# only a comment\n\n", ":", "the token file holds no tokens"),
        ("", ":", "the token file holds no tokens"),
        ("alice t\u00f6ken-0123456789abcdef\n", ":1:", "a token must be printable ASCII"),
    ],
    ids=["short", "three_fields", "duplicate", "comments_only", "empty", "not_ascii"],
)
def test_bad_token_file_is_refused_naming_file_and_line(
    tmp_path: Path, content: str, where: str, reason: str
) -> None:
    path = tmp_path / "tokens.txt"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(OptionError) as raised:
        read_tokens(path)
    assert str(raised.value).startswith(f"{path}{where} ")
    assert reason in str(raised.value)


@pytest.mark.parametrize("kind", ["missing", "directory", "not_utf8"])
def test_unreadable_token_file_is_refused_naming_it(tmp_path: Path, kind: str) -> None:
    path = tmp_path / "tokens.txt"
    if kind == "directory":
        path.mkdir()
    elif kind == "not_utf8":
        path.write_bytes(b"alice \xff\xfe0123456789abcdef\n")
    with pytest.raises(OptionError) as raised:
        read_tokens(path)
    assert str(raised.value).startswith(f"{path}: cannot read the token file: ")


def test_reload_rereads_the_token_file_and_keeps_tokens_when_broken(tmp_path: Path) -> None:
    path = tmp_path / "tokens.txt"
    path.write_text(f"alice {ALICE}\n")
    tokens = TokenSet(path)
    path.write_text(f"bob {BARE}\n")
    tokens.reload()
    assert (tokens.identify(f"Bearer {BARE}"), tokens.identify(f"Bearer {ALICE}")) == ("bob", None)
    path.write_text("bob short\n")  # broken: the tokens in force stay
    tokens.reload()
    assert tokens.identify(f"Bearer {BARE}") == "bob"


# --- a running server ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def served(
    known: KnownIndex, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[ServeProcess, Path]]:
    folder = tmp_path_factory.mktemp("served")
    path = folder / "tokens.txt"
    path.write_text(f"alice {ALICE}\n")
    with serve_process(
        known.path, "--token-file", str(path), "--workers", "1", log_dir=folder
    ) as server:
        yield server, path


def _status_with(base_url: str, token: str) -> int:
    return httpx.get(base_url + "/v1/index", headers=_bearer(token), timeout=30).status_code


def test_sighup_rotates_the_tokens_of_a_running_server(
    served: tuple[ServeProcess, Path],
) -> None:
    server, path = served
    assert _status_with(server.base_url, ALICE) == 200
    assert _status_with(server.base_url, BARE) == 401
    rotated = path.with_suffix(".new")
    rotated.write_text(f"bob {BARE}\n")
    rotated.replace(path)
    server.signal(signal.SIGHUP)
    wait_until(
        "the new token working after SIGHUP",
        lambda: _status_with(server.base_url, BARE) == 200,
        timeout=60,
    )
    assert _status_with(server.base_url, ALICE) == 401
    # back as it was, for the other tests of this server
    path.write_text(f"alice {ALICE}\n")
    server.signal(signal.SIGHUP)
    wait_until(
        "the first token working again",
        lambda: _status_with(server.base_url, ALICE) == 200,
        timeout=60,
    )


def test_tokens_never_appear_in_the_log(
    served: tuple[ServeProcess, Path], known: KnownIndex
) -> None:
    server, _ = served
    wrong = "guessed-token-0123456789abcdef"
    with httpx.Client(base_url=server.base_url, timeout=30) as client:
        assert client.get("/v1/index", headers=_bearer(ALICE)).status_code == 200
        assert client.get("/v1/index", headers=_bearer(wrong)).status_code == 401
        response = client.post(
            "/v1/match", content=known.photos[0], headers={**_bearer(ALICE), "X-Request-ID": "r-1"}
        )
        assert response.status_code in (200, 415)
        client.get(f"/v1/index?token={ALICE}", headers=_bearer(ALICE))
    wait_until("the request lines in the log", lambda: '"request_id":"r-1"' in server.log())
    log = server.log()
    assert '"caller":"alice"' in log  # the caller is named, by name
    for token in (ALICE, wrong, BARE):
        assert token not in log


# --- the command ---------------------------------------------------------------------------


def _environment() -> dict[str, str]:
    """This environment without any ``HASHMATCH_`` setting that would change the command."""
    return {k: v for k, v in os.environ.items() if not k.startswith("HASHMATCH_")}


def _serve_command(index: Path, *arguments: str) -> list[str]:
    return [sys.executable, "-m", "hashmatch.cli", "serve", str(index), *arguments]


def test_command_refuses_a_reachable_address_without_tokens(known: KnownIndex) -> None:
    done = subprocess.run(
        _serve_command(known.path, "--host", "0.0.0.0", "--port", str(free_port())),
        capture_output=True,
        text=True,
        timeout=120,
        env=_environment(),
    )
    assert done.returncode == 2
    assert "refusing to serve on 0.0.0.0 without authentication: give --token-file" in (done.stderr)


def test_command_refuses_a_bad_token_file_naming_its_line(
    known: KnownIndex, tmp_path: Path
) -> None:
    path = tmp_path / "tokens.txt"
    path.write_text(f"alice {ALICE}\nbob short\n")
    done = subprocess.run(
        _serve_command(known.path, "--token-file", str(path), "--port", str(free_port())),
        capture_output=True,
        text=True,
        timeout=120,
        env=_environment(),
    )
    assert done.returncode == 2
    assert f"{path}:2: a token must be at least 16 characters" in done.stderr


def _warning_of(arguments: list[str], warning: str, log: Path) -> str:
    """Start the command, wait (bounded) until ``warning`` is in its output, stop it."""
    with open(log, "wb") as output:
        process = subprocess.Popen(
            arguments,
            stdout=output,
            stderr=subprocess.STDOUT,
            env=_environment(),
            start_new_session=True,
        )
    try:
        wait_until(
            f"the warning {warning!r}",
            lambda: warning in log.read_text() or process.poll() is not None,
            timeout=120,
        )
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    return log.read_text()


def test_command_warns_when_serving_loopback_without_tokens(
    known: KnownIndex, tmp_path: Path
) -> None:
    port = str(free_port())
    warning = (
        "warning: serving without authentication on 127.0.0.1 (loopback only);"
        " give --token-file to require bearer tokens"
    )
    arguments = _serve_command(known.path, "--host", "127.0.0.1", "--port", port)
    assert warning in _warning_of(arguments, warning, tmp_path / "serve.log")


def test_command_warns_when_told_to_serve_without_tokens(known: KnownIndex, tmp_path: Path) -> None:
    # a documentation address (TEST-NET-1): not this machine's, so nothing is exposed
    port = str(free_port())
    warning = "warning: serving WITHOUT authentication on 192.0.2.1 (--insecure-no-auth)"
    arguments = _serve_command(
        known.path, "--host", "192.0.2.1", "--port", port, "--insecure-no-auth"
    )
    assert warning in _warning_of(arguments, warning, tmp_path / "serve.log")
