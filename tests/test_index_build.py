"""Building and publishing: contents, merging, exclusions, thresholds, atomicity, integrity."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from hashmatch import (
    BuildOptions,
    HashListError,
    IndexBuildError,
    IndexFormatError,
    IndexIntegrityError,
    ListSource,
    Matcher,
    build_index,
)
from hashmatch.fixtures.hashlists import SyntheticEntry, flip_bits, random_codes, write_list
from hashmatch.index.artifact import CURRENT, MANIFEST, VERSIONS, current_version
from hashmatch.index.config import load_config
from hashmatch.index.inspect import index_info, verify_index
from hashmatch.lists import Exclusions

CODES = random_codes(40, seed=11)
PDQ = [c.tobytes().hex() for c in CODES]


def _list(tmp_path: Path, name: str, hexes: list[str], prefix: str = "e") -> Path:
    entries = [SyntheticEntry("pdq", h, f"{prefix}{i}", f"label-{i}") for i, h in enumerate(hexes)]
    return write_list(tmp_path / f"{name}.csv", entries, "csv")


def test_build_publishes_a_version_with_manifest_and_owner_only_files(tmp_path: Path) -> None:
    report = build_index([ListSource(_list(tmp_path, "known", PDQ[:10]))], tmp_path / "idx")
    index = tmp_path / "idx"
    assert current_version(index) == report.version
    version = index / VERSIONS / report.version
    manifest = json.loads((version / MANIFEST).read_text())
    assert manifest["format_version"] == 3 and manifest["entries"] == 10
    assert manifest["algorithms"]["pdq"]["codes"] == 10
    assert manifest["algorithms"]["pdq"]["threshold"] == 31
    assert manifest["lists"][0]["name"] == "known" and len(manifest["lists"][0]["sha256"]) == 64
    assert all(len(f["sha256"]) == 64 for f in manifest["files"].values())
    assert (index.stat().st_mode & 0o777) == 0o700
    assert all((p.stat().st_mode & 0o777) == 0o600 for p in version.iterdir())
    assert verify_index(index) == []


def test_duplicates_merge_into_one_code_with_many_entries(tmp_path: Path) -> None:
    first = _list(tmp_path, "first", PDQ[:5], "a")
    second = _list(tmp_path, "second", PDQ[3:8], "b")  # PDQ[3], PDQ[4] in both
    report = build_index([ListSource(first), ListSource(second)], tmp_path / "idx")
    summary = report.algorithms["pdq"]
    assert (summary.entries, summary.codes, summary.duplicates_merged) == (10, 8, 2)
    matches = Matcher.open(tmp_path / "idx").lookup({"pdq": PDQ[3]})
    assert sorted((m.list, m.entry_id) for m in matches) == [("first", "a3"), ("second", "b0")]


def test_exclusions_by_hash_and_by_entry_id(tmp_path: Path) -> None:
    source = _list(tmp_path, "known", PDQ[:6])
    exclusions = Exclusions({"pdq": {bytes.fromhex(PDQ[0])}}, {"e1"})
    report = build_index(
        [ListSource(source)], tmp_path / "idx", BuildOptions(exclusions=exclusions)
    )
    assert report.algorithms["pdq"].excluded == 2 and report.lists[0]["excluded"] == 2
    matcher = Matcher.open(tmp_path / "idx")
    assert matcher.lookup({"pdq": PDQ[0]}, thresholds={"pdq": 0}) == []
    assert matcher.lookup({"pdq": PDQ[1]}, thresholds={"pdq": 0}) == []
    assert [m.entry_id for m in matcher.lookup({"pdq": PDQ[2]}, thresholds={"pdq": 0})] == ["e2"]


def test_index_and_per_list_thresholds(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    strict_list = _list(tmp_path, "strict", PDQ[:3], "s")
    loose_list = _list(tmp_path, "loose", PDQ[3:6], "l")
    sources = [ListSource(strict_list, thresholds={"pdq": 10}), ListSource(loose_list)]
    build_index(sources, tmp_path / "idx", BuildOptions(thresholds={"pdq": 25}))
    matcher = Matcher.open(tmp_path / "idx")
    near_strict = flip_bits(CODES[0], 15, rng).tobytes().hex()  # beyond strict's 10
    near_loose = flip_bits(CODES[3], 20, rng).tobytes().hex()  # within the index's 25
    far_loose = flip_bits(CODES[4], 28, rng).tobytes().hex()  # beyond 25
    assert matcher.lookup({"pdq": near_strict}) == []
    assert [m.entry_id for m in matcher.lookup({"pdq": near_loose})] == ["l0"]
    assert matcher.lookup({"pdq": far_loose}) == []
    assert [m.distance for m in matcher.lookup({"pdq": far_loose}, thresholds={"pdq": 30})] == [28]


def test_config_file_builds_the_same_index(tmp_path: Path) -> None:
    _list(tmp_path, "alpha", PDQ[:4], "a")
    write_list(tmp_path / "beta.txt", [SyntheticEntry("pdq", h) for h in PDQ[4:8]], "hex")
    (tmp_path / "fp.txt").write_text(f"pdq {PDQ[0]}\n")
    (tmp_path / "disabled.csv").write_text("not even a list")
    config = tmp_path / "lists.toml"
    config.write_text(
        textwrap.dedent("""
        [index]
        thresholds = { pdq = 28 }
        max_invalid = "5%"
        exclude = ["fp.txt"]

        [[lists]]
        path = "alpha.csv"

        [[lists]]
        name = "beta-feed"
        path = "beta.txt"
        algorithm = "pdq"
        format = "hex"
        thresholds = { pdq = 12 }

        [[lists]]
        path = "disabled.csv"
        enabled = false
    """)
    )
    loaded = load_config(config)
    report = build_index(loaded.sources, tmp_path / "idx", loaded.options)
    assert [item["name"] for item in report.lists] == ["alpha", "beta-feed"]
    assert report.algorithms["pdq"].codes == 7 and report.algorithms["pdq"].threshold == 28
    info = index_info(tmp_path / "idx")
    assert info["lists"][1]["thresholds"] == {"pdq": 12}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[index]\nthreshold = 3\n", r"unknown key\(s\) \['threshold'\]"),
        ("[[lists]]\nname = 'x'\n", "has no path"),
        ("[[lists]]\npath = 'a.csv'\nthresholds = { sift = 3 }\n", "unknown algorithm 'sift'"),
        ("[index\n", "invalid TOML"),
        ("[[lists]]\npath = 'a.csv'\nformat = 'xml'\n", "unknown format 'xml'"),
    ],
)
def test_config_mistakes_name_the_file_and_key(tmp_path: Path, text: str, message: str) -> None:
    (tmp_path / "lists.toml").write_text(text)
    with pytest.raises(IndexBuildError, match=message):
        load_config(tmp_path / "lists.toml")


def test_an_empty_result_is_refused_unless_allowed(tmp_path: Path) -> None:
    empty = tmp_path / "empty.txt"
    empty.write_text("# nothing today\n")
    with pytest.raises(IndexBuildError, match="refusing to publish an empty index"):
        build_index([ListSource(empty, algorithm="pdq")], tmp_path / "idx")
    assert not (tmp_path / "idx" / CURRENT).exists()
    build_index(
        [ListSource(empty, algorithm="pdq")], tmp_path / "idx", BuildOptions(allow_empty=True)
    )
    assert Matcher.open(tmp_path / "idx").lookup({"pdq": PDQ[0]}) == []


def test_a_failing_list_leaves_the_published_index_untouched(tmp_path: Path) -> None:
    first = build_index([ListSource(_list(tmp_path, "known", PDQ[:5]))], tmp_path / "idx")
    broken = tmp_path / "broken.txt"
    broken.write_text("pdq zz\npdq yy\n")
    with pytest.raises(HashListError):
        build_index([ListSource(broken)], tmp_path / "idx")
    assert current_version(tmp_path / "idx") == first.version
    assert not list((tmp_path / "idx" / VERSIONS).glob(".tmp-*"))
    assert verify_index(tmp_path / "idx") == []


def test_rebuild_reports_the_diff_and_keeps_few_versions(tmp_path: Path) -> None:
    index = tmp_path / "idx"
    build_index([ListSource(_list(tmp_path, "known", PDQ[:10]))], index)
    report = build_index([ListSource(_list(tmp_path, "known", PDQ[4:16]))], index)
    diff = report.algorithms["pdq"].diff
    assert diff is not None and (diff.added, diff.removed, diff.unchanged) == (6, 4, 6)
    for _ in range(3):
        report = build_index([ListSource(_list(tmp_path, "known", PDQ[:3]))], index)
    assert len(list((index / VERSIONS).iterdir())) == 3
    assert report.to_json()["algorithms"]["pdq"]["removed"] == 0


def test_refuses_to_write_into_a_directory_that_is_not_an_index(tmp_path: Path) -> None:
    (tmp_path / "photos").mkdir()
    (tmp_path / "photos" / "holiday.jpg").write_bytes(b"...")
    with pytest.raises(IndexBuildError, match="not a hashmatch index directory"):
        build_index([ListSource(_list(tmp_path, "known", PDQ[:3]))], tmp_path / "photos")


def _parts(index: Path) -> list[Path]:
    version = index / VERSIONS / current_version(index)
    return sorted(p for p in version.iterdir() if p.name != MANIFEST)


def test_verify_names_the_part_with_a_flipped_byte(tmp_path: Path) -> None:
    codes = random_codes(3_000, seed=1)
    entries = [SyntheticEntry("pdq", c.tobytes().hex(), f"x{i}") for i, c in enumerate(codes)]
    entries.append(SyntheticEntry("md5", "ab" * 16, "m"))
    source = write_list(tmp_path / "big.csv", entries, "csv")
    pristine = tmp_path / "pristine"
    build_index([ListSource(source)], pristine, BuildOptions(search="mih"))
    names = [p.name for p in _parts(pristine)]
    assert {
        "pdq.mih_buckets",
        "pdq.mih_starts",
        "pdq.mih_ids",
        "entries.sqlite",
        "md5.keys",
    } <= set(names)
    for name in names:
        damaged = tmp_path / f"damaged-{name}"
        shutil.copytree(pristine, damaged)
        part = next(p for p in _parts(damaged) if p.name == name)
        data = bytearray(part.read_bytes())
        data[len(data) // 2] ^= 0x01
        part.write_bytes(bytes(data))
        problems = verify_index(damaged)
        assert problems and problems[0].startswith(name), (name, problems)
        with pytest.raises(IndexIntegrityError, match=name):
            Matcher.open(damaged)


def test_truncated_part_and_newer_format_are_refused(tmp_path: Path) -> None:
    build_index([ListSource(_list(tmp_path, "known", PDQ[:5]))], tmp_path / "idx")
    version = tmp_path / "idx" / VERSIONS / current_version(tmp_path / "idx")
    codes = version / "pdq.codes"
    codes.write_bytes(codes.read_bytes()[:-3])
    assert "pdq.codes" in verify_index(tmp_path / "idx")[0]
    manifest = json.loads((version / MANIFEST).read_text())
    manifest["format_version"] = 99
    (version / MANIFEST).write_text(json.dumps(manifest))
    with pytest.raises(IndexFormatError, match="format version 99 is newer"):
        Matcher.open(tmp_path / "idx")


def test_readers_keep_working_while_a_build_replaces_the_index(tmp_path: Path) -> None:
    index = tmp_path / "idx"
    build_index([ListSource(_list(tmp_path, "v0", PDQ[:10]))], index)
    errors: list[BaseException] = []
    stop = threading.Event()

    def read() -> None:
        while not stop.is_set():
            try:
                matcher = Matcher.open(index)
                assert matcher.lookup({"pdq": PDQ[0]})
            except BaseException as exc:
                errors.append(exc)
                return

    readers = [threading.Thread(target=read) for _ in range(3)]
    for reader in readers:
        reader.start()
    for round_number in range(8):
        build_index(
            [ListSource(_list(tmp_path, f"v{round_number}", PDQ[: 10 + round_number]))], index
        )
    stop.set()
    for reader in readers:
        reader.join()
    assert errors == []


KILLER = """
import sys
from pathlib import Path
from hashmatch import ListSource, build_index
build_index([ListSource(Path(sys.argv[1]))], Path(sys.argv[2]))
"""


@pytest.mark.slow
def test_a_build_killed_at_any_moment_leaves_a_complete_index(tmp_path: Path) -> None:
    small = _list(tmp_path, "small", PDQ[:5])
    big_codes = random_codes(150_000, seed=7)
    big = write_list(
        tmp_path / "big.csv",
        [SyntheticEntry("pdq", c.tobytes().hex(), f"b{i}") for i, c in enumerate(big_codes)],
        "csv",
    )
    index = tmp_path / "idx"
    first = build_index([ListSource(small)], index)
    rng = np.random.default_rng(3)
    versions = {first.version}
    for _ in range(6):
        process = subprocess.Popen([sys.executable, "-c", KILLER, str(big), str(index)])
        time.sleep(float(rng.uniform(0.3, 3.0)))
        process.send_signal(signal.SIGKILL)
        process.wait()
        assert verify_index(index) == [], "a killed build damaged the published index"
        versions.add(current_version(index))
        matcher = Matcher.open(index)
        assert matcher.lookup({"pdq": PDQ[0]}) or matcher.lookup(
            {"pdq": big_codes[0].tobytes().hex()}
        )
    build_index([ListSource(small)], index)  # the next build cleans up after killed ones
    assert not list((index / VERSIONS).glob(".tmp-*"))
    assert os.listdir(index / VERSIONS)
