"""``/metrics`` and the request log of a running ``hashmatch serve`` with two server processes.

Counts are read as differences around the requests a test sends, so tests sharing the server
do not disturb each other; with ``--workers 2`` whichever process answered, ``/metrics``
(answered by either) adds them up. The request log is one JSON line per request that names
the route template, never a hash, a query string or a token.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from hashmatch import EntryList, build_index
from hashmatch.fixtures.service import (
    KnownIndex,
    ServeProcess,
    known_index,
    serve_process,
    wait_until,
)
from hashmatch.service.config import ServiceConfig
from hashmatch.service.metrics import ServiceMetrics
from hashmatch.service.reloading import IndexWatch

REQUESTS = 24


@pytest.fixture(scope="module")
def known(tmp_path_factory: pytest.TempPathFactory) -> KnownIndex:
    return known_index(tmp_path_factory.mktemp("metrics"))


@pytest.fixture(scope="module")
def server(known: KnownIndex, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServeProcess]:
    with serve_process(
        known.path,
        "--workers",
        "2",
        "--hash-workers",
        "1",
        log_dir=tmp_path_factory.mktemp("metrics-log"),
    ) as served:
        yield served


@pytest.fixture(scope="module")
def client(server: ServeProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.base_url, timeout=60) as http:
        yield http


def _samples(client: httpx.Client) -> list[tuple[str, dict[str, str], float]]:
    response = client.get("/metrics")
    assert response.status_code == 200
    return [
        (sample.name, dict(sample.labels), float(sample.value))
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    ]


def _value(samples: list[tuple[str, dict[str, str], float]], name: str, **labels: str) -> float:
    """The sum of ``name``'s samples whose labels include ``labels`` (0 when none)."""
    return sum(
        value
        for sample_name, sample_labels, value in samples
        if sample_name == name and labels.items() <= sample_labels.items()
    )


def _match(client: httpx.Client, photo: bytes, **headers: str) -> dict[str, Any]:
    response = client.post(
        "/v1/match", content=photo, headers={"content-type": "image/jpeg", **headers}
    )
    answer: dict[str, Any] = response.json()
    return answer


def test_request_counts_add_up_across_server_processes(
    server: ServeProcess, client: httpx.Client
) -> None:
    labels = {"route": "/v1/index", "method": "GET", "status": "200"}
    before = _samples(client)
    for _ in range(REQUESTS):  # a connection each, so either process may take it
        assert httpx.get(server.base_url + "/v1/index", timeout=60).status_code == 200
    after = _samples(client)
    counted = _value(after, "hashmatch_requests_total", **labels) - _value(
        before, "hashmatch_requests_total", **labels
    )
    timed = _value(after, "hashmatch_request_duration_seconds_count", **labels) - _value(
        before, "hashmatch_request_duration_seconds_count", **labels
    )
    assert (counted, timed) == (REQUESTS, REQUESTS)
    slowest = _value(after, "hashmatch_request_duration_seconds_bucket", le="+Inf", **labels)
    assert slowest == _value(after, "hashmatch_requests_total", **labels)


def test_matches_are_counted_by_list_and_algorithm(client: httpx.Client, known: KnownIndex) -> None:
    before = _samples(client)
    answers = [_match(client, photo) for photo in known.photos[:2]]
    after = _samples(client)
    for algorithm in ("pdq", "md5"):
        found = sum(m["algorithm"] == algorithm for a in answers for m in a["matches"])
        assert found >= 2
        name, labels = "hashmatch_matches_total", {"list": "KNOWN", "algorithm": algorithm}
        assert _value(after, name, **labels) - _value(before, name, **labels) == found


