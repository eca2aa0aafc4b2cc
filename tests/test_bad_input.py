"""Every public call, fed every malformed shape: only ``HashmatchError`` subclasses come out.

README promises that a caller catching :class:`hashmatch.HashmatchError` survives anything
hashmatch raises for bad input, and that the error says what was wrong without echoing a
whole hash. Each case here is caught by that class alone; anything else escaping fails.
"""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from PIL import Image

import hashmatch
from hashmatch import (
    Hash,
    HashFormatError,
    HashListError,
    HashmatchError,
    ImageLimits,
    IndexFormatError,
    ListSource,
    Matcher,
    OptionError,
    UnknownAlgorithmError,
    build_index,
    hash_image,
    load_image,
    read_hash_list,
)
from hashmatch.fixtures.hashlists import SyntheticEntry, write_list
from hashmatch.fixtures.hostile import encode
from hashmatch.fixtures.images import synthetic_photo

PDQ = "f8f8f0cee0f4a84f06370a22038f63f0b36e2ed596621e1d33e6b39c4e9c9b22"
PHASH = "d1c48f8a3b6e1e0f"


@pytest.fixture(scope="module")
def matcher(tmp_path_factory: pytest.TempPathFactory) -> Matcher:
    root = tmp_path_factory.mktemp("bad-input")
    entries = [SyntheticEntry("pdq", PDQ, "p"), SyntheticEntry("phash", PHASH, "f")]
    build_index([ListSource(write_list(root / "l.csv", entries, "csv"))], root / "idx")
    return Matcher.open(root / "idx")


MALFORMED_LOOKUPS = {
    "None as a hash": {"pdq": None},
    "bytes as a hash": {"pdq": b"x" * 32},
    "bytes of the right length": {"pdq": bytes(32)},
    "an int as a hash": {"pdq": 12345},
    "a float as a hash": {"pdq": 1.5},
    "a nested list": {"pdq": [[PDQ]]},
    "a list holding None": {"pdq": [PDQ, None]},
    "a dict as a hash": {"pdq": {"hash": PDQ}},
    "an empty list": {"pdq": []},
    "an empty string": {"pdq": ""},
    "too short": {"pdq": PDQ[:-2]},
    "too long": {"pdq": PDQ + "00"},
    "non-hex": {"pdq": "zz" + PDQ[2:]},
    "hex with a 0x prefix": {"pdq": "0x" + PDQ[2:]},
    "a unicode digit": {"pdq": "\u0661" + PDQ[1:]},
    "an unknown algorithm": {"nosuch": PDQ},
    "an algorithm name that is not a string": {7: PDQ},
    "None as the algorithm": {None: PDQ},
    "a Hash of another algorithm": {"pdq": Hash("phash", bytes(8))},
    "a phash hex given as pdq": {"pdq": PHASH},
    "an empty mapping": {},
    "a string instead of a mapping": PDQ,
    "a list instead of a mapping": [PDQ],
    "None instead of a mapping": None,
    "an int instead of a mapping": 5,
}


@pytest.mark.parametrize("name", sorted(MALFORMED_LOOKUPS))
def test_lookup_refuses_every_malformed_shape_with_a_hashmatch_error(
    matcher: Matcher, name: str
) -> None:
    with pytest.raises(HashmatchError) as caught:
        matcher.lookup(MALFORMED_LOOKUPS[name])  # type: ignore[arg-type]
    message = str(caught.value)
    assert message and PDQ not in message and PDQ[2:] not in message  # never the whole hash


@pytest.mark.parametrize(
    "thresholds",
    [{"pdq": -1}, {"pdq": 257}, {"pdq": "31"}, {"pdq": None}, {"nosuch": 3}, {"pdq": 3.5}, [3]],
)
def test_lookup_refuses_malformed_thresholds(matcher: Matcher, thresholds) -> None:
    with pytest.raises(HashmatchError):
        matcher.lookup({"pdq": PDQ}, thresholds=thresholds)


