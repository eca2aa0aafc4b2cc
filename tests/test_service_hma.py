"""HMA's matching API: our answers in HMA's shapes, and, against the real HMA 1.1.7 samples
in ``$HASHMATCH_SHARED_HMA``, the same status codes and bodies HMA gave.

One app per index, per module (their lifespans start hashing processes). The samples'
URL fetches are served from the samples' ``data/`` by a local ``http.server``.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from hashmatch import EntryList, Hash, build_index, hash_image
from hashmatch.fixtures.images import synthetic_photo
from hashmatch.fixtures.service import jpeg_bytes
from hashmatch.service.app import create_app
from hashmatch.service.config import ServiceConfig
from hashmatch.service.content_ids import DERIVED_BASE, bank_content_id

PROJECT_ROOT = Path(__file__).resolve().parents[1]
SHARED_HMA = Path(os.environ.get("HASHMATCH_SHARED_HMA", PROJECT_ROOT.parent / "shared" / "hma"))
SAMPLES = SHARED_HMA / "samples.jsonl"
SAMPLE_FETCH_HOST = "127.0.0.1:5199"
"""Where the samples' URL fetches went (a file server over ``data/``)."""
NOT_READY = {"message": "index not yet ready"}


def _jpeg(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=90)
    return buffer.getvalue()


@dataclass
class Known:
    path: Path
    photos: list[bytes]
    pdq: list[str]
    md5: list[str]


@pytest.fixture(scope="module")
def known(tmp_path_factory: pytest.TempPathFactory) -> Known:
    """List KNOWN: three photos' PDQ and md5 (ids 1-3); list OTHER: photo 1's PDQ again,
    once under a non-numeric id and once without an id."""
    photos = [jpeg_bytes(seed) for seed in (1, 2, 3)]
    hashed = [hash_image(data, ["pdq", "md5"]) for data in photos]
    pdq = [h["pdq"].hex for h in hashed]
    md5 = [h["md5"].hex for h in hashed]
    entries = [
        (algorithm, value, "KNOWN", str(number))
        for number, (p, m) in enumerate(zip(pdq, md5, strict=True), start=1)
        for algorithm, value in (("pdq", p), ("md5", m))
    ]
    other = [("pdq", pdq[0], "OTHER", "case-77"), ("pdq", pdq[0], "OTHER")]
    path = tmp_path_factory.mktemp("known") / "index"
    build_index([EntryList(entries, name="KNOWN"), EntryList(other, name="OTHER")], path)
    return Known(path, photos, pdq, md5)


@pytest.fixture(scope="module")
def client(known: Known) -> Iterator[TestClient]:
    with TestClient(create_app(ServiceConfig(index=known.path))) as test_client:
        yield test_client


def _other_ids(known: Known) -> list[int]:
    return sorted(
        [
            bank_content_id("OTHER", "case-77", known.pdq[0]),
            bank_content_id("OTHER", None, known.pdq[0]),
        ]
    )


def _upload(field: str, data: bytes, name: str = "upload.jpg") -> dict[str, Any]:
    return {field: (name, data, "image/jpeg")}


# --- bank_content_id -------------------------------------------------------------------------


def test_numeric_entry_ids_are_the_content_ids() -> None:
    assert bank_content_id("L", "1", "ab") == 1
    assert bank_content_id("L", "10001", "ab") == 10001
    assert bank_content_id("L", str(DERIVED_BASE - 1), "ab") == DERIVED_BASE - 1


@pytest.mark.parametrize(
    "entry_id", ["abc", "042", "+42", "0", "-3", " 7", str(DERIVED_BASE), None]
)
def test_other_ids_are_derived_above_every_numeric_one_and_safe_for_javascript(
    entry_id: str | None,
) -> None:
    number = bank_content_id("L", entry_id, "ab" * 32)
    assert DERIVED_BASE <= number < 2**53


def test_derived_ids_are_stable_and_depend_on_the_list_and_the_entry() -> None:
    digest = hashlib.blake2b(b"BANK\0case-77").digest()
    assert bank_content_id("BANK", "case-77", "ff") == DERIVED_BASE + (
        int.from_bytes(digest[:8], "big") % DERIVED_BASE
    )
    assert bank_content_id("BANK", "case-77", "00") == bank_content_id("BANK", "case-77", "ff")
    assert bank_content_id("BANK", "case-77", "ff") != bank_content_id("OTHER", "case-77", "ff")
    assert bank_content_id("BANK", None, "aa") != bank_content_id("BANK", None, "bb")
    assert bank_content_id("BANK", None, "aa") == bank_content_id("BANK", "aa", "bb")


