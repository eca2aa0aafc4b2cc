"""Matcher: lookups, verdicts for images, dihedral matching, reloading under load."""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from pathlib import Path

import pytest
from PIL import Image, ImageOps

from hashmatch import Hash, HashFormatError, ListSource, Matcher, build_index, hash_image
from hashmatch.fixtures.hashlists import SyntheticEntry, write_list
from hashmatch.fixtures.hostile import encode
from hashmatch.fixtures.images import synthetic_photo
from hashmatch.index.evaluation.transforms import apply_transform


@pytest.fixture(scope="module")
def known_images() -> list[Image.Image]:
    return [synthetic_photo(seed, (480, 360)) for seed in range(20, 26)]


@pytest.fixture
def index(tmp_path: Path, known_images) -> Path:
    """An index of the known images' PDQ and phash, plus the MD5 of one JPEG file."""
    entries = []
    for i, image in enumerate(known_images):
        result = hash_image(image, ("pdq", "phash"))
        entries.append(SyntheticEntry("pdq", result["pdq"].hex, f"case-{i}", "known", "ncmec"))
        entries.append(SyntheticEntry("phash", result["phash"].hex, f"case-{i}", "known", "ncmec"))
    data = encode(known_images[0], "JPEG", quality=80)
    (tmp_path / "exact.jpg").write_bytes(data)
    entries.append(SyntheticEntry("md5", hashlib.md5(data).hexdigest(), "exact-0", "file", "md5s"))
    source = write_list(tmp_path / "known.csv", entries, "csv")
    build_index([ListSource(source)], tmp_path / "idx")
    return tmp_path / "idx"


def test_lookup_accepts_hash_hex_and_hash_results(index: Path, known_images) -> None:
    matcher = Matcher.open(index)
    result = hash_image(known_images[2], ("pdq", "phash"))
    by_hash = matcher.lookup({"pdq": result["pdq"]})
    by_hex = matcher.lookup({"pdq": result["pdq"].hex})
    assert by_hash == by_hex and [m.entry_id for m in by_hash] == ["case-2"]
    both = matcher.lookup(result)
    assert {(m.algorithm, m.entry_id, m.distance) for m in both} == {
        ("pdq", "case-2", 0),
        ("phash", "case-2", 0),
    }
    match = both[0]
    assert (match.list, match.label, match.hash) == ("ncmec", "known", result[match.algorithm].hex)


def test_match_flags_edited_copies_with_the_right_entry(index: Path, known_images) -> None:
    matcher = Matcher.open(index)
    for edit in ("jpeg_q50", "resize_0.5", "crop_2pct", "brightness_1.2"):
        edited = apply_transform(edit, known_images[4])
        verdict = matcher.match(encode(edited, "JPEG", quality=85))
        assert verdict.status == "match", edit
        assert {m.entry_id for m in verdict.matches} == {"case-4"}
        assert verdict.quality == 100 and verdict.index_version == matcher.version


def test_rotations_and_flips_match_through_dihedral_variants(index: Path, known_images) -> None:
    matcher = Matcher.open(index)
    for edit in ("rotate_90", "rotate_180", "flip_horizontal", "flip_vertical"):
        turned = apply_transform(edit, known_images[1])
        verdict = matcher.match(turned)
        assert verdict.status == "match", edit
        pdq = [m for m in verdict.matches if m.algorithm == "pdq"]
        assert pdq and pdq[0].entry_id == "case-1" and pdq[0].variant is not None
        assert matcher.match(turned, dihedral=False).status == "no_match", edit


def test_unrelated_images_do_not_match(index: Path) -> None:
    matcher = Matcher.open(index)
    for seed in range(200, 206):
        assert matcher.match(synthetic_photo(seed, (400, 300))).status == "no_match"


def test_low_quality_image_is_not_matched_on_pdq(index: Path) -> None:
    flat = Image.new("RGB", (300, 300), (128, 128, 128))
    verdict = Matcher.open(index).match(flat)
    assert verdict.status == "low_quality" and verdict.quality == 0 and verdict.matches == []


def test_broken_image_is_an_error_verdict_not_an_exception(index: Path) -> None:
    verdict = Matcher.open(index).match(b"\xff\xd8\xff\xe0 not a jpeg")
    assert verdict.status == "error" and verdict.error.startswith("decode: ")


def test_md5_matches_the_exact_file_bytes(index: Path) -> None:
    matcher = Matcher.open(index)
    data = (index.parent / "exact.jpg").read_bytes()
    verdict = matcher.match(data, algorithms=["md5"])
    assert [(m.algorithm, m.entry_id, m.distance) for m in verdict.matches] == [
        ("md5", "exact-0", 0)
    ]
    assert matcher.match(data + b"\x00", algorithms=["md5"]).status == "no_match"


def test_per_call_thresholds_override(index: Path, known_images) -> None:
    matcher = Matcher.open(index)
    edited = hash_image(apply_transform("crop_2pct", known_images[3]), ("pdq",))
    distance = matcher.lookup(edited)[0].distance
    assert distance > 0
    assert matcher.lookup(edited, thresholds={"pdq": distance - 1}) == []


