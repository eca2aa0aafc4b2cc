"""The native API (``/v1``), health and readiness, against the in-process app."""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path

import pytest

pytest.importorskip("fastapi", reason="the serve extra is not installed")

from fastapi.testclient import TestClient
from PIL import Image

from hashmatch import Matcher, MatchResult, hash_image
from hashmatch.fixtures.service import KnownIndex, jpeg_bytes, known_index
from hashmatch.service.app import create_app
from hashmatch.service.config import ServiceConfig

JPEG = {"content-type": "image/jpeg"}


@pytest.fixture(scope="module")
def known(tmp_path_factory: pytest.TempPathFactory) -> KnownIndex:
    return known_index(tmp_path_factory.mktemp("native"))


@pytest.fixture(scope="module")
def client(known: KnownIndex) -> Iterator[TestClient]:
    with TestClient(create_app(ServiceConfig(index=known.path))) as test_client:
        yield test_client


def rotated(data: bytes) -> bytes:
    buffer = io.BytesIO()
    Image.open(io.BytesIO(data)).rotate(90, expand=True).save(buffer, "JPEG", quality=92)
    return buffer.getvalue()


def test_match_with_raw_bytes_gives_the_librarys_result(client: TestClient, known: KnownIndex):
    response = client.post("/v1/match", content=known.photos[1], headers=JPEG)
    assert response.status_code == 200
    body = response.json()
    library = Matcher.open(known.path).match(known.photos[1])
    assert MatchResult.from_json(body).matches == library.matches
    assert body["status"] == "match"
    assert {(m["list"], m["entry_id"], m["algorithm"]) for m in body["matches"]} == {
        ("KNOWN", "2", "pdq"),
        ("KNOWN", "2", "md5"),
    }
    assert body["index_version"] == library.index_version
    assert body["error"] is None and "hashes" not in body


def test_match_accepts_a_multipart_file_and_octet_stream(client: TestClient, known: KnownIndex):
    multipart = client.post("/v1/match", files={"image": ("upload.jpg", known.photos[0])})
    octets = client.post(
        "/v1/match",
        content=known.photos[0],
        headers={"content-type": "application/octet-stream"},
    )
    assert multipart.json()["status"] == octets.json()["status"] == "match"


def test_hashes_true_returns_the_computed_hashes(client: TestClient, known: KnownIndex):
    body = client.post("/v1/match?hashes=true", content=known.photos[0], headers=JPEG).json()
    assert body["hashes"] == {"pdq": known.pdq[0], "md5": known.md5[0]}
    assert body["quality"] == hash_image(known.photos[0], ["pdq"]).pdq_quality


def test_switches_and_thresholds_are_query_parameters(client: TestClient, known: KnownIndex):
    turned = rotated(known.photos[2])
    found = client.post("/v1/match", content=turned, headers=JPEG).json()
    assert found["status"] == "match"
    variants = {m["variant"] for m in found["matches"] if m["algorithm"] == "pdq"}
    assert variants and all(v.startswith("rotate") for v in variants)
    plain = client.post("/v1/match?dihedral=false", content=turned, headers=JPEG).json()
    assert plain["status"] == "no_match"
    strict = client.post(
        "/v1/match?threshold=pdq:0&algorithms=pdq", content=turned, headers=JPEG
    ).json()
    assert strict["status"] == "no_match"
    bad = client.post("/v1/match?threshold=pdq", content=turned, headers=JPEG)
    assert bad.status_code == 400 and "ALGORITHM:DISTANCE" in bad.json()["message"]
    unknown = client.post("/v1/match?algorithms=nope", content=turned, headers=JPEG)
    assert unknown.status_code == 400 and "nope" in unknown.json()["message"]


def test_an_unknown_photo_does_not_match(client: TestClient):
    body = client.post("/v1/match", content=jpeg_bytes(99), headers=JPEG).json()
    assert body["status"] == "no_match" and body["matches"] == []


