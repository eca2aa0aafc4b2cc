"""``hashmatch serve`` as a real process: hot reload under load, SIGTERM with requests in
flight, a killed server process replaced, the contract's routes over the wire."""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

httpx = pytest.importorskip("httpx", reason="the serve extra is not installed")
pytest.importorskip("fastapi", reason="the serve extra is not installed")

from hashmatch import EntryList, build_index  # noqa: E402
from hashmatch.fixtures.faults import cli_with_faults  # noqa: E402
from hashmatch.fixtures.service import (  # noqa: E402
    KnownIndex,
    ServeProcess,
    jpeg_bytes,
    known_index,
    rss_bytes,
    serve_process,
    server_pids,
    wait_until,
)

WAIT = 120.0
JPEG = {"content-type": "image/jpeg"}


@pytest.fixture(scope="module")
def known(tmp_path_factory: pytest.TempPathFactory) -> KnownIndex:
    return known_index(tmp_path_factory.mktemp("served"))


@pytest.fixture(scope="module")
def server(known: KnownIndex, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServeProcess]:
    logs = tmp_path_factory.mktemp("logs")
    with serve_process(known.path, "--workers", "2", log_dir=logs) as served:
        yield served


def test_the_server_answers_uploads_and_lookups_over_the_wire(server: ServeProcess, known):
    with httpx.Client(base_url=server.base_url, timeout=WAIT) as client:
        match = client.post("/v1/match", content=known.photos[0], headers=JPEG).json()
        assert match["status"] == "match"
        lookup = client.post("/v1/lookup", json={"queries": [{"pdq": known.pdq[2]}]}).json()
        assert lookup["results"][0]["matches"][0]["entry_id"] == "3"
        assert client.get("/readyz").status_code == 200
        assert "hashmatch_requests_total" in client.get("/metrics").text


def test_a_killed_server_process_is_replaced_and_service_goes_on(server: ServeProcess, known):
    before = server_pids(server.process.pid)
    assert len(before) == 2
    os.kill(before[0], signal.SIGKILL)
    wait_until(
        "a new server process replacing the killed one",
        lambda: (
            len(server_pids(server.process.pid)) == 2
            and before[0] not in server_pids(server.process.pid)
        ),
        WAIT,
    )

    def answers_in_a_row(count: int) -> bool:
        with httpx.Client(base_url=server.base_url, timeout=WAIT) as client:
            for _ in range(count):
                body = client.post("/v1/lookup", json={"queries": [{"pdq": known.pdq[0]}]})
                if body.status_code != 200 or not body.json()["results"][0]["matches"]:
                    return False
        return True

    wait_until("40 right answers in a row after the kill", lambda: answers_in_a_row(40), WAIT)
    assert "died (killed by SIGKILL)" in server.log()


def _build_generation(index: Path, known: KnownIndex, generation: int) -> str:
    """A version whose marker entry names its generation: (pdq[0], id gen-N)."""
    entries = [("pdq", known.pdq[0], "MARK", f"gen-{generation}")]
    entries += [("pdq", h, "KNOWN", str(n)) for n, h in enumerate(known.pdq[1:], start=2)]
    report = build_index([EntryList(entries, name="MARK")], index)
    return report.version