# --- our answers in HMA's shapes -------------------------------------------------------------


def test_upload_lookup_answers_per_bank_with_one_result_per_content(
    client: TestClient, known: Known
) -> None:
    response = client.post("/m/lookup", files=_upload("photo", known.photos[0]))
    assert response.status_code == 200
    body = response.json()
    assert list(body) == ["pdq"]
    assert body["pdq"]["KNOWN"] == [{"bank_content_id": 1, "distance": "0"}]
    other = body["pdq"]["OTHER"]
    assert sorted(item["bank_content_id"] for item in other) == _other_ids(known)
    assert {item["distance"] for item in other} == {"0"}
    assert set(body["pdq"]) == {"KNOWN", "OTHER"}


def test_banks_filter_keeps_named_banks_and_an_unknown_bank_is_no_error(
    client: TestClient, known: Known
) -> None:
    only = client.post(
        "/m/lookup", params={"banks": "OTHER"}, files=_upload("photo", known.photos[0])
    )
    assert list(only.json()["pdq"]) == ["OTHER"]
    none = client.post(
        "/m/lookup", params={"banks": "NOPE"}, files=_upload("photo", known.photos[0])
    )
    assert (none.status_code, none.json()) == (200, {"pdq": {}})
    signal = {"signal_type": "pdq", "signal": known.pdq[1], "banks": "NOPE,OTHER"}
    assert client.get("/m/lookup", params=signal).json() == {}
    assert client.get("/m/raw_lookup", params=signal).json() == {"matches": []}


def test_an_upload_matches_rotated_but_a_signal_lookup_does_not_try_rotations(
    client: TestClient, known: Known
) -> None:
    rotated = _jpeg(synthetic_photo(2).rotate(90, expand=True))
    rotated_pdq = hash_image(rotated, ["pdq"])["pdq"]
    assert rotated_pdq.distance(Hash.from_hex("pdq", known.pdq[1])) > 31  # the premise
    uploaded = client.post("/m/lookup", files=_upload("photo", rotated)).json()
    (match,) = uploaded["pdq"]["KNOWN"]
    assert match["bank_content_id"] == 2
    assert int(match["distance"]) <= 31
    by_signal = client.get("/m/lookup", params={"signal_type": "pdq", "signal": rotated_pdq.hex})
    assert (by_signal.status_code, by_signal.json()) == (200, {})


def test_a_video_upload_matches_the_md5_of_its_bytes_with_distance_dash(
    client: TestClient, known: Known
) -> None:
    response = client.post("/m/lookup", files=_upload("video", known.photos[2], "clip.mp4"))
    assert response.json() == {"video_md5": {"KNOWN": [{"bank_content_id": 3, "distance": "-"}]}}


def test_raw_lookup_takes_hma_s_and_our_signal_type_names(client: TestClient, known: Known) -> None:
    exact = [{"bank_content_id": 1, "distance": "-"}]
    for signal_type, signal in (("video_md5", known.md5[0].upper()), ("md5", known.md5[0])):
        params = {"signal_type": signal_type, "signal": signal, "include_distance": "true"}
        assert client.get("/m/raw_lookup", params=params).json() == {"matches": exact}
    ids = client.get("/m/raw_lookup", params={"signal_type": "pdq", "signal": known.pdq[0]})
    assert sorted(ids.json()["matches"]) == [1, *_other_ids(known)]


def test_a_signal_type_the_index_lacks_matches_nothing(client: TestClient) -> None:
    params = {"signal_type": "phash", "signal": "92199c68cbee94f4"}
    assert client.get("/m/raw_lookup", params=params).json() == {"matches": []}
    assert client.get("/m/lookup", params=params).json() == {}
    bad = client.get("/m/raw_lookup", params={"signal_type": "phash", "signal": "xyz"})
    assert (bad.status_code, bad.json()) == (400, {"message": "invalid signal: invalid PHASH hash"})