def test_the_errors_say_what_was_wrong(matcher: Matcher) -> None:
    with pytest.raises(HashFormatError, match="pdq hash must be 64 hex digits, got 62"):
        matcher.lookup({"pdq": PDQ[:-2]})
    with pytest.raises(HashFormatError, match=r"a phash hash given as pdq"):
        matcher.lookup({"pdq": Hash("phash", bytes(8))})
    with pytest.raises(HashFormatError, match=r"pdq: expected a hex string or a Hash, got bytes"):
        matcher.lookup({"pdq": b"x" * 32})
    with pytest.raises(
        HashFormatError, match=r"pdq: expected a hex string or a Hash, got NoneType"
    ):
        matcher.lookup({"pdq": None})
    with pytest.raises(HashFormatError, match="no hash given for pdq"):
        matcher.lookup({"pdq": []})
    with pytest.raises(HashFormatError, match="no hashes given"):
        matcher.lookup({})
    with pytest.raises(UnknownAlgorithmError, match="unknown algorithm 'nosuch'"):
        matcher.lookup({"nosuch": PDQ})
    with pytest.raises(UnknownAlgorithmError, match="algorithm names are strings, got int"):
        matcher.lookup({7: PDQ})  # type: ignore[dict-item]
    with pytest.raises(HashFormatError, match="expected a mapping of algorithm names"):
        matcher.lookup(PDQ)  # type: ignore[arg-type]


def test_well_formed_lookups_still_work(matcher: Matcher) -> None:
    assert [m.entry_id for m in matcher.lookup({"pdq": PDQ})] == ["p"]
    assert [m.entry_id for m in matcher.lookup({"PDQ": f"  {PDQ.upper()}  "})] == ["p"]
    assert [m.entry_id for m in matcher.lookup({"pdq": [Hash.from_hex("pdq", PDQ)]})] == ["p"]
    assert matcher.lookup({"md5": "0" * 32}) == []  # an algorithm the index lacks: no match


BAD_SOURCES = {
    "None": None,
    "an int": 3,
    "a float": 2.5,
    "a list of bytes": [b"\xff\xd8"],
    "a dict": {"path": "x.jpg"},
    "a text-mode file": io.StringIO("not bytes"),
    "an empty path": "",
    "a missing path": "/nonexistent/dir/x.jpg",
    "a path with a NUL byte": "bad\0name.jpg",
    "empty bytes": b"",
    "garbage bytes": b"\x00" * 64,
}


@pytest.mark.parametrize("name", sorted(BAD_SOURCES))
def test_hash_image_and_load_image_refuse_bad_sources(name: str) -> None:
    source = BAD_SOURCES[name]
    with pytest.raises(HashmatchError):
        hash_image(source)  # type: ignore[arg-type]
    with pytest.raises(HashmatchError):
        load_image(source)  # type: ignore[arg-type]


@pytest.mark.parametrize("name", sorted(BAD_SOURCES))
def test_match_turns_a_bad_source_into_an_error_result(matcher: Matcher, name: str) -> None:
    result = matcher.match(BAD_SOURCES[name])  # type: ignore[arg-type]
    assert result.status == "error"
    kind = result.error.partition(":")[0]
    assert kind in ("read", "decode", "unsupported", "too_large"), result.error


@pytest.mark.parametrize(
    "algorithms", [None, 5, "", ",", "nosuch", ["pdq", None], ["pdq", 3], [], b"pdq"]
)
def test_hash_image_refuses_bad_algorithm_choices(algorithms) -> None:
    image = synthetic_photo(3, (64, 64))
    with pytest.raises(HashmatchError):
        hash_image(image, algorithms)


def test_match_refuses_bad_options_with_a_hashmatch_error(matcher: Matcher) -> None:
    data = encode(synthetic_photo(4, (64, 64)), "PNG")
    for options in (
        {"algorithms": ["nosuch"]},
        {"algorithms": 5},
        {"thresholds": {"pdq": -3}},
        {"limits": "big"},
        {"time_limit": "soon"},
        {"time_limit": -1},
    ):
        with pytest.raises(HashmatchError):
            matcher.match(data, **options)  # type: ignore[arg-type]