def test_hot_reload_under_load_never_fails_and_answers_match_their_version(
    known: KnownIndex, tmp_path: Path
) -> None:
    index = tmp_path / "moving"
    generation_of: dict[str, int] = {_build_generation(index, known, 0): 0}
    failures: list[str] = []
    answers: list[tuple[str, str]] = []
    uploads: list[tuple[str, str]] = []
    stop = threading.Event()
    arguments = ("--workers", "2", "--reload-interval", "0.2", "--stale-after", "30")
    with serve_process(index, *arguments, log_dir=tmp_path) as served:
        barrier = threading.Barrier(9)

        def query(number: int) -> None:
            with httpx.Client(base_url=served.base_url, timeout=WAIT) as client:
                barrier.wait()
                while not stop.is_set():
                    try:
                        if number == 0:  # one thread uploads: hashing runs on a pinned version
                            r = client.post("/v1/match", content=known.photos[0], headers=JPEG)
                            body = r.json()
                            ids = [m["entry_id"] for m in body["matches"] if m["list"] == "MARK"]
                            uploads.append((body["index_version"], ids[0]))
                        else:
                            r = client.post("/v1/lookup", json={"queries": [{"pdq": known.pdq[0]}]})
                            body = r.json()
                            answers.append(
                                (
                                    body["index_version"],
                                    body["results"][0]["matches"][0]["entry_id"],
                                )
                            )
                        if r.status_code != 200:
                            failures.append(f"{r.status_code} {r.text[:200]}")
                    except Exception as exc:  # a failed request is what this test counts
                        failures.append(repr(exc))

        threads = [threading.Thread(target=query, args=(n,)) for n in range(8)]
        for thread in threads:
            thread.start()
        barrier.wait()
        pids = server_pids(served.process.pid)
        rss_after: list[int] = []
        for generation in range(1, 21):
            version = _build_generation(index, known, generation)
            generation_of[version] = generation
            if generation % 5 == 0:
                served.signal(signal.SIGHUP)  # the other way to ask for a check
            wait_until(
                f"generation {generation} answered",
                lambda v=version: any(a[0] == v for a in answers[-50:]),
                WAIT,
            )
            if generation in (5, 20):
                rss_after.append(sum(rss_bytes(pid) for pid in pids))
        stop.set()
        for thread in threads:
            thread.join(WAIT)
    assert failures == []
    seen = {version for version, _ in answers}
    assert len(seen) >= 15  # most generations were served, and each answer fits its version
    for version, entry_id in answers + uploads:
        assert entry_id == f"gen-{generation_of[version]}", version
    assert uploads, "the upload thread got answers"
    # 15 reloads later the server processes hold no more than a few MB more
    assert rss_after[1] - rss_after[0] < 64 * 1024 * 1024, rss_after


def test_sigterm_lets_requests_in_flight_finish_and_exits_0(known: KnownIndex, tmp_path: Path):
    slow = jpeg_bytes(7)
    command = cli_with_faults()
    with serve_process(
        known.path, "--workers", "1", "--time-limit", "60", log_dir=tmp_path, command=command
    ) as served:
        outcome: dict[str, Any] = {}

        def upload() -> None:
            with httpx.Client(base_url=served.base_url, timeout=WAIT) as client:
                response = client.post(
                    "/v1/match?algorithms=pdq,faulty",
                    files={"file": ("slow-upload.jpg", slow)},
                )
                outcome["status"] = response.status_code
                outcome["body"] = response.json()

        thread = threading.Thread(target=upload)
        thread.start()

        def in_flight() -> bool:
            text = httpx.get(served.base_url + "/metrics", timeout=10).text
            line = next(
                x for x in text.splitlines() if x.startswith("hashmatch_requests_in_flight")
            )
            return float(line.split()[-1]) >= 2  # the upload and this scrape

        wait_until("the slow upload in flight", in_flight, WAIT)
        served.signal(signal.SIGTERM)
        thread.join(WAIT)
        code = served.process.wait(WAIT)
    assert outcome.get("status") == 200, outcome
    assert outcome["body"]["status"] == "no_match"
    assert code == 0
    with pytest.raises(httpx.TransportError):
        httpx.get(served.base_url + "/status", timeout=5)


def test_the_command_refuses_a_path_without_an_index(tmp_path: Path) -> None:
    import subprocess
    import sys

    result = subprocess.run(
        [sys.executable, "-m", "hashmatch.cli", "serve", str(tmp_path / "none"), "--port", "0"],
        capture_output=True,
        text=True,
        timeout=WAIT,
    )
    assert result.returncode == 2
    assert "none" in result.stderr


def test_settings_come_from_environment_variables_too(known: KnownIndex, tmp_path: Path):
    environment = {"HASHMATCH_WORKERS": "1", "HASHMATCH_MAX_BATCH": "1"}
    with serve_process(known.path, log_dir=tmp_path, environment=environment) as served:
        assert len(server_pids(served.process.pid)) == 1
        files = [("file", ("a.jpg", known.photos[0])), ("file", ("b.jpg", known.photos[1]))]
        response = httpx.post(served.base_url + "/v1/match/batch", files=files, timeout=WAIT)
        assert response.status_code == 413
        assert "at most 1 files" in response.json()["message"]
        assert "loopback only" in served.log()
