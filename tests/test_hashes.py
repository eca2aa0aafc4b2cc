"""The Hash value type: hex round trips, validation, distance."""

from __future__ import annotations

import imagehash
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from hashmatch import Hash, HashFormatError, UnknownAlgorithmError, hash_image


@given(st.binary(min_size=32, max_size=32))
def test_pdq_hex_round_trips(value: bytes) -> None:
    digest = Hash("pdq", value)
    assert Hash.from_hex("pdq", digest.hex) == digest
    assert Hash.from_hex("pdq", digest.hex.upper()) == digest
    assert len(digest.hex) == 64


@given(st.binary(min_size=8, max_size=8), st.binary(min_size=8, max_size=8))
def test_distance_is_popcount_of_xor(a: bytes, b: bytes) -> None:
    expected = bin(int.from_bytes(a, "big") ^ int.from_bytes(b, "big")).count("1")
    assert Hash("phash", a).distance(Hash("phash", b)) == expected
    assert Hash("phash", a) - Hash("phash", b) == expected


def test_from_hex_rejects_wrong_length_with_the_counts() -> None:
    with pytest.raises(HashFormatError, match="64 hex digits, got 62"):
        Hash.from_hex("pdq", "ab" * 31)


def test_from_hex_rejects_non_hex_naming_the_character_and_position() -> None:
    with pytest.raises(HashFormatError, match=r"non-hex character 'g' at position 3"):
        Hash.from_hex("phash", "abg" + "0" * 13)


def test_from_hex_ignores_surrounding_whitespace() -> None:
    assert Hash.from_hex("phash", "  00ff00ff00ff00ff\n").hex == "00ff00ff00ff00ff"


def test_unknown_algorithm_is_refused() -> None:
    with pytest.raises(UnknownAlgorithmError, match="unknown algorithm 'pdqq'"):
        Hash.from_hex("pdqq", "00")


def test_value_length_must_match_the_algorithm() -> None:
    with pytest.raises(HashFormatError, match="256 bits, got 64"):
        Hash("pdq", bytes(8))


def test_distance_refuses_different_algorithms() -> None:
    with pytest.raises(ValueError, match="cannot compare a phash hash with a dhash hash"):
        Hash("phash", bytes(8)).distance(Hash("dhash", bytes(8)))


def test_equal_hashes_are_equal_and_hash_alike() -> None:
    a, b = Hash("dhash", b"\x01" * 8), Hash.from_hex("dhash", "01" * 8)
    assert a == b and hash(a) == hash(b) and len({a, b}) == 1
    assert Hash("ahash", b"\x01" * 8) != a  # same bits, other algorithm


def test_bits_are_most_significant_first() -> None:
    digest = Hash.from_hex("phash", "8000000000000001")
    bits = digest.bits
    assert bits[0] and bits[-1] and bits.sum() == 2
    assert Hash.from_bits("phash", bits) == digest
    assert digest.bit_count == 2


def test_str_names_the_algorithm() -> None:
    assert str(Hash("phash", bytes(8))) == "phash:0000000000000000"


def test_imagehash_hex_matches_str_of_imagehash(photo) -> None:
    ours = hash_image(photo, ("phash", "dhash", "ahash", "whash"), exact=True)
    rgb = photo.convert("RGB")
    assert ours["phash"].hex == str(imagehash.phash(rgb))
    assert ours["dhash"].hex == str(imagehash.dhash(rgb))
    assert ours["ahash"].hex == str(imagehash.average_hash(rgb))
    assert ours["whash"].hex == str(imagehash.whash(rgb))
    assert np.array_equal(ours["phash"].bits, imagehash.phash(rgb).hash.ravel())