def test_hash_route_computes_what_types_asks_for(client: TestClient, known: Known) -> None:
    photo = known.photos[0]
    asked = client.post("/h/hash", params={"types": "pdq,phash,md5"}, files=_upload("photo", photo))
    expected = hash_image(photo, ["pdq", "phash", "md5"])
    assert asked.json() == {name: expected[name].hex for name in ("pdq", "phash", "md5")}
    assert list(asked.json()) == ["pdq", "phash", "md5"]
    video = client.post("/h/hash", params={"types": "sha256"}, files=_upload("video", photo))
    assert video.json() == {"sha256": hashlib.sha256(photo).hexdigest()}
    for content_type, types, message in (
        ("photo", "video_md5", "signal type 'video_md5' doesn't exist or is disabled"),
        ("video", "pdq", "signal type 'pdq' doesn't exist or is disabled"),
        ("photo", ",", "empty signal type selection"),
    ):
        refused = client.post(
            "/h/hash", params={"types": types}, files=_upload(content_type, photo)
        )
        assert (refused.status_code, refused.json()) == (400, {"message": message})


def test_a_flat_photo_hashes_to_empty_and_cannot_be_looked_up(client: TestClient) -> None:
    flat = _jpeg(Image.new("RGB", (320, 240), (128, 128, 128)))
    assert client.post("/h/hash", files=_upload("photo", flat)).json() == {"pdq": ""}
    looked_up = client.post("/m/lookup", files=_upload("photo", flat))
    assert (looked_up.status_code, looked_up.json()) == (
        400,
        {"message": "invalid signal: invalid PDQ hash"},
    )


def test_an_upload_that_is_no_image_is_a_client_error(client: TestClient) -> None:
    response = client.post("/m/lookup", files=_upload("photo", b"just some text, no image"))
    assert response.status_code == 400
    assert list(response.json()) == ["message"]


def test_index_status_reports_hma_s_types_and_the_index_s_algorithms(client: TestClient) -> None:
    body = client.get("/m/index/status").json()
    assert list(body) == ["pdq", "video_md5"]
    assert body["pdq"]["size"] == 5 and body["video_md5"]["size"] == 3
    assert all(v["present"] is True and v["built_to"] > 1_600_000_000 for v in body.values())
    assert client.get("/m/index/status", params={"signal_type": "md5"}).json() == {
        "md5": body["video_md5"]
    }
    nope = client.get("/m/index/status", params={"signal_type": "nope"})
    assert (nope.status_code, nope.json()) == (400, {"message": "No such signal type 'nope'"})


def test_compare_answers_distance_for_perceptual_and_equality_for_exact_types(
    client: TestClient, known: Known
) -> None:
    pair = {"pdq": known.pdq[:2], "video_md5": [known.md5[0], known.md5[0].upper()]}
    body = client.post("/m/compare", json=pair).json()
    distance = Hash.from_hex("pdq", known.pdq[0]).distance(Hash.from_hex("pdq", known.pdq[1]))
    assert body == {"pdq": [distance <= 31, {"distance": distance}], "video_md5": [True, {}]}
    broken = client.post(
        "/m/compare", content=b"{nope", headers={"Content-Type": "application/json"}
    )
    assert broken.status_code == 400
    not_list = client.post("/m/compare", json={"pdq": "abc"})
    assert not_list.json() == {"message": "Comparison hashes for pdq was not a list"}
    unknown = client.post("/m/compare", json={"nope": ["a", "b"]})
    assert unknown.json() == {"message": "No such SignalType 'nope'"}


@pytest.fixture(scope="module")
def cold_client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    """An app whose index has nothing published yet."""
    index = tmp_path_factory.mktemp("cold") / "index"
    with TestClient(create_app(ServiceConfig(index=index))) as test_client:
        yield test_client


def test_without_an_index_lookups_answer_503_and_hashing_still_works(
    cold_client: TestClient, known: Known
) -> None:
    signal = {"signal_type": "pdq", "signal": known.pdq[0]}
    for response in (
        cold_client.get("/m/raw_lookup", params=signal),
        cold_client.get("/m/lookup", params=signal),
        cold_client.post("/m/lookup", files=_upload("photo", known.photos[0])),
        cold_client.get("/m/index/status"),
    ):
        assert (response.status_code, response.json()) == (503, NOT_READY)
    hashed = cold_client.post("/h/hash", files=_upload("photo", known.photos[0]))
    assert hashed.json() == {"pdq": known.pdq[0]}


