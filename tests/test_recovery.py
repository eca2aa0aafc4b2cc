"""Undoing small crops and tilts on the query side (``recover``)."""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image

from hashmatch import ListSource, Matcher, build_index, hash_image
from hashmatch.fixtures.hashlists import SyntheticEntry, write_list
from hashmatch.fixtures.images import synthetic_photo
from hashmatch.index.evaluation.transforms import apply_transform
from hashmatch.recovery import RECOVERY_EDITS


@pytest.fixture(scope="module")
def known() -> list[Image.Image]:
    return [synthetic_photo(seed) for seed in range(1, 5)]


@pytest.fixture(scope="module")
def index(tmp_path_factory: pytest.TempPathFactory, known: list[Image.Image]) -> Path:
    folder = tmp_path_factory.mktemp("recover")
    entries = [
        SyntheticEntry("pdq", hash_image(image)["pdq"].hex, f"case-{number}", "known", "list")
        for number, image in enumerate(known)
    ]
    build_index([ListSource(write_list(folder / "known.csv", entries, "csv"))], folder / "idx")
    return folder / "idx"


def test_recovered_hashes_are_pdq_only_and_only_when_asked(photo: Image.Image) -> None:
    plain = hash_image(photo, ("pdq", "phash"))
    assert plain.recovered == {}
    recovered = hash_image(photo, ("pdq", "phash"), recover=True)
    assert set(recovered.recovered) == {"pdq"}
    assert list(recovered.recovered["pdq"]) == list(RECOVERY_EDITS)
    assert recovered["pdq"] == plain["pdq"]  # the image's own hash is unchanged


@pytest.mark.parametrize(
    ("edit", "undone_by"),
    [
        ("crop_5pct", "uncrop_5pct"),
        ("rotate_5deg", "tilt_-5deg"),
        ("rotate_2deg", "tilt_-2deg"),
    ],
)
def test_crops_and_tilts_missed_plainly_are_matched_with_recover(
    index: Path, known: list[Image.Image], edit: str, undone_by: str
) -> None:
    upload = apply_transform(edit, known[0])
    with Matcher.open(index) as matcher:
        assert matcher.match(upload).status == "no_match"
        result = matcher.match(upload, recover=True)
    assert result.status == "match"
    best = result.matches[0]
    assert (best.entry_id, best.variant) == ("case-0", undone_by)
    assert best.distance <= 31


def test_recover_flags_no_unrelated_image(index: Path) -> None:
    with Matcher.open(index) as matcher:
        for seed in range(40, 48):
            unrelated = synthetic_photo(seed)
            assert matcher.match(unrelated, recover=True).status == "no_match"


def test_recover_keeps_the_working_pixel_mapping_on_large_jpegs(tmp_path: Path) -> None:
    """A JPEG decoded at reduced scale: the edits must map back to full-resolution pixels."""
    picture = synthetic_photo(7, (2400, 1800))
    cropped = apply_transform("crop_5pct", picture)
    path = tmp_path / "cropped.jpg"
    cropped.save(path, quality=90)
    original = hash_image(picture)["pdq"]
    result = hash_image(path, recover=True)
    assert result["pdq"].distance(original) > 31
    assert result.recovered["pdq"]["uncrop_5pct"].distance(original) <= 31