def test_hash_image_refuses_bad_limits() -> None:
    image = synthetic_photo(3, (64, 64))
    for limits in ("big", None, 5):
        with pytest.raises(OptionError, match="limits must be ImageLimits"):
            hash_image(image, limits=limits)  # type: ignore[arg-type]
    for field in ("max_bytes", "max_pixels", "max_side"):
        for value in (0, -1, 2.5, "10", True):
            with pytest.raises(OptionError, match=f"ImageLimits.{field} must be"):
                ImageLimits(**{field: value})


@pytest.mark.parametrize(
    "path", [None, 5, "", "/nonexistent/list.csv", b"/nonexistent/list.csv", "bad\0name.csv"]
)
def test_read_hash_list_refuses_bad_paths(path) -> None:
    with pytest.raises(HashmatchError):
        list(read_hash_list(path))  # type: ignore[arg-type]


def test_read_hash_list_refuses_a_directory_and_bad_options(tmp_path: Path) -> None:
    listing = write_list(tmp_path / "l.csv", [SyntheticEntry("pdq", PDQ)], "csv")
    with pytest.raises(HashListError, match="is a directory"):
        list(read_hash_list(tmp_path))
    for options in (
        {"algorithm": "nosuch"},
        {"algorithm": 5},
        {"list_format": "xml"},
        {"list_format": None},
        {"max_invalid": 2.0},
        {"max_invalid": "lots"},
        {"list_name": 5},
    ):
        with pytest.raises(HashmatchError):
            list(read_hash_list(listing, **options))  # type: ignore[arg-type]


@pytest.mark.parametrize("path", [None, 5, "", "/nonexistent/index", b"\0", "bad\0index"])
def test_matcher_open_refuses_bad_paths(path) -> None:
    with pytest.raises(HashmatchError):
        Matcher.open(path)  # type: ignore[arg-type]


def test_matcher_open_refuses_what_is_not_an_index(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    (tmp_path / "empty").mkdir()
    for path in (tmp_path / "file", tmp_path / "empty"):
        with pytest.raises(IndexFormatError):
            Matcher.open(path)
    with pytest.raises(HashmatchError):
        Matcher.open(tmp_path / "empty", reload_interval=-1)


def test_hash_constructors_refuse_bad_values() -> None:
    for make in (
        lambda: Hash("pdq", "not bytes"),  # type: ignore[arg-type]
        lambda: Hash("pdq", bytes(3)),
        lambda: Hash(None, bytes(32)),  # type: ignore[arg-type]
        lambda: Hash.from_hex("pdq", None),  # type: ignore[arg-type]
        lambda: Hash.from_hex("pdq", b"ab" * 32),  # type: ignore[arg-type]
        lambda: Hash.from_hex(None, PDQ),  # type: ignore[arg-type]
        lambda: hashmatch.get_algorithm(None),  # type: ignore[arg-type]
    ):
        with pytest.raises(HashmatchError):
            make()


def test_comparing_hashes_of_two_algorithms_is_a_hashmatch_error() -> None:
    with pytest.raises(HashFormatError, match="cannot compare a pdq hash with a phash hash"):
        Hash.from_hex("pdq", PDQ).distance(Hash.from_hex("phash", PHASH))


def test_a_pil_image_that_cannot_be_read_is_a_hashmatch_error() -> None:
    image = Image.new("RGB", (8, 8))
    image.close()  # a closed image has no pixels any more
    with pytest.raises(HashmatchError):
        hash_image(image)


def test_match_many_refuses_bad_arguments_before_starting(matcher: Matcher) -> None:
    for arguments in (
        {"sources": None},
        {"sources": 5},
        {"sources": "one/path.jpg"},  # a string is one path, not a list of them
        {"sources": [], "workers": 0},
        {"sources": [], "workers": "2"},
        {"sources": [], "thresholds": {"pdq": 999}},
        {"sources": [], "algorithms": ["nosuch"]},
    ):
        with pytest.raises(HashmatchError):
            list(matcher.match_many(**arguments))  # type: ignore[arg-type]