# --- the HMA 1.1.7 samples ---------------------------------------------------------------------


def _samples() -> list[dict[str, Any]]:
    if not SAMPLES.is_file():
        return []
    return [json.loads(line) for line in SAMPLES.read_text().splitlines() if line.strip()]


def _cold(sample: dict[str, Any]) -> bool:
    """Taken while HMA's index was not loaded (its 503s)."""
    return bool(sample["response"]["status"] == 503)


def _replayed(sample: dict[str, Any]) -> bool:
    """Matching, hashing and status samples; not curation (``/c/``), UI, OpenAPI, the site
    map (our routes differ) or the redirect of ``/``."""
    path = sample["request"]["path"]
    return path.startswith(("/m/", "/h/")) or path in ("/status", "/status/live", "/no/such/route")


def _params(samples: list[dict[str, Any]]) -> list[Any]:
    if not samples:
        reason = f"HMA samples not found at {SAMPLES} (set HASHMATCH_SHARED_HMA)"
        return [pytest.param(None, marks=pytest.mark.skip(reason=reason), id="no-samples")]
    return [pytest.param(sample, id=sample["name"]) for sample in samples]


_ALL_SAMPLES = [s for s in _samples() if _replayed(s)]
WARM_SAMPLES = _params([s for s in _ALL_SAMPLES if not _cold(s)])
COLD_SAMPLES = _params([s for s in _ALL_SAMPLES if _cold(s)])


@dataclass
class HmaReplica:
    client: httpx.Client
    fetch_host: str
    index: Path


@pytest.fixture(scope="module")
def hma(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HmaReplica]:
    """The samples' state: bank LAB_PDQ with corpus line n as content n and photo_a as
    10001; ``data/`` served on 127.0.0.1 and allowed for fetching."""
    if not SAMPLES.is_file():
        pytest.skip(f"HMA samples not found at {SAMPLES} (set HASHMATCH_SHARED_HMA)")
    data = SHARED_HMA / "data"
    corpus = (data / "corpus10k.txt").read_text().split()
    photo_a = json.loads((data / "photo_a_content.json").read_text())
    entries = [("pdq", value, "LAB_PDQ", str(n)) for n, value in enumerate(corpus, start=1)]
    entries.append(("pdq", photo_a["signals"]["pdq"], "LAB_PDQ", str(photo_a["id"])))
    index = tmp_path_factory.mktemp("hma") / "index"
    build_index([EntryList(entries, name="LAB_PDQ")], index)
    handler = partial(_QuietFiles, directory=str(data))
    files = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    files.daemon_threads = True
    thread = threading.Thread(target=files.serve_forever, name="hma-data", daemon=True)
    thread.start()
    config = ServiceConfig(index=index, fetch_hosts=("127.0.0.1",), fetch_private=True)
    try:
        with TestClient(create_app(config)) as test_client:
            yield HmaReplica(test_client, f"127.0.0.1:{files.server_address[1]}", index)
    finally:
        files.shutdown()
        files.server_close()
        thread.join(timeout=10)