def test_upload_errors_are_counted_by_kind(client: httpx.Client, known: KnownIndex) -> None:
    cut = known.photos[0][: len(known.photos[0]) // 2]
    before = _samples(client)
    matched = _match(client, cut)
    hashed = client.post("/v1/hash", content=cut, headers={"content-type": "image/jpeg"})
    after = _samples(client)
    assert (matched["error"]["kind"], hashed.json()["error"]["kind"]) == ("decode", "decode")
    name = "hashmatch_upload_errors_total"
    assert _value(after, name, kind="decode") - _value(before, name, kind="decode") == 2


def test_index_metrics_describe_the_served_version(client: httpx.Client) -> None:
    version = client.get("/v1/index").json()["version"]
    samples = _samples(client)
    assert _value(samples, "hashmatch_index_info", version=version) == 1
    assert _value(samples, "hashmatch_index_loaded") == 1
    assert _value(samples, "hashmatch_index_entries", algorithm="pdq") == 3
    assert _value(samples, "hashmatch_index_entries", algorithm="md5") == 3
    assert _value(samples, "hashmatch_index_load_seconds") >= 0
    assert _value(samples, "hashmatch_index_reloads_total") == 2  # each process's first load
    assert _value(samples, "hashmatch_index_reload_failures_total") == 0
    age = _value(samples, "hashmatch_index_check_age_seconds")
    assert math.isfinite(age)
    assert age >= 0


def test_invented_methods_are_counted_as_other(server: ServeProcess, client: httpx.Client) -> None:
    response = client.request("XYZZY", "/v1/match", headers={"X-Request-ID": "invented-method"})
    assert response.status_code == 405
    metrics = client.get("/metrics").text
    assert "XYZZY" not in metrics
    samples = _samples(client)
    assert _value(samples, "hashmatch_requests_total", method="OTHER", status="405") >= 1
    assert _log_lines(server, "invented-method")[0]["method"] == "OTHER"


# --- the request log -----------------------------------------------------------------------


def _request_lines(log: str) -> list[dict[str, Any]]:
    lines = []
    for line in log.splitlines():
        if " hashmatch.service.requests[" in line:
            lines.append(json.loads(line.split("]: ", 1)[1]))
    return lines


def _log_lines(server: ServeProcess, *request_ids: str) -> list[dict[str, Any]]:
    """The log line of each request id, in that order (waiting, bounded, for them)."""

    def logged() -> bool:
        seen = {line["request_id"] for line in _request_lines(server.log())}
        return set(request_ids) <= seen

    wait_until(f"log lines for {request_ids}", logged, timeout=60)
    lines = _request_lines(server.log())
    found = []
    for request_id in request_ids:
        mine = [line for line in lines if line["request_id"] == request_id]
        assert len(mine) == 1, mine
        found.append(mine[0])
    return found


def test_request_log_has_one_line_per_request_with_its_route_and_matches(
    server: ServeProcess, client: httpx.Client, known: KnownIndex
) -> None:
    matched = _match(client, known.photos[0], **{"X-Request-ID": "log-match"})
    looked_up = client.post(
        "/v1/lookup",
        json={"queries": [{"pdq": known.pdq[1]}, {"md5": known.md5[2]}]},
        headers={"X-Request-ID": "log-lookup"},
    )
    missing = client.get("/nowhere", headers={"X-Request-ID": "log-missing"})
    status = client.get("/status", headers={"X-Request-ID": "log-status"})
    assert looked_up.headers["x-request-id"] == "log-lookup"
    match_line, lookup_line, missing_line, status_line = _log_lines(
        server, "log-match", "log-lookup", "log-missing", "log-status"
    )
    assert {key: match_line[key] for key in ("method", "route", "status", "matches")} == {
        "method": "POST",
        "route": "/v1/match",
        "status": 200,
        "matches": len(matched["matches"]),
    }
    assert (lookup_line["route"], lookup_line["matches"]) == ("/v1/lookup", 2)
    assert (missing.status_code, missing_line["route"], missing_line["status"]) == (
        404,
        "unmatched",
        404,
    )
    assert status.status_code == status_line["status"] == 200
    assert "matches" not in status_line  # only matching routes count matches
    for line in (match_line, lookup_line, missing_line, status_line):
        assert isinstance(line["ms"], (int, float))
        assert line["ms"] >= 0


def test_request_id_is_made_when_the_clients_is_unusable(
    server: ServeProcess, client: httpx.Client
) -> None:
    response = client.get("/healthz", headers={"X-Request-ID": "not allowed: spaces"})
    made = response.headers["x-request-id"]
    assert made != "not allowed: spaces"
    assert len(made) == 32
    assert _log_lines(server, made)[0]["route"] == "/healthz"


def test_request_log_never_holds_hashes_or_query_strings(
    server: ServeProcess, client: httpx.Client, known: KnownIndex
) -> None:
    pdq, md5 = known.pdq[0], known.md5[0]
    answer = client.post(
        "/v1/match?hashes=true",
        content=known.photos[0],
        headers={"content-type": "image/jpeg", "X-Request-ID": "secret-match"},
    ).json()
    assert pdq in json.dumps(answer)  # the client is told the hash; the log is not
    client.post(
        "/v1/lookup", json={"queries": [{"pdq": pdq}]}, headers={"X-Request-ID": "secret-lookup"}
    )
    client.get(
        f"/m/raw_lookup?signal_type=pdq&signal={pdq}", headers={"X-Request-ID": "secret-hma"}
    )
    client.get(f"/v1/index?note=query-{md5}", headers={"X-Request-ID": "secret-query"})
    _log_lines(server, "secret-match", "secret-lookup", "secret-hma", "secret-query")
    log = server.log()
    for secret in (pdq, md5, "query-", "signal_type"):
        assert secret not in log


def test_entries_of_an_algorithm_a_new_version_drops_read_zero(tmp_path: Path) -> None:
    known = known_index(tmp_path)
    metrics = ServiceMetrics()
    watch = IndexWatch(ServiceConfig(index=known.path), on_update=metrics.observe_index)
    try:

        def entries(algorithm: str) -> float | None:
            return metrics.registry.get_sample_value(
                "hashmatch_index_entries", {"algorithm": algorithm}
            )

        assert (entries("pdq"), entries("md5")) == (3, 3)
        pdq_only = [("pdq", code, "KNOWN", str(n), "") for n, code in enumerate(known.pdq, 1)]
        build_index([EntryList(pdq_only[:2], name="KNOWN")], known.path)
        assert watch.check()
        assert (entries("pdq"), entries("md5")) == (2, 0)
    finally:
        watch.stop()