def test_a_broken_image_is_a_4xx_naming_what_was_wrong(client: TestClient, known: KnownIndex):
    truncated = known.photos[0][:200]
    response = client.post("/v1/match", content=truncated, headers=JPEG)
    assert 400 <= response.status_code < 500
    body = response.json()
    assert body["status"] == "error" and body["error"]["kind"] in {"decode", "unsupported"}
    assert body["message"].startswith(body["error"]["kind"])


def test_batch_answers_each_file_in_order(client: TestClient, known: KnownIndex):
    files = [
        ("file", ("a.jpg", known.photos[0])),
        ("file", ("broken.jpg", b"\xff\xd8\xff not a jpeg")),
        ("file", ("unknown.jpg", jpeg_bytes(98))),
        ("file", ("c.jpg", known.photos[2])),
    ]
    response = client.post("/v1/match/batch", files=files)
    assert response.status_code == 200
    results = response.json()["results"]
    assert [(r["name"], r["status"]) for r in results] == [
        ("a.jpg", "match"),
        ("broken.jpg", "error"),
        ("unknown.jpg", "no_match"),
        ("c.jpg", "match"),
    ]
    assert results[3]["matches"][0]["entry_id"] == "3"


def test_lookup_answers_every_query_in_order(client: TestClient, known: KnownIndex):
    near = bytearray(bytes.fromhex(known.pdq[1]))
    near[0] ^= 0b111  # 3 bits away
    queries = [
        {"pdq": known.pdq[0]},
        {"pdq": "a5" * 32},
        {"pdq": near.hex()},
        {"md5": known.md5[2]},
    ]
    body = client.post("/v1/lookup", json={"queries": queries}).json()
    got = [
        (r["status"], [(m["entry_id"], m["distance"]) for m in r["matches"]])
        for r in body["results"]
    ]
    assert got == [
        ("match", [("1", 0)]),
        ("no_match", []),
        ("match", [("2", 3)]),
        ("match", [("3", 0)]),
    ]
    strict = client.post(
        "/v1/lookup", json={"queries": [{"pdq": near.hex()}], "thresholds": {"pdq": 2}}
    ).json()
    assert strict["results"][0]["status"] == "no_match"


def test_lookup_errors_name_the_query(client: TestClient):
    response = client.post("/v1/lookup", json={"queries": [{"pdq": "a5" * 32}, {"pdq": "zz"}]})
    assert response.status_code == 400
    assert response.json()["message"].startswith("queries[1]:")
    assert "zz" not in response.json()["message"]  # hashes are never quoted
    shape = client.post("/v1/lookup", json={"queries": "nope"})
    assert shape.status_code == 422 and "queries" in shape.json()["message"]


def test_hash_returns_hashes_quality_and_size(client: TestClient, known: KnownIndex):
    body = client.post(
        "/v1/hash?algorithms=pdq,phash", content=known.photos[0], headers=JPEG
    ).json()
    expected = hash_image(known.photos[0], ["pdq", "phash"])
    assert body["hashes"] == {"pdq": expected["pdq"].hex, "phash": expected["phash"].hex}
    assert (body["quality"], body["width"], body["height"]) == (expected.pdq_quality, 640, 480)


def test_index_describes_the_served_version(client: TestClient, known: KnownIndex):
    body = client.get("/v1/index").json()
    assert body["version"] == Matcher.open(known.path).version
    assert body["algorithms"]["pdq"]["entries"] == 3
    assert body["algorithms"]["pdq"]["threshold"] == 31
    assert [item["name"] for item in body["lists"]] == ["KNOWN"]
    assert body["reload"]["failures"] == 0 and body["loaded_at"] > 0


def test_health_and_readiness(client: TestClient):
    assert client.get("/healthz").json() == {"status": "alive"}
    ready = client.get("/readyz")
    assert ready.status_code == 200 and ready.json()["ready"] is True
    assert client.get("/status").text == "I-AM-ALIVE"
    assert client.get("/openapi.json").json()["info"]["title"] == "hashmatch"
    assert "/v1/match" in client.get("/site-map").json()