class _QuietFiles(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


def _send(client: httpx.Client, sample: dict[str, Any], fetch_host: str) -> httpx.Response:
    request = sample["request"]
    params = {k: str(v).replace(SAMPLE_FETCH_HOST, fetch_host) for k, v in request["query"].items()}
    options: dict[str, Any] = {"params": params}
    if "multipart" in request:
        options["files"] = [
            (
                part["field"],
                (part["filename"], (SHARED_HMA / part["file"]).read_bytes(), part["content_type"]),
            )
            for part in request["multipart"]
        ]
    elif "json" in request:
        options["json"] = request["json"]
    elif "form" in request:
        options["data"] = request["form"]
    elif "body" in request:
        media_type = request["headers"].get("Content-Type", "")
        raw_jpeg = media_type.startswith("image/")  # the samples sent photo_a.jpg's bytes
        content = (SHARED_HMA / "data" / "photo_a.jpg").read_bytes() if raw_jpeg else None
        options["content"] = content or request["body"].encode()
        options["headers"] = {"Content-Type": media_type}
    return client.request(request["method"], request["path"], **options)


def _assert_answers_like_hma(sample: dict[str, Any], ours: httpx.Response, fetch_host: str) -> None:
    expected = sample["response"]
    assert ours.status_code == expected["status"], ours.text
    headers = {name.lower(): value for name, value in expected["headers"]}
    text = expected["body"].replace(SAMPLE_FETCH_HOST, fetch_host)
    if not headers.get("content-type", "").startswith("application/json"):
        if not text.lstrip().lower().startswith("<!doctype"):  # Flask's HTML error pages
            assert ours.text == text
        return
    assert ours.headers["content-type"].startswith("application/json")
    theirs, body = json.loads(text), ours.json()
    path, request = sample["request"]["path"], sample["request"]
    if expected["status"] == 422:
        assert [(e["type"], e["loc"]) for e in body] == [(e["type"], e["loc"]) for e in theirs]
    elif expected["status"] == 200 and path == "/m/index/status":
        assert list(body) == list(theirs)
        for status in body.values():
            assert list(status) == ["built_to", "present", "size"]
            assert status["present"] is True
            assert all(type(status[key]) is int for key in ("built_to", "size"))
    elif expected["status"] == 200 and path == "/h/hash":
        _assert_hashes_near(body, theirs)
    elif expected["status"] == 200 and path == "/m/lookup" and request["method"] == "POST":
        _assert_matches_near(body, theirs)
    else:
        assert body == theirs


def _assert_hashes_near(ours: dict[str, str], theirs: dict[str, str]) -> None:
    """Equal, or (our PDQ of a JPEG may differ from HMA's by a few bits) within 10 bits."""
    assert list(ours) == list(theirs)
    for name, value in theirs.items():
        if ours[name] != value:
            assert name == "pdq" and value and ours[name]
            assert Hash.from_hex("pdq", ours[name]).distance(Hash.from_hex("pdq", value)) <= 10


def _assert_matches_near(ours: dict[str, Any], theirs: dict[str, Any]) -> None:
    """The same contents per signal type and bank, distances within 10 bits of HMA's."""
    assert list(ours) == list(theirs)
    for signal_type, banks in theirs.items():
        assert list(ours[signal_type]) == list(banks)
        for bank, matches in banks.items():
            found = ours[signal_type][bank]
            assert [m["bank_content_id"] for m in found] == [m["bank_content_id"] for m in matches]
            for mine, hma_match in zip(found, matches, strict=True):
                assert abs(int(mine["distance"]) - int(hma_match["distance"])) <= 10


@pytest.mark.parametrize("sample", WARM_SAMPLES)
def test_answers_like_hma(hma: HmaReplica, sample: dict[str, Any]) -> None:
    response = _send(hma.client, sample, hma.fetch_host)
    _assert_answers_like_hma(sample, response, hma.fetch_host)


@pytest.mark.parametrize("sample", COLD_SAMPLES)
def test_answers_like_hma_before_the_index_is_loaded(
    cold_client: TestClient, sample: dict[str, Any]
) -> None:
    response = _send(cold_client, sample, SAMPLE_FETCH_HOST)
    _assert_answers_like_hma(sample, response, SAMPLE_FETCH_HOST)


@pytest.fixture(scope="module")
def hma_process(hma: HmaReplica, tmp_path_factory: pytest.TempPathFactory) -> Iterator[HmaReplica]:
    """The same replica as a real ``hashmatch serve`` process (two server processes)."""
    from hashmatch.fixtures.service import serve_process

    arguments = ("--workers", "2", "--fetch-host", "127.0.0.1", "--fetch-private")
    logs = tmp_path_factory.mktemp("hma-logs")
    with (
        serve_process(hma.index, *arguments, log_dir=logs) as served,
        httpx.Client(base_url=served.base_url, timeout=120) as client,
    ):
        yield HmaReplica(client, hma.fetch_host, hma.index)


@pytest.mark.parametrize("sample", WARM_SAMPLES)
def test_a_served_process_answers_like_hma(hma_process: HmaReplica, sample: dict[str, Any]) -> None:
    response = _send(hma_process.client, sample, hma_process.fetch_host)
    _assert_answers_like_hma(sample, response, hma_process.fetch_host)