def test_reload_under_concurrent_lookups(index: Path, known_images, tmp_path: Path) -> None:
    matcher = Matcher.open(index)
    query = hash_image(known_images[0], ("pdq",))["pdq"]
    errors: list[BaseException] = []
    seen_versions: set[str] = set()
    stop = threading.Event()

    def hammer() -> None:
        while not stop.is_set():
            try:
                found = matcher.lookup({"pdq": query})
                assert [m.entry_id for m in found] == ["case-0"]
                seen_versions.add(matcher.version)
            except BaseException as exc:
                errors.append(exc)
                return

    threads = [threading.Thread(target=hammer) for _ in range(4)]
    for thread in threads:
        thread.start()
    source = next(index.parent.glob("known.csv"))
    versions = {matcher.version}
    for _ in range(5):
        build_index([ListSource(source)], index)
        assert matcher.reload() is True
        versions.add(matcher.version)
        assert matcher.reload() is False
    stop.set()
    for thread in threads:
        thread.join()
    assert errors == []
    assert len(versions) == 6 and seen_versions <= versions


def test_reload_interval_picks_up_new_versions_by_itself(index: Path) -> None:
    with Matcher.open(index, reload_interval=0.05) as matcher:
        before = matcher.version
        build_index([ListSource(next(index.parent.glob("known.csv")))], index)
        deadline = time.monotonic() + 60
        while matcher.version == before and time.monotonic() < deadline:
            time.sleep(0.02)
        assert matcher.version != before


def test_a_hash_given_under_another_algorithm_is_refused(index: Path) -> None:
    with pytest.raises(HashFormatError, match="a phash hash given as pdq"):
        Matcher.open(index).lookup({"pdq": Hash("phash", bytes(8))})


def test_mirrored_png_matches(index: Path, known_images) -> None:
    verdict = Matcher.open(index).match(encode(ImageOps.mirror(known_images[5]), "PNG"))
    assert verdict.status == "match"


def test_match_many_takes_pil_images_without_md5_errors(index: Path, known_images) -> None:
    # The index holds md5s too; a PIL image has no file bytes, so md5 must not be attempted.
    results = list(Matcher.open(index).match_many([known_images[2], known_images[3]]))
    assert [r.status for r in results] == ["match", "match"]
    assert [r.source for r in results] == [0, 1]


def test_64_bit_matches_need_the_same_entrys_pdq_to_agree(tmp_path: Path) -> None:
    upload, other = synthetic_photo(90), synthetic_photo(91)
    mine, theirs = hash_image(upload, ("pdq", "ahash")), hash_image(other, ("pdq", "ahash"))
    assert mine["pdq"].distance(theirs["pdq"]) > 64
    entries = [
        # the same picture in both hashes: the ahash match is confirmed
        SyntheticEntry("pdq", mine["pdq"].hex, "same", "", "list"),
        SyntheticEntry("ahash", mine["ahash"].hex, "same", "", "list"),
        # an ahash collision on an entry whose PDQ is another picture: contradicted
        SyntheticEntry("pdq", theirs["pdq"].hex, "collision", "", "list"),
        SyntheticEntry("ahash", mine["ahash"].hex, "collision", "", "list"),
        # an entry with no PDQ: nothing to confirm with, the ahash match stands
        SyntheticEntry("ahash", mine["ahash"].hex, "ahash-only", "", "list"),
    ]
    build_index([ListSource(write_list(tmp_path / "l.csv", entries, "csv"))], tmp_path / "idx")
    with Matcher.open(tmp_path / "idx") as matcher:
        found = {(m.algorithm, m.entry_id) for m in matcher.match(upload).matches}
    assert found == {("pdq", "same"), ("ahash", "same"), ("ahash", "ahash-only")}


def test_nothing_logs_hashes_or_pixels(
    index: Path, known_images, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    matcher = Matcher.open(index, reload_interval=0.05)
    result = matcher.match(encode(known_images[0], "JPEG", quality=90), recover=True)
    assert result.matched
    current = index / (index / "CURRENT").read_text().strip()
    (index / "CURRENT").write_text("versions/missing\n")  # the background reload now fails
    deadline = time.monotonic() + 60  # it tries every 0.05 s: waiting on the log, not a clock
    while not any("reload" in r.getMessage() for r in caplog.records):
        assert time.monotonic() < deadline, "the failed reload was never logged"
        time.sleep(0.02)
    matcher.close()
    (index / "CURRENT").write_text(str(current.relative_to(index)) + "\n")
    assert any("reload" in record.getMessage() for record in caplog.records)
    logged = "\n".join(record.getMessage() for record in caplog.records)
    for value in [*result.hashes.values(), *(m.hash for m in result.matches)]:
        assert str(value) not in logged and getattr(value, "hex", value) not in logged
