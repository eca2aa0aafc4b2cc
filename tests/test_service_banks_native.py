"""The native bank API (``/v1/banks``) against the in-process app: curation in our shapes,
its effect on the next ``/v1/lookup``, the audit trail, and the bank metrics.

The index is built from a list file (``PUBLISHED``: random PDQ codes, entries ``e1``..), so
exclusions are shown hiding a *published* entry, not only a bank's own. One writing
instance (with a token file: records name the caller) and one read-only instance follow the
same bank directory; each test uses banks and codes of its own.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("fastapi", reason="the serve extra is not installed")

from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from hashmatch import BuildOptions, ListSource, build_index
from hashmatch.banks import BankWriter, NewContent
from hashmatch.banks.source import bank_sources
from hashmatch.fixtures.hashlists import SyntheticEntry, random_codes, write_list
from hashmatch.fixtures.service import wait_until
from hashmatch.service.app import create_app
from hashmatch.service.config import ServiceConfig

TOKEN = "bank-curator-token-0123456789"
CALLER = "curator"
PUBLISHED = [row.tobytes().hex() for row in random_codes(4, seed=7)]
MAX_QUERIES = 300


def codes(count: int, seed: int) -> list[str]:
    """Random PDQ codes of their own (seeds 100 and up: none near another test's)."""
    return [row.tobytes().hex() for row in random_codes(count, seed=100 + seed)]


@pytest.fixture(scope="module")
def index(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("banks-native")
    listed = [
        SyntheticEntry("pdq", code, f"e{n}", f"published {n}", "PUBLISHED")
        for n, code in enumerate(PUBLISHED, start=1)
    ]
    path = write_list(folder / "published.csv", listed, "csv")
    build_index([ListSource(path, list_name="PUBLISHED")], folder / "index")
    return folder / "index"


@pytest.fixture(scope="module")
def writer(index: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    tokens = tmp_path_factory.mktemp("banks-tokens") / "tokens.txt"
    tokens.write_text(f"{CALLER} {TOKEN}\n")
    config = ServiceConfig(
        index=index, token_file=tokens, bank_writer=True, max_queries=MAX_QUERIES
    )
    with TestClient(create_app(config), headers={"Authorization": f"Bearer {TOKEN}"}) as client:
        yield client


@pytest.fixture(scope="module")
def reader(index: Path, writer: TestClient) -> Iterator[TestClient]:
    with TestClient(create_app(ServiceConfig(index=index))) as client:
        yield client


def ok(response: Any, status: int = 200) -> Any:
    assert response.status_code == status, response.text
    return response.json()


def refused(response: Any, status: int) -> str:
    assert response.status_code == status, response.text
    message: str = response.json()["message"]
    return message


def make_bank(client: TestClient, name: str, hashes: list[str] | None = None) -> list[int]:
    ok(client.post("/v1/banks", json={"name": name}), 201)
    if not hashes:
        return []
    body = {"contents": [{"signals": {"pdq": code}} for code in hashes]}
    ids: list[int] = ok(client.post(f"/v1/banks/{name}/contents", json=body), 201)["ids"]
    return ids


def found(client: TestClient, code: str) -> list[tuple[str, str]]:
    """(list, entry id) of each match of one PDQ code, by ``/v1/lookup``."""
    body = ok(client.post("/v1/lookup", json={"queries": [{"pdq": code}]}))
    return [(m["list"], m["entry_id"]) for m in body["results"][0]["matches"]]


# --- banks ---------------------------------------------------------------------------------


def test_a_bank_is_created_listed_changed_and_dropped(writer: TestClient) -> None:
    created = ok(
        writer.post("/v1/banks", json={"name": "LIFE", "matching_enabled_ratio": 0.5}), 201
    )
    assert {key: created[key] for key in ("name", "matching_enabled_ratio", "contents")} == {
        "name": "LIFE",
        "matching_enabled_ratio": 0.5,
        "contents": 0,
    }
    # the served version was built from the list file only: the bank's one record waits
    assert (created["records"], created["unfolded_records"]) == (1, 1)
    assert created["seconds_since_fold"] is None
    listed = ok(writer.get("/v1/banks"))
    assert listed["writer"] is True
    assert "LIFE" in [bank["name"] for bank in listed["banks"]]
    changed = ok(writer.patch("/v1/banks/LIFE", json={"matching_enabled_ratio": 1}))
    assert (changed["matching_enabled_ratio"], changed["records"]) == (1.0, 2)
    assert ok(writer.get("/v1/banks/LIFE")) == {
        **changed,
        "seconds_since_fold": None,
    }
    assert ok(writer.delete("/v1/banks/LIFE")) == {"name": "LIFE", "deleted": True}
    assert refused(writer.get("/v1/banks/LIFE"), 404) == "bank 'LIFE' not found"
    assert refused(writer.delete("/v1/banks/LIFE"), 404) == "bank 'LIFE' not found"
    assert "LIFE" not in [bank["name"] for bank in ok(writer.get("/v1/banks"))["banks"]]


def test_bank_refusals_say_why(writer: TestClient) -> None:
    make_bank(writer, "TWICE")
    assert refused(writer.post("/v1/banks", json={"name": "TWICE"}), 403) == "Bank already exists"
    assert (
        refused(writer.post("/v1/banks", json={"name": "lower"}), 400)
        == "Bank names must be UPPER_WITH_UNDERSCORE"
    )
    ratio = refused(writer.patch("/v1/banks/TWICE", json={"matching_enabled_ratio": 2}), 400)
    assert "between 0 and 1" in ratio
    typed = refused(
        writer.post("/v1/banks", json={"name": "T", "matching_enabled_ratio": "1"}), 422
    )
    assert "matching_enabled_ratio" in typed
    assert refused(writer.patch("/v1/banks/NOPE", json={"matching_enabled_ratio": 1}), 404) == (
        "bank 'NOPE' not found"
    )


# --- contents ------------------------------------------------------------------------------


def test_contents_page_by_id_each_once_in_order(writer: TestClient) -> None:
    ids = make_bank(writer, "PAGED", codes(250, 1))
    assert ids == sorted(ids) and len(set(ids)) == 250
    pages, after = [], None
    while True:
        params = {"limit": "100"} if after is None else {"limit": "100", "after": str(after)}
        page = ok(writer.get("/v1/banks/PAGED/contents", params=params))
        pages.append([item["id"] for item in page["contents"]])
        after = page["next_after"]
        if after is None:
            break
    assert [len(page) for page in pages] == [100, 100, 50]
    assert [i for page in pages for i in page] == ids
    first = ok(writer.get("/v1/banks/PAGED/contents", params={"limit": "1"}))["contents"][0]
    assert (first["id"], first["signals"], first["added_by"]) == (
        ids[0],
        {"pdq": codes(1, 1)[0]},
        CALLER,
    )
    default = ok(writer.get("/v1/banks/PAGED/contents"))
    assert (len(default["contents"]), default["next_after"]) == (100, ids[99])


def test_disabled_contents_are_listed_only_when_asked(writer: TestClient) -> None:
    ids = make_bank(writer, "SOME_OFF", codes(3, 2))
    ok(writer.patch(f"/v1/banks/SOME_OFF/contents/{ids[1]}", json={"enabled": False}))
    ok(writer.delete(f"/v1/banks/SOME_OFF/contents/{ids[2]}"))
    listed = ok(writer.get("/v1/banks/SOME_OFF/contents"))["contents"]
    everything = ok(writer.get("/v1/banks/SOME_OFF/contents?include_disabled=true"))["contents"]
    assert [item["id"] for item in listed] == [ids[0]]
    assert [(item["id"], item["disable_until_ts"]) for item in everything] == [
        (ids[0], 1),
        (ids[1], 0),
    ]


@pytest.mark.parametrize(
    ("query", "named"),
    [
        ("limit=0", "limit"),
        ("limit=1001", "limit"),
        ("limit=ten", "limit"),
        ("after=-1", "after"),
        ("after=1.5", "after"),
        ("include_disabled=maybe", "include_disabled"),
    ],
)
def test_bad_page_parameters_are_400_naming_the_parameter(
    writer: TestClient, query: str, named: str
) -> None:
    if "PARAMS" not in _names(writer):
        make_bank(writer, "PARAMS")
    message = refused(writer.get(f"/v1/banks/PARAMS/contents?{query}"), 400)
    assert message.startswith(f"{named} must be ")
    if named != "include_disabled":
        assert refused(writer.get(f"/v1/banks/PARAMS/log?{query}"), 400).startswith(named)


def _names(client: TestClient) -> set[str]:
    return {bank["name"] for bank in ok(client.get("/v1/banks"))["banks"]}


def test_bulk_add_is_all_or_nothing(writer: TestClient) -> None:
    make_bank(writer, "ATOMIC")
    good = codes(3, 3)
    before = ok(writer.get("/v1/banks/ATOMIC"))["records"]
    items = [{"signals": {"pdq": code}} for code in good]
    for bad, where in [
        ({"signals": {"pdq": good[0][:-2]}}, "contents[2].signals: "),
        ({"signals": {"pdq": "0" * 64}}, "contents[2].signals: "),
        ({"signals": {}}, "contents[2]: No signals given"),
        ({"signals": {"pdq": good[2]}, "disable_until_ts": 4_000_000_000}, "contents[2]: "),
    ]:
        body = {"contents": [*items[:2], bad, items[2]]}
        message = refused(writer.post("/v1/banks/ATOMIC/contents", json=body), 400)
        assert message.startswith(where), message
    assert ok(writer.get("/v1/banks/ATOMIC"))["records"] == before
    assert ok(writer.get("/v1/banks/ATOMIC/contents?include_disabled=true"))["contents"] == []
    assert all(found(writer, code) == [] for code in good)
    # the same items without the bad one: added in order, matching at once
    ids = ok(writer.post("/v1/banks/ATOMIC/contents", json={"contents": items}), 201)["ids"]
    assert [found(writer, code) for code in good] == [[("ATOMIC", str(i))] for i in ids]


def test_bulk_add_is_capped_by_max_queries(writer: TestClient) -> None:
    make_bank(writer, "CAPPED")
    body = {"contents": [{"signals": {"pdq": code}} for code in codes(MAX_QUERIES + 1, 4)]}
    message = refused(writer.post("/v1/banks/CAPPED/contents", json=body), 413)
    assert message == f"at most {MAX_QUERIES} contents per request (--max-queries)"
    assert refused(writer.post("/v1/banks/CAPPED/contents", json={"contents": []}), 400) == (
        "contents: nothing to add"
    )
    assert refused(
        writer.post("/v1/banks/NOPE/contents", json=body | {"contents": body["contents"][:1]}), 404
    ) == ("bank 'NOPE' not found")


def test_disable_enable_delete_take_effect_on_the_next_lookup(
    writer: TestClient, reader: TestClient
) -> None:
    (content,) = make_bank(writer, "TOGGLED", codes(1, 5))
    code, where = codes(1, 5)[0], f"/v1/banks/TOGGLED/contents/{content}"
    assert found(writer, code) == found(reader, code) == [("TOGGLED", str(content))]
    assert ok(writer.patch(where, json={"enabled": False}))["disable_until_ts"] == 0
    assert found(writer, code) == found(reader, code) == []
    assert ok(writer.patch(where, json={"enabled": True}))["disable_until_ts"] == 1
    assert found(writer, code) == [("TOGGLED", str(content))]
    later = int(time.time()) + 3600
    assert ok(writer.patch(where, json={"disable_until_ts": later}))["disable_until_ts"] == later
    assert found(writer, code) == []
    ok(writer.patch(where, json={"disable_until_ts": 1}))
    assert found(reader, code) == [("TOGGLED", str(content))]
    assert ok(writer.delete(where)) == {"deleted": 1}
    assert found(writer, code) == found(reader, code) == []
    assert ok(writer.delete(where)) == {"deleted": 0}  # repeating a delete is harmless
    assert refused(writer.get(where), 404) == f"content '{content}' not found"


def test_content_refusals_say_why(writer: TestClient) -> None:
    (content,) = make_bank(writer, "ASKED", codes(1, 6))
    where = f"/v1/banks/ASKED/contents/{content}"
    assert ok(writer.get(where))["signals"] == {"pdq": codes(1, 6)[0]}
    assert refused(writer.get("/v1/banks/ASKED/contents/999999"), 404) == (
        "content '999999' not found"
    )
    assert refused(writer.get("/v1/banks/NOPE/contents"), 404) == "bank 'NOPE' not found"
    assert refused(writer.get("/v1/banks/ASKED/contents/x"), 400) == (
        "a content id is a whole number >= 1, got 'x'"
    )
    assert refused(writer.patch(where, json={}), 400) == "give one of enabled or disable_until_ts"
    both = {"enabled": True, "disable_until_ts": 1}
    assert refused(writer.patch(where, json=both), 400) == "give one of enabled or disable_until_ts"
    far = int(time.time()) + 6 * 365 * 24 * 3600
    assert refused(writer.patch(where, json={"disable_until_ts": far}), 400) == (
        "disable_until_ts must be less than 5 years in the future"
    )
    assert refused(writer.patch(where, json={"enabled": "no"}), 422).startswith("invalid request")
    assert refused(writer.patch("/v1/banks/ASKED/contents/999999", json={"enabled": False}), 404)


# --- exclusions ----------------------------------------------------------------------------


def test_an_excluded_hash_hides_a_published_entry_until_lifted(
    writer: TestClient, reader: TestClient
) -> None:
    make_bank(writer, "FALSE_POSITIVES")
    code = PUBLISHED[0]
    assert found(writer, code) == [("PUBLISHED", "e1")]
    body = {"hashes": [{"algorithm": "pdq", "hash": code.upper()}]}
    answer = ok(writer.post("/v1/banks/FALSE_POSITIVES/exclusions", json=body))
    assert answer == {"hashes": [{"algorithm": "pdq", "hash": code}], "entries": []}
    assert found(writer, code) == found(reader, code) == []
    assert found(writer, PUBLISHED[1]) == [("PUBLISHED", "e2")]  # only that hash
    assert ok(writer.get("/v1/banks/FALSE_POSITIVES/exclusions")) == answer
    assert ok(writer.request("DELETE", "/v1/banks/FALSE_POSITIVES/exclusions", json=body)) == answer
    assert found(writer, code) == found(reader, code) == [("PUBLISHED", "e1")]
    assert ok(writer.get("/v1/banks/FALSE_POSITIVES/exclusions")) == {"hashes": [], "entries": []}


def test_an_excluded_entry_hides_it_whichever_list_holds_it(writer: TestClient) -> None:
    (content,) = make_bank(writer, "ENTRY_EXCLUDER", codes(1, 7))
    entries = [
        {"list": "PUBLISHED", "entry_id": "e3"},
        {"list": "ENTRY_EXCLUDER", "entry_id": str(content)},
    ]
    ok(writer.post("/v1/banks/ENTRY_EXCLUDER/exclusions", json={"entries": entries}))
    assert found(writer, PUBLISHED[2]) == found(writer, codes(1, 7)[0]) == []
    assert found(writer, PUBLISHED[3]) == [("PUBLISHED", "e4")]
    listed = ok(writer.get("/v1/banks/ENTRY_EXCLUDER/exclusions"))["entries"]
    assert sorted(item["entry_id"] for item in listed) == sorted(["e3", str(content)])
    ok(
        writer.request(
            "DELETE", "/v1/banks/ENTRY_EXCLUDER/exclusions", json={"entries": entries[:1]}
        )
    )
    assert found(writer, PUBLISHED[2]) == [("PUBLISHED", "e3")]
    assert found(writer, codes(1, 7)[0]) == []


def test_exclusion_refusals_say_why(writer: TestClient) -> None:
    make_bank(writer, "EXCLUSION_ERRORS")
    where = "/v1/banks/EXCLUSION_ERRORS/exclusions"
    assert refused(writer.post(where, json={}), 400) == "no exclusions given"
    bad = {"hashes": [{"algorithm": "pdq", "hash": "abc"}]}
    assert "pdq hash must be 64 hex digits" in refused(writer.post(where, json=bad), 400)
    assert refused(
        writer.post(
            "/v1/banks/NOPE/exclusions",
            json=bad | {"hashes": [], "entries": [{"list": "L", "entry_id": "1"}]},
        ),
        404,
    ) == ("bank 'NOPE' not found")
    many = {"entries": [{"list": "L", "entry_id": str(n)} for n in range(MAX_QUERIES + 1)]}
    assert "per request (--max-queries)" in refused(writer.post(where, json=many), 413)


# --- the audit trail -----------------------------------------------------------------------


def test_the_log_tells_every_change_by_token_name_never_the_token(
    writer: TestClient, index: Path
) -> None:
    (first, second) = make_bank(writer, "AUDITED", codes(2, 8))
    ok(writer.patch(f"/v1/banks/AUDITED/contents/{first}", json={"enabled": False}))
    ok(writer.delete(f"/v1/banks/AUDITED/contents/{second}"))
    exclusion = {"entries": [{"list": "PUBLISHED", "entry_id": "e9"}]}
    ok(writer.post("/v1/banks/AUDITED/exclusions", json=exclusion))
    response = writer.get("/v1/banks/AUDITED/log")
    body = ok(response)
    records = body["records"]
    assert [(r["seq"], r["op"]) for r in records] == [
        (1, "create"),
        (2, "add"),
        (3, "add"),
        (4, "set"),
        (5, "delete"),
        (6, "exclude"),
    ]
    assert {r["by"] for r in records} == {CALLER}
    assert (records[1]["id"], records[1]["signals"]) == (first, {"pdq": codes(2, 8)[0]})
    assert (records[3]["id"], records[3]["disable_until_ts"]) == (first, 0)
    assert (records[5]["list"], records[5]["entry"]) == ("PUBLISHED", "e9")
    for record in records:
        assert record["at"].endswith("Z") and record["at"][:4].isdigit()
        assert abs(time.time() - record["at_unix"]) < 24 * 3600
    assert (body["next_after"], body["unreadable"]) == (None, 0)
    assert TOKEN not in response.text
    assert TOKEN not in (index / "banks" / "AUDITED.log").read_text()
    # in pages
    page = ok(writer.get("/v1/banks/AUDITED/log?limit=4"))
    rest = ok(writer.get(f"/v1/banks/AUDITED/log?limit=4&after={page['next_after']}"))
    assert [r["seq"] for r in page["records"]] == [1, 2, 3, 4]
    assert ([r["seq"] for r in rest["records"]], rest["next_after"]) == ([5, 6], None)
    assert refused(writer.get("/v1/banks/NOPE/log"), 404) == "bank 'NOPE' not found"


def test_a_dropped_banks_log_still_reads(writer: TestClient) -> None:
    make_bank(writer, "GONE", codes(1, 9))
    ok(writer.delete("/v1/banks/GONE"))
    ops = [record["op"] for record in ok(writer.get("/v1/banks/GONE/log"))["records"]]
    assert ops == ["create", "add", "drop"]


def test_unreadable_log_lines_are_counted_and_skipped(index: Path, tmp_path: Path) -> None:
    config = ServiceConfig(index=index, banks=tmp_path / "banks", bank_writer=True)
    with TestClient(create_app(config)) as client:
        make_bank(client, "DAMAGED", codes(1, 10))
        log = tmp_path / "banks" / "DAMAGED.log"
        lines = log.read_bytes().splitlines(keepends=True)
        torn = lines[1][:20] + lines[1][25:]  # the add, damaged in place: its checksum fails
        log.write_bytes(lines[0] + torn + b"not a record\n")
        ok(client.patch("/v1/banks/DAMAGED", json={"matching_enabled_ratio": 0.5}))
        body = ok(client.get("/v1/banks/DAMAGED/log"))
        assert [r["op"] for r in body["records"]] == ["create", "update"]
        assert body["unreadable"] == 2
        assert [p["line"] for p in body["problems"]] == [2, 3]
        assert "checksum" in body["problems"][0]["reason"]
        first = ok(client.get("/v1/banks/DAMAGED/log?limit=1"))
        second = ok(client.get(f"/v1/banks/DAMAGED/log?after={first['next_after']}"))
        assert (first["unreadable"], second["unreadable"]) == (0, 2)  # each line in one page


# --- read-only instances -------------------------------------------------------------------


def test_a_read_only_instance_reads_the_banks_and_refuses_changes(
    writer: TestClient, reader: TestClient
) -> None:
    (content,) = make_bank(writer, "SHARED", codes(1, 11))
    listed = ok(reader.get("/v1/banks"))
    assert listed["writer"] is False
    assert "SHARED" in [bank["name"] for bank in listed["banks"]]
    assert [i["id"] for i in ok(reader.get("/v1/banks/SHARED/contents"))["contents"]] == [content]
    message = refused(reader.post("/v1/banks", json={"name": "MINE"}), 403)
    assert message.startswith("this instance only reads the banks")
    changes = [
        ("PATCH", "/v1/banks/SHARED", {"matching_enabled_ratio": 0}),
        ("DELETE", "/v1/banks/SHARED", None),
        (
            "POST",
            "/v1/banks/SHARED/contents",
            {"contents": [{"signals": {"pdq": codes(1, 12)[0]}}]},
        ),
        ("PATCH", f"/v1/banks/SHARED/contents/{content}", {"enabled": False}),
        ("DELETE", f"/v1/banks/SHARED/contents/{content}", None),
        (
            "POST",
            "/v1/banks/SHARED/exclusions",
            {"hashes": [{"algorithm": "pdq", "hash": PUBLISHED[0]}]},
        ),
    ]
    for method, path, body in changes:
        assert refused(reader.request(method, path, json=body), 403) == message
    assert ok(reader.get("/v1/banks/SHARED/log"))["records"][-1]["op"] == "add"
    assert found(reader, codes(1, 11)[0]) == [("SHARED", str(content))]


# --- /v1/index and the metrics -------------------------------------------------------------


def _samples(client: TestClient) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = ok_text(client.get("/metrics"))
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): float(sample.value)
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def ok_text(response: Any) -> str:
    assert response.status_code == 200, response.text
    text: str = response.text
    return text


def test_index_info_and_metrics_tell_the_banks_against_the_served_version(
    writer: TestClient,
) -> None:
    make_bank(writer, "MEASURED", codes(5, 13))
    info = ok(writer.get("/v1/index"))["banks"]
    assert info["banks"]["MEASURED"] == {
        "records": 6,  # its creation and one record per content
        "contents": 5,
        "unfolded_records": 6,
        "seconds_since_fold": None,
    }
    listed = ok(writer.get("/v1/banks"))
    assert info["overlay_contents"] == listed["overlay_contents"] >= 5
    bank = (("bank", "MEASURED"),)
    expected = {
        ("hashmatch_bank_records", bank): 6.0,
        ("hashmatch_bank_contents", bank): 5.0,
        ("hashmatch_bank_unfolded_records", bank): 6.0,
        ("hashmatch_bank_seconds_since_fold", bank): float("inf"),
        ("hashmatch_overlay_contents", ()): float(listed["overlay_contents"]),
        ("hashmatch_overlay_hidden", ()): float(listed["overlay_hidden"]),
        ("hashmatch_bank_unreadable_records", ()): 0.0,
    }

    def measured() -> bool:
        samples = _samples(writer)
        return all(samples.get(key) == value for key, value in expected.items())

    wait_until("the bank metrics after the add (the watch's next tick)", measured, timeout=30)


def test_a_folded_bank_has_nothing_unfolded_and_its_disabled_content_hidden(
    tmp_path: Path,
) -> None:
    index, banks = tmp_path / "index", tmp_path / "index" / "banks"
    folded = codes(2, 14)
    with BankWriter(banks) as standalone:
        standalone.create_bank("FOLDED")
        ids = [e.id for e in standalone.add("FOLDED", [NewContent({"pdq": c}) for c in folded])]
    lists, exclusions = bank_sources(banks)
    build_index(lists, index, BuildOptions(exclusions=exclusions))
    with TestClient(create_app(ServiceConfig(index=index, bank_writer=True))) as client:
        bank = ok(client.get("/v1/banks/FOLDED"))
        assert (bank["records"], bank["unfolded_records"]) == (3, 0)
        assert 0 <= bank["seconds_since_fold"] < 24 * 3600
        assert found(client, folded[0]) == [("FOLDED", str(ids[0]))]  # from the index itself
        ok(client.patch(f"/v1/banks/FOLDED/contents/{ids[0]}", json={"enabled": False}))
        assert found(client, folded[0]) == []
        listed = ok(client.get("/v1/banks"))
        assert (listed["overlay_contents"], listed["overlay_hidden"]) == (0, 1)
        assert listed["banks"][0]["unfolded_records"] == 1

        def measured() -> bool:
            samples = _samples(client)
            label = (("bank", "FOLDED"),)
            age = samples.get(("hashmatch_bank_seconds_since_fold", label), float("inf"))
            return (
                samples.get(("hashmatch_bank_unfolded_records", label)) == 1
                and samples.get(("hashmatch_overlay_hidden", ())) == 1
                and age < 24 * 3600
            )

        wait_until("the folded bank's metrics", measured, timeout=30)
        ok(client.patch(f"/v1/banks/FOLDED/contents/{ids[0]}", json={"enabled": True}))
        assert found(client, folded[0]) == [("FOLDED", str(ids[0]))]


def test_the_overlay_is_counted_before_any_lookup(index: Path, tmp_path: Path) -> None:
    config = ServiceConfig(index=index, banks=tmp_path / "banks", bank_writer=True)
    with TestClient(create_app(config)) as client:
        make_bank(client, "UNASKED", codes(2, 16))
        listed = ok(client.get("/v1/banks"))
        assert (listed["overlay_contents"], listed["overlay_hidden"]) == (2, 0)
        assert ok(client.get("/v1/index"))["banks"]["overlay_contents"] == 2
