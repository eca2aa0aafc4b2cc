"""``hashmatch.client.Client`` against a real server on 127.0.0.1: the same results as the
library's, failed images as results, and service failures as ``ServiceCallError``."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from hashmatch import Hash, HashResult, Matcher, MatchResult, hash_image
from hashmatch.banks import NewContent
from hashmatch.client import Client
from hashmatch.errors import (
    AuthenticationError,
    HashmatchError,
    ImageError,
    OptionError,
    ServiceCallError,
    ServiceUnavailableError,
)
from hashmatch.fixtures.hashlists import random_codes
from hashmatch.fixtures.service import (
    KnownIndex,
    free_port,
    jpeg_bytes,
    known_index,
    serving_in_thread,
    wait_until,
)
from hashmatch.service.config import ServiceConfig

TOKEN = "client-test-token-0123456789"
UNKNOWN_PHOTO = jpeg_bytes(99)
BROKEN_IMAGE = b"\xff\xd8\xff\xe0" + b"\x00" * 64  # a JPEG's first bytes, then nothing


@pytest.fixture(scope="module")
def known(tmp_path_factory: pytest.TempPathFactory) -> KnownIndex:
    return known_index(tmp_path_factory.mktemp("client-index"))


@pytest.fixture(scope="module")
def base_url(known: KnownIndex) -> Iterator[str]:
    with serving_in_thread(ServiceConfig(index=known.path)) as url:
        yield url


@pytest.fixture(scope="module")
def client(base_url: str) -> Iterator[Client]:
    with Client(base_url) as opened:
        wait_until("the server being ready", opened.ready)
        yield opened


@pytest.fixture(scope="module")
def matcher(known: KnownIndex) -> Matcher:
    return Matcher.open(known.path)


@pytest.fixture(scope="module")
def token_url(known: KnownIndex, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    token_file = tmp_path_factory.mktemp("client-tokens") / "tokens"
    token_file.write_text(f"tester {TOKEN}\n")
    with (
        serving_in_thread(ServiceConfig(index=known.path, token_file=token_file)) as url,
        Client(url) as probe,
    ):
        wait_until("the token server being ready", probe.ready)
        yield url


def found(result: MatchResult) -> list[tuple[str, str | None, int]]:
    return sorted((m.list, m.entry_id, m.distance) for m in result.matches)


def test_match_bytes_finds_the_known_photo(client: Client, known: KnownIndex) -> None:
    result = client.match(known.photos[0])
    assert result.status == "match"
    assert {(m.list, m.entry_id) for m in result.matches} == {("KNOWN", "1")}
    assert {m.algorithm for m in result.matches} == {"pdq", "md5"}
    assert result.index_version == client.index_info()["version"]
    assert (result.width, result.height) == (640, 480)


def test_match_path_sends_the_file(client: Client, known: KnownIndex, tmp_path: Path) -> None:
    path = tmp_path / "photo.jpg"
    path.write_bytes(known.photos[1])
    result = client.match(path)
    assert result.status == "match"
    assert {m.entry_id for m in result.matches} == {"2"}
    assert client.match(str(path)) == result


def test_match_agrees_with_the_library(client: Client, matcher: Matcher, known: KnownIndex) -> None:
    for data in [*known.photos, UNKNOWN_PHOTO, BROKEN_IMAGE]:
        remote, local = client.match(data), matcher.match(data)
        assert remote.status == local.status
        assert found(remote) == found(local)
        assert remote.error_kind == local.error_kind


def test_unknown_photo_is_no_match(client: Client) -> None:
    result = client.match(UNKNOWN_PHOTO)
    assert result.status == "no_match"
    assert result.matches == []
    assert result.quality is not None and result.quality >= 50


def test_broken_image_is_an_error_result_not_an_exception(client: Client) -> None:
    result = client.match(BROKEN_IMAGE)
    assert result.status == "error"
    assert result.error_kind == "decode"
    assert result.error_message


def test_unreadable_path_is_a_read_error_result(client: Client, tmp_path: Path) -> None:
    result = client.match(tmp_path / "missing.jpg")
    assert (result.status, result.error_kind) == ("error", "read")
    assert client.match(b"").error_kind == "unsupported"


def test_switches_reach_the_server(client: Client, known: KnownIndex) -> None:
    only_md5 = client.match(known.photos[0], algorithms=["md5"])
    assert {m.algorithm for m in only_md5.matches} == {"md5"}
    with_hashes = client.match(known.photos[0], with_hashes=True, dihedral=False)
    assert with_hashes.hashes["pdq"].hex == known.pdq[0]
    assert client.match(known.photos[0]).hashes == {}


def test_unknown_switch_raises_before_sending(client: Client, known: KnownIndex) -> None:
    misspelt: dict[str, Any] = {"dihedrall": True}
    with pytest.raises(OptionError, match="dihedrall"):
        client.match(known.photos[0], **misspelt)


def test_bad_threshold_is_the_servers_400(client: Client, known: KnownIndex) -> None:
    with pytest.raises(ServiceCallError) as caught:
        client.match(known.photos[0], thresholds={"nosuchalgorithm": 3})
    assert caught.value.status == 400
    assert "/v1/match" in str(caught.value)


def test_batch_keeps_order_with_a_broken_file_in_the_middle(
    client: Client, known: KnownIndex, tmp_path: Path
) -> None:
    path = tmp_path / "third.jpg"
    path.write_bytes(known.photos[2])
    images = [known.photos[0], BROKEN_IMAGE, path, UNKNOWN_PHOTO, tmp_path / "missing.jpg"]
    results = client.match_batch(images, batch_size=2)
    assert [r.status for r in results] == ["match", "error", "match", "no_match", "error"]
    assert [r.error_kind for r in results] == [None, "decode", None, None, "read"]
    assert [r.source for r in results] == [0, 1, str(path), 3, str(tmp_path / "missing.jpg")]
    assert {m.entry_id for m in results[0].matches} == {"1"}
    assert {m.entry_id for m in results[2].matches} == {"3"}
    assert results[0].index_version is not None
    assert client.match_batch([]) == []


def test_lookup_finds_the_entry_at_distance_zero(client: Client, known: KnownIndex) -> None:
    matches = client.lookup({"pdq": known.pdq[0]})
    assert [(m.list, m.entry_id, m.distance) for m in matches] == [("KNOWN", "1", 0)]
    assert client.lookup({"pdq": Hash.from_hex("pdq", known.pdq[1])})[0].entry_id == "2"
    assert client.lookup({"md5": known.md5[2]})[0].entry_id == "3"


def test_lookup_many_answers_in_order_across_requests(
    client: Client, matcher: Matcher, known: KnownIndex
) -> None:
    unknown = hash_image(UNKNOWN_PHOTO, ["pdq"])
    queries = [{"pdq": hex_} for hex_ in reversed(known.pdq)] + [unknown]
    answers = client.lookup_many(queries, batch_size=3)
    assert [[m.entry_id for m in answer] for answer in answers] == [["3"], ["2"], ["1"], []]
    assert answers == [matcher.lookup(query, dihedral=False) for query in queries]
    assert client.lookup_many([]) == []


def test_bad_lookup_hash_is_reported_without_the_hash(client: Client) -> None:
    bad = "ab" * 31 + "z"
    with pytest.raises(ServiceCallError) as caught:
        client.lookup({"pdq": bad})
    assert caught.value.status == 400
    assert bad not in str(caught.value)


def test_hash_equals_the_librarys(client: Client, known: KnownIndex) -> None:
    hashed = client.hash(known.photos[0], ["pdq"])
    local = hash_image(known.photos[0], ["pdq"])
    assert isinstance(hashed, HashResult)
    assert hashed["pdq"].hex == local["pdq"].hex
    assert (hashed.width, hashed.height, hashed.pdq_quality) == (
        local.width,
        local.height,
        local.pdq_quality,
    )
    assert set(client.hash(known.photos[0])) == {"pdq", "md5"}  # the index's algorithms


def test_hash_of_a_broken_image_raises_the_librarys_error(client: Client) -> None:
    with pytest.raises(ImageError) as local:
        hash_image(BROKEN_IMAGE, ["pdq"])
    with pytest.raises(ImageError) as remote:
        client.hash(BROKEN_IMAGE, ["pdq"])
    assert type(remote.value) is type(local.value)


def test_index_info_describes_the_served_version(
    client: Client, matcher: Matcher, known: KnownIndex
) -> None:
    info = client.index_info()
    assert info["version"] == matcher.version
    assert info["algorithms"]["pdq"]["entries"] == len(known.pdq)
    assert client.ready() is True


def test_token_server_refuses_a_call_without_a_valid_token(
    token_url: str, known: KnownIndex
) -> None:
    for token in (None, "not-the-right-token-at-all"):
        with Client(token_url, token) as anonymous, pytest.raises(AuthenticationError) as caught:
            anonymous.match(known.photos[0])
        assert caught.value.status == 401
        assert "Authentication required" in str(caught.value)
        assert token is None or token not in str(caught.value)
        assert TOKEN not in str(caught.value)


def test_token_server_answers_the_right_token(token_url: str, known: KnownIndex) -> None:
    with Client(token_url, TOKEN) as authorised:
        assert authorised.match(known.photos[0]).status == "match"
        assert TOKEN not in repr(authorised)


def test_closed_port_is_a_service_call_error_naming_the_url() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    for retries in (0, 1):
        with Client(url, TOKEN, retries=retries) as nowhere:
            with pytest.raises(ServiceCallError) as caught:
                nowhere.match(b"image bytes")
            assert caught.value.status is None
            assert f"POST {url}/v1/match" in str(caught.value)
            assert TOKEN not in str(caught.value)
            with pytest.raises(ServiceCallError):
                nowhere.ready()
    assert issubclass(ServiceCallError, HashmatchError)


def _answering(*responses: httpx.Response) -> tuple[httpx.MockTransport, list[int]]:
    """A transport answering ``responses`` in turn, and the statuses it has answered."""
    answered: list[int] = []

    def handler(request: httpx.Request) -> httpx.Response:
        response = responses[len(answered)]
        answered.append(response.status_code)
        return response

    return httpx.MockTransport(handler), answered


NOT_READY = httpx.Response(503, json={"message": "index not yet ready"})
INFO = httpx.Response(200, json={"version": "v1"})


def test_retries_repeat_a_503_until_an_answer() -> None:
    transport, answered = _answering(NOT_READY, NOT_READY, INFO)
    with Client("http://service.test", retries=2, transport=transport) as patient:
        assert patient.index_info() == {"version": "v1"}
    assert answered == [503, 503, 200]


def test_without_retries_a_503_raises_service_unavailable() -> None:
    transport, answered = _answering(NOT_READY, NOT_READY, INFO)
    with Client("http://service.test", transport=transport) as impatient:
        with pytest.raises(ServiceUnavailableError, match="index not yet ready"):
            impatient.index_info()
        assert answered == [503]
    with Client("http://service.test", retries=3, transport=transport) as probing:
        assert probing.ready() is False  # a probe asks once, retries or not
    assert answered == [503, 503]


def test_image_over_the_upload_limit_is_a_too_large_result() -> None:
    refused = httpx.Response(413, json={"message": "the body is over 1024 bytes"})
    transport, _ = _answering(refused)
    with Client("http://service.test", transport=transport) as limited:
        result = limited.match(UNKNOWN_PHOTO)
    assert (result.status, result.error_kind) == ("error", "too_large")
    assert result.error_message == "the body is over 1024 bytes"


def test_an_unknown_verdict_raises_rather_than_being_guessed() -> None:
    transport, _ = _answering(httpx.Response(200, json={"status": "maybe", "matches": []}))
    with (
        Client("http://service.test", transport=transport) as newer_server,
        pytest.raises(ServiceCallError, match="unknown match status"),
    ):
        newer_server.match(UNKNOWN_PHOTO)


def test_bad_client_settings_raise_option_error() -> None:
    with pytest.raises(OptionError):
        Client("127.0.0.1:5100")
    with pytest.raises(OptionError):
        Client("http://service.test", retries=-1)
    with pytest.raises(OptionError, match="token"):
        Client("http://service.test", "two words")


# --- banks (a writing server of its own: its contents must not reach the tests above) -----


@pytest.fixture(scope="module")
def bank_known(tmp_path_factory: pytest.TempPathFactory) -> KnownIndex:
    return known_index(tmp_path_factory.mktemp("client-banks"))


@pytest.fixture(scope="module")
def bank_client(bank_known: KnownIndex) -> Iterator[Client]:
    with (
        serving_in_thread(ServiceConfig(index=bank_known.path, bank_writer=True)) as url,
        Client(url) as opened,
    ):
        wait_until("the bank server being ready", opened.ready)
        yield opened


def _bank_codes(count: int, seed: int) -> list[str]:
    return [row.tobytes().hex() for row in random_codes(count, seed=seed)]


def _matched(client: Client, code: str) -> list[tuple[str, str | None]]:
    return [(m.list, m.entry_id) for m in client.lookup({"pdq": code})]


def test_contents_added_to_a_bank_match_at_once(bank_client: Client) -> None:
    created = bank_client.create_bank("CLIENT_ADDED", matching_enabled_ratio=0.5)
    assert (created["name"], created["matching_enabled_ratio"], created["contents"]) == (
        "CLIENT_ADDED",
        0.5,
        0,
    )
    plain, noted = _bank_codes(2, seed=301)
    ids = bank_client.add_to_bank(
        "CLIENT_ADDED",
        [{"pdq": Hash.from_hex("pdq", plain)}, NewContent({"pdq": noted}, note="case 7")],
    )
    assert len(ids) == 2 and ids[0] < ids[1]
    assert _matched(bank_client, plain) == [("CLIENT_ADDED", str(ids[0]))]
    (labelled,) = bank_client.lookup({"pdq": noted})
    assert (labelled.entry_id, labelled.label) == (str(ids[1]), "case 7")


def test_disable_enable_and_delete_change_what_matches(bank_client: Client) -> None:
    bank_client.create_bank("CLIENT_TOGGLED")
    (code,) = _bank_codes(1, seed=302)
    (content,) = bank_client.add_to_bank("CLIENT_TOGGLED", [{"pdq": code}])
    assert bank_client.disable("CLIENT_TOGGLED", content)["disable_until_ts"] == 0
    assert _matched(bank_client, code) == []
    assert bank_client.enable("CLIENT_TOGGLED", content)["disable_until_ts"] == 1
    assert _matched(bank_client, code) == [("CLIENT_TOGGLED", str(content))]
    assert bank_client.delete_content("CLIENT_TOGGLED", content) is True
    assert bank_client.delete_content("CLIENT_TOGGLED", content) is False
    assert _matched(bank_client, code) == []


def test_bank_contents_iterates_every_page(bank_client: Client) -> None:
    bank_client.create_bank("CLIENT_PAGED")
    codes = _bank_codes(7, seed=303)
    ids = bank_client.add_to_bank("CLIENT_PAGED", [{"pdq": code} for code in codes])
    bank_client.disable("CLIENT_PAGED", ids[3])
    listed = list(bank_client.bank_contents("CLIENT_PAGED", page_size=2))
    assert [item["id"] for item in listed] == ids[:3] + ids[4:]
    assert [item["signals"]["pdq"] for item in listed] == codes[:3] + codes[4:]
    everything = bank_client.bank_contents("CLIENT_PAGED", include_disabled=True, page_size=3)
    assert [item["id"] for item in everything] == ids


def test_exclude_hides_a_published_entry_until_undone(
    bank_client: Client, bank_known: KnownIndex
) -> None:
    bank_client.create_bank("CLIENT_EXCLUDER")
    known_code = bank_known.pdq[0]
    assert _matched(bank_client, known_code) == [("KNOWN", "1")]
    bank_client.exclude("CLIENT_EXCLUDER", hashes=[("pdq", known_code)])
    assert _matched(bank_client, known_code) == []
    bank_client.exclude("CLIENT_EXCLUDER", hashes=[("pdq", known_code)], undo=True)
    bank_client.exclude("CLIENT_EXCLUDER", entries=[("KNOWN", "1")])
    assert _matched(bank_client, known_code) == []
    bank_client.exclude("CLIENT_EXCLUDER", entries=[("KNOWN", "1")], undo=True)
    assert _matched(bank_client, known_code) == [("KNOWN", "1")]


def test_bank_refusals_raise_with_the_servers_message(bank_client: Client) -> None:
    with pytest.raises(ServiceCallError) as missing:
        bank_client.add_to_bank("CLIENT_NOPE", [{"pdq": _bank_codes(1, seed=304)[0]}])
    assert (missing.value.status, missing.value.message) == (404, "bank 'CLIENT_NOPE' not found")
    bank_client.create_bank("CLIENT_REFUSED")
    with pytest.raises(ServiceCallError) as bad:
        bank_client.add_to_bank("CLIENT_REFUSED", [{"pdq": "abc"}])
    assert bad.value.status == 400 and bad.value.message.startswith("contents[0].signals: ")
    assert list(bank_client.bank_contents("CLIENT_REFUSED", include_disabled=True)) == []


def test_a_read_only_server_refuses_bank_changes(client: Client) -> None:
    with pytest.raises(ServiceCallError) as refused:
        client.create_bank("CLIENT_READ_ONLY")
    assert refused.value.status == 403
    assert "only reads the banks" in refused.value.message


def test_bank_changes_are_sent_once_even_with_retries() -> None:
    unavailable = httpx.Response(503, json={"message": "index not yet ready"})
    transport, answered = _answering(unavailable, unavailable, unavailable)
    with (
        Client("http://service.test", retries=3, transport=transport) as patient,
        pytest.raises(ServiceUnavailableError),
    ):
        patient.add_to_bank("B", [{"pdq": _bank_codes(1, seed=305)[0]}])
    assert answered == [503]  # an add repeated would add twice