def test_an_index_not_published_yet_is_503_until_it_is(tmp_path: Path, known: KnownIndex):
    from hashmatch import EntryList, build_index

    empty = tmp_path / "later"
    empty.mkdir()
    config = ServiceConfig(index=empty, reload_interval=0.1, stale_after=60)
    with TestClient(create_app(config)) as client:
        assert client.get("/status").text == "INDEX-NOT-LOADED"
        assert client.get("/status").status_code == 503
        assert client.get("/readyz").status_code == 503
        lookup = client.post("/v1/lookup", json={"queries": [{"pdq": known.pdq[0]}]})
        assert lookup.status_code == 503 and lookup.json() == {"message": "index not yet ready"}
        build_index([EntryList([("pdq", known.pdq[0], "LATE", "1")], name="LATE")], empty)
        from hashmatch.fixtures.service import wait_until

        wait_until("the late index loads", lambda: client.get("/readyz").status_code == 200, 60)
        body = client.post("/v1/lookup", json={"queries": [{"pdq": known.pdq[0]}]}).json()
        assert body["results"][0]["matches"][0]["list"] == "LATE"


def test_a_version_that_fails_to_load_leaves_the_old_one_serving(tmp_path: Path, known):
    from hashmatch import EntryList, build_index
    from hashmatch.fixtures.service import wait_until

    index = tmp_path / "index"
    build_index([EntryList([("pdq", known.pdq[0], "OLD", "1")], name="OLD")], index)
    config = ServiceConfig(index=index, reload_interval=0.1, stale_after=60)
    with TestClient(create_app(config)) as client:
        old = client.get("/v1/index").json()["version"]
        report = build_index([EntryList([("pdq", known.pdq[1], "NEW", "2")], name="NEW")], index)
        # damage the new version's codes after it is published: its checksum no longer holds
        codes = next((index / "versions" / report.version).glob("pdq.codes*"))
        codes.write_bytes(b"\x00" + codes.read_bytes()[1:])
        wait_until(
            "the failed load to show",
            lambda: client.get("/readyz").json()["last_error"] is not None,
            60,
        )
        ready = client.get("/readyz")
        assert ready.status_code == 200 and ready.json()["index_version"] == old
        assert "pdq.codes" in ready.json()["last_error"]
        lookup = client.post("/v1/lookup", json={"queries": [{"pdq": known.pdq[0]}]}).json()
        assert lookup["index_version"] == old and lookup["results"][0]["status"] == "match"
        metrics = client.get("/metrics").text
        failures = next(x for x in metrics.splitlines() if x.startswith("hashmatch_index_reload_f"))
        assert float(failures.split()[-1]) >= 1
        assert client.get("/v1/index").json()["reload"]["failures"] >= 1


def test_checks_failing_for_longer_than_stale_after_make_the_index_stale(
    tmp_path: Path, known: KnownIndex
) -> None:
    from hashmatch import EntryList, build_index
    from hashmatch.fixtures.service import wait_until

    index = tmp_path / "index"
    build_index([EntryList([("pdq", known.pdq[0], "OLD", "1")], name="OLD")], index)
    config = ServiceConfig(index=index, reload_interval=0.1, stale_after=0.5)
    with TestClient(create_app(config)) as client:
        assert client.get("/status").text == "I-AM-ALIVE"
        (index / "CURRENT").write_text("..\n")  # every check fails from now on
        wait_until("INDEX-STALE", lambda: client.get("/status").text == "INDEX-STALE", 60)
        assert client.get("/status").status_code == 503
        ready = client.get("/readyz")
        assert ready.status_code == 503 and "no successful index check" in ready.json()["reason"]
        # still answering on what it has: stale is a warning to the balancer, not an outage
        lookup = client.post("/v1/lookup", json={"queries": [{"pdq": known.pdq[0]}]})
        assert lookup.json()["results"][0]["status"] == "match"
