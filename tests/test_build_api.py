"""The public build API: ``hashmatch.build_index`` from list files and from entries in memory."""

from __future__ import annotations

from pathlib import Path

import pytest

import hashmatch
from hashmatch import (
    BuildOptions,
    EntryList,
    Hash,
    HashListError,
    ListEntry,
    ListSource,
    Matcher,
    build_index,
    hash_image,
    read_hash_list,
)
from hashmatch.fixtures.hashlists import SyntheticEntry, random_codes, write_list
from hashmatch.fixtures.images import synthetic_photo

CODES = [code.tobytes().hex() for code in random_codes(6, seed=11)]


def test_an_index_builds_from_tuples_and_list_entries_without_a_file(tmp_path: Path) -> None:
    photo = hash_image(synthetic_photo(5), ("pdq", "phash"))
    entries = [
        ("pdq", photo["pdq"], None, "photo-5", "known"),  # a Hash value
        ("phash", photo["phash"].hex, None, "photo-5", "known"),  # hex text
        ("pdq", CODES[0]),  # no list, id or label
        ListEntry("pdq", Hash.from_hex("pdq", CODES[1]), "other", "c1", None, {"case": "7"}, 1),
    ]
    report = build_index([EntryList(entries, name="moderators")], tmp_path / "idx")
    assert report.lists[0]["name"] == "moderators"
    assert report.lists[0]["source"] == "<moderators>"
    assert report.lists[0]["format"] == "entries"
    assert report.lists[0]["accepted"] == {"pdq": 3, "phash": 1}
    with Matcher.open(tmp_path / "idx") as matcher:
        found = matcher.match(synthetic_photo(5))
        assert found.status == "match"
        assert {(m.algorithm, m.list, m.entry_id) for m in found.matches} == {
            ("pdq", "moderators", "photo-5"),
            ("phash", "moderators", "photo-5"),
        }
        other = matcher.lookup({"pdq": CODES[1]})
        assert [(m.list, m.entry_id, m.metadata) for m in other] == [("other", "c1", {"case": "7"})]


def test_bad_entries_are_rejected_by_position_like_bad_lines(tmp_path: Path) -> None:
    entries = (
        [
            ("pdq", CODES[0], None, "good"),
            ("pdq", CODES[1][:-2], None, "short"),  # wrong length
            ("pdq", "zz" + CODES[2][2:]),  # non-hex
            ("nosuch", CODES[3]),  # unknown algorithm
            ("pdq", "0" * 64),  # degenerate
            ("pdq", None),  # not a hash at all
            "not a tuple",
            ("pdq", Hash.from_hex("phash", "d1c48f8a3b6e1e0f")),  # another algorithm's hash
        ]
        + [("pdq", code) for code in CODES[3:]]
    )
    options = BuildOptions(max_invalid=0.9)
    report = build_index([EntryList(entries, name="bank")], tmp_path / "idx", options)
    stats = report.lists[0]
    assert stats["accepted"] == {"pdq": 4} and stats["rejected"] == 7
    problems = "\n".join(stats["first_problems"])
    for line, reason in [
        (2, "pdq hash must be 64 hex digits, got 62"),
        (3, "non-hex character"),
        (4, "unknown algorithm 'nosuch'"),
        (5, "degenerate pdq hash: all zeros"),
        (6, "the hash must be a Hash or hex text, got NoneType"),
        (7, "expected a ListEntry or (algorithm, hash, list, id, label), got str"),
        (8, "a phash hash given as pdq"),
    ]:
        assert f"<bank>:{line}: " in problems and reason in problems, (line, problems)
    assert CODES[2][2:] not in problems  # reasons never quote the hash
    with pytest.raises(HashListError, match=r"<bank>:2: pdq hash must be 64 hex digits"):
        build_index(
            [EntryList(entries, name="bank")], tmp_path / "strict", BuildOptions(strict=True)
        )
    with pytest.raises(HashListError, match=r"<bank>: 7 of 11 hashes invalid"):
        build_index([EntryList(entries, name="bank")], tmp_path / "policy")


def test_entries_and_files_build_together_with_their_own_thresholds(tmp_path: Path) -> None:
    listing = write_list(tmp_path / "feed.csv", [SyntheticEntry("pdq", CODES[0], "f0")], "csv")
    sources = [
        ListSource(listing, thresholds={"pdq": 20}),
        EntryList(iter([("pdq", CODES[1], None, "m1")]), name="bank", thresholds={"pdq": 5}),
    ]
    report = build_index(sources, tmp_path / "idx")
    assert [item["name"] for item in report.lists] == ["feed", "bank"]
    with Matcher.open(tmp_path / "idx") as matcher:
        assert matcher.threshold("pdq", "feed") == 20 and matcher.threshold("pdq", "bank") == 5
        assert [m.entry_id for m in matcher.lookup({"pdq": CODES[1]})] == ["m1"]


def test_the_same_entries_give_the_same_checksum(tmp_path: Path) -> None:
    entries = [("pdq", code, None, f"e{n}", "label\twith tab") for n, code in enumerate(CODES)]
    first = build_index([EntryList(entries)], tmp_path / "a").lists[0]["sha256"]
    second = build_index([EntryList(list(entries))], tmp_path / "b").lists[0]["sha256"]
    changed = build_index([EntryList(entries[:-1])], tmp_path / "c").lists[0]["sha256"]
    assert first == second != changed and len(first) == 64


def test_entries_read_from_a_list_file_rebuild_the_same_index(tmp_path: Path) -> None:
    rows = [SyntheticEntry("pdq", code, f"id{n}", f"label{n}") for n, code in enumerate(CODES)]
    listing = write_list(tmp_path / "feed.csv", rows, "csv")
    from_file = build_index([ListSource(listing)], tmp_path / "file")
    from_memory = build_index(
        [EntryList(read_hash_list(listing), name="feed")], tmp_path / "memory"
    )
    assert from_file.algorithms["pdq"].codes == from_memory.algorithms["pdq"].codes == 6
    with Matcher.open(tmp_path / "file") as a, Matcher.open(tmp_path / "memory") as b:
        for code in CODES:
            assert a.lookup({"pdq": code}) == b.lookup({"pdq": code})


def test_build_sources_of_the_wrong_kind_are_refused(tmp_path: Path) -> None:
    with pytest.raises(hashmatch.OptionError, match="ListSource or EntryList"):
        build_index(["feed.csv"], tmp_path / "idx")  # type: ignore[list-item]
