"""The registry and the algorithms in it: names, sizes, thresholds, exact byte hashes."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from hashmatch import UnknownAlgorithmError, UnsupportedImageError, algorithm_names, hash_image
from hashmatch.fixtures.hostile import encode, truncated
from hashmatch.index.evaluation.transforms import apply_transform
from hashmatch.registry import get_algorithm, resolve_algorithms


def test_builtin_algorithms_are_registered_with_their_sizes_and_thresholds() -> None:
    assert algorithm_names() == ["pdq", "ahash", "dhash", "phash", "whash", "md5", "sha256"]
    expected = {
        "pdq": (256, 31),
        "phash": (64, 10),
        "dhash": (64, 10),
        "ahash": (64, 3),
        "whash": (64, 5),
        "md5": (128, 0),
        "sha256": (256, 0),
    }
    for name, (bits, threshold) in expected.items():
        algorithm = get_algorithm(name)
        assert (algorithm.bits, algorithm.default_threshold) == (bits, threshold)
        assert algorithm.description


def test_resolve_accepts_commas_repeats_case_and_all() -> None:
    assert [a.name for a in resolve_algorithms(["PDQ,phash", "pdq"])] == ["pdq", "phash"]
    assert len(resolve_algorithms("all")) == len(algorithm_names())
    with pytest.raises(UnknownAlgorithmError, match=r"unknown algorithm 'sift' \(known: pdq"):
        resolve_algorithms("pdq,sift")


def test_all_algorithms_hash_with_one_decode(tmp_path: Path, photo) -> None:
    path = tmp_path / "photo.jpg"
    path.write_bytes(encode(photo, "JPEG"))
    result = hash_image(path, "all")
    assert list(result) == algorithm_names()
    assert {name: len(result[name].hex) for name in result} == {
        "pdq": 64,
        "ahash": 16,
        "dhash": 16,
        "phash": 16,
        "whash": 16,
        "md5": 32,
        "sha256": 64,
    }


def test_exact_hashes_are_of_the_file_bytes(tmp_path: Path, photo) -> None:
    data = encode(photo, "PNG")
    result = hash_image(data, ("md5", "sha256"))
    assert result["md5"].hex == hashlib.md5(data).hexdigest()
    assert result["sha256"].hex == hashlib.sha256(data).hexdigest()


def test_exact_hashes_do_not_decode_pixels(photo) -> None:
    # A file whose pixels are broken still has bytes that a clearinghouse list may carry.
    data = truncated(encode(photo, "JPEG"), 0.5)
    assert hash_image(data, "md5")["md5"].hex == hashlib.md5(data).hexdigest()


def test_exact_hash_of_a_pil_image_is_refused_clearly(photo) -> None:
    with pytest.raises(UnsupportedImageError, match="md5 hashes the original file bytes"):
        hash_image(photo, "md5")


@pytest.mark.parametrize(
    "transform", ["jpeg_q50", "resize_0.5", "resize_2.0", "brightness_1.2", "crop_2pct"]
)
def test_perceptual_hashes_survive_mild_edits_within_their_thresholds(transform, photos) -> None:
    for photo in photos:
        original = hash_image(photo, ("pdq", "phash"))
        edited = hash_image(apply_transform(transform, photo), ("pdq", "phash"))
        for name in ("pdq", "phash"):
            threshold = get_algorithm(name).default_threshold
            assert original[name].distance(edited[name]) <= threshold, (name, photo.size)


def test_distinct_images_are_far_apart(photos) -> None:
    hashes = [hash_image(photo, ("pdq", "phash")) for photo in photos]
    for i, a in enumerate(hashes):
        for b in hashes[i + 1 :]:
            assert a["pdq"].distance(b["pdq"]) > 70
            assert a["phash"].distance(b["phash"]) > 12


def test_rotated_image_is_caught_by_a_dihedral_variant(photo) -> None:
    original = hash_image(photo, dihedral=True)
    rotated = hash_image(apply_transform("rotate_90", photo))["pdq"]
    assert original["pdq"].distance(rotated) > 64
    assert min(v.distance(rotated) for v in original.variants["pdq"].values()) <= 16
