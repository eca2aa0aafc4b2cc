"""Damaged or tampered indexes are refused with an error naming what is wrong, never a
traceback, and the next build repairs them.

Flipped bytes in the parts, a truncated part and a newer format are in test_index_build.py.
"""

from __future__ import annotations

import json
import logging
import re
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from typer.testing import CliRunner

from hashmatch import (
    BuildOptions,
    IndexFormatError,
    IndexIntegrityError,
    ListSource,
    Matcher,
    build_index,
)
from hashmatch.cli.app import app
from hashmatch.fixtures.hashlists import SyntheticEntry, random_codes, write_list
from hashmatch.index.artifact import (
    CURRENT,
    MANIFEST,
    MANIFEST_CHECKSUM,
    VERSIONS,
    current_version,
    file_sha256,
    read_manifest,
    write_manifest,
)
from hashmatch.index.inspect import index_info, verify_index

runner = CliRunner()
PDQ = [c.tobytes().hex() for c in random_codes(20, seed=31)]


@pytest.fixture
def source(tmp_path: Path) -> Path:
    entries = [SyntheticEntry("pdq", h, f"e{i}", f"label {i}") for i, h in enumerate(PDQ)]
    entries.append(SyntheticEntry("md5", "ab" * 16, "m0"))
    return write_list(tmp_path / "known.csv", entries, "csv")


@pytest.fixture
def index(tmp_path: Path, source: Path) -> Path:
    build_index([ListSource(source)], tmp_path / "idx")
    return tmp_path / "idx"


def _version(index: Path) -> Path:
    return index / VERSIONS / current_version(index)


def _cli_verify(index: Path) -> tuple[int, str]:
    result = runner.invoke(app, ["index", "verify", str(index)])
    return result.exit_code, result.stderr


def _repaired_by_a_build(index: Path, source: Path) -> bool:
    build_index([ListSource(source)], index)
    return verify_index(index) == [] and bool(Matcher.open(index).lookup({"pdq": PDQ[0]}))


def test_a_manifest_with_any_byte_flipped_is_refused(index: Path) -> None:
    manifest = _version(index) / MANIFEST
    pristine = manifest.read_bytes()
    for position in range(len(pristine)):
        damaged = bytearray(pristine)
        damaged[position] ^= 1 << position % 8  # every bit position, across the file
        manifest.write_bytes(bytes(damaged))
        with pytest.raises((IndexFormatError, IndexIntegrityError), match=MANIFEST):
            read_manifest(manifest.parent)


def test_a_manifest_edit_no_file_checksum_covers_is_refused_everywhere(
    index: Path, source: Path
) -> None:
    """The list's SHA-256 (or its counts, or the creation time) is checked by no part's checksum:
    the manifest's own checksum is what catches it."""
    manifest = _version(index) / MANIFEST
    text = manifest.read_text()
    list_sha = json.loads(text)["lists"][0]["sha256"]
    manifest.write_text(
        text.replace(list_sha, list_sha[:-1] + ("0" if list_sha[-1] != "0" else "1"))
    )
    with pytest.raises(IndexIntegrityError, match=f"{MANIFEST}: manifest checksum mismatch"):
        Matcher.open(index)
    assert verify_index(index) == [f"{manifest}: manifest checksum mismatch (corrupt or modified)"]
    code, stderr = _cli_verify(index)
    assert code == 1 and "DAMAGED" in stderr and MANIFEST in stderr
    assert _repaired_by_a_build(index, source)


def test_a_manifest_without_its_checksum_is_refused_unless_format_1(index: Path) -> None:
    manifest = _version(index) / MANIFEST
    data = json.loads(manifest.read_text())
    del data[MANIFEST_CHECKSUM]
    manifest.write_text(json.dumps(data))
    with pytest.raises(IndexIntegrityError, match=f"manifest has no {MANIFEST_CHECKSUM}"):
        Matcher.open(index)
    manifest.write_text(json.dumps({**data, "format_version": 1}))  # as built before format 2
    assert verify_index(index) == []
    assert Matcher.open(index).lookup({"pdq": PDQ[0]})


def test_a_deleted_part_is_named_and_a_build_repairs_it(
    tmp_path: Path, index: Path, source: Path
) -> None:
    parts = sorted(p.name for p in _version(index).iterdir() if p.name != MANIFEST)
    assert {"entries.sqlite", "pdq.codes", "md5.keys"} <= set(parts)
    for part in parts:
        damaged = tmp_path / f"without-{part}"
        shutil.copytree(index, damaged)
        (_version(damaged) / part).unlink()
        assert verify_index(damaged) == [f"{part}: missing"]
        with pytest.raises(IndexIntegrityError, match=re.escape(f"{part}: missing")):
            Matcher.open(damaged)
        code, stderr = _cli_verify(damaged)
        assert code == 1 and f"{part}: missing" in stderr
        assert _repaired_by_a_build(damaged, source), part


def test_an_extra_file_is_harmless_and_not_reported(index: Path, source: Path) -> None:
    """Decided: the manifest lists what a version is made of and nothing else is ever read, so a
    stray file (a backup copy, an editor's swap file) changes nothing and verify stays quiet."""
    (_version(index) / "pdq.codes.bak").write_bytes(b"\x00" * 640)
    (index / VERSIONS / "NOTES.txt").write_text("rebuilt by hand on Monday\n")
    assert verify_index(index) == []
    assert _cli_verify(index)[0] == 0
    assert [m.entry_id for m in Matcher.open(index).lookup({"pdq": PDQ[3]})] == ["e3"]
    assert _repaired_by_a_build(index, source)


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        (b"20990101T000000000000Z-000000\n", "CURRENT names '20990101T000000000000Z-000000'"),
        (b"", "CURRENT: invalid version name ''"),
        (b"../../etc\n", "CURRENT: invalid version name '../../etc'"),
        (b"\xff\xfe\n", "CURRENT: not a version name (not UTF-8)"),
        (None, "not a hashmatch index (no CURRENT"),
    ],
)
def test_a_current_naming_no_version_is_refused_and_a_build_repairs_it(
    index: Path, source: Path, content: bytes | None, problem: str
) -> None:
    if content is None:
        (index / CURRENT).unlink()
    else:
        (index / CURRENT).write_bytes(content)
    problems = verify_index(index)
    assert len(problems) == 1 and problem in problems[0]
    with pytest.raises((IndexFormatError, IndexIntegrityError), match=re.escape(problem)):
        Matcher.open(index)
    code, stderr = _cli_verify(index)
    assert code == 1 and problem in stderr
    assert _repaired_by_a_build(index, source)


def _mih_index(tmp_path: Path, source: Path) -> Path:
    build_index([ListSource(source)], tmp_path / "mih", BuildOptions(search="mih"))
    return tmp_path / "mih"


def _rewrite_manifest(version: Path, change: Callable[[dict[str, Any]], None]) -> None:
    """Edit a manifest and re-sign it, as a careful tamperer (or an old build) would."""
    data = json.loads((version / MANIFEST).read_text())
    del data[MANIFEST_CHECKSUM]
    change(data)
    write_manifest(version, data)


def test_multi_index_tables_of_format_2_are_searched_by_the_flat_scan(
    tmp_path: Path, source: Path, caplog: pytest.LogCaptureFixture
) -> None:
    index = _mih_index(tmp_path, source)
    _rewrite_manifest(_version(index), lambda data: data.update(format_version=2))
    with caplog.at_level(logging.WARNING, logger="hashmatch.index"):
        matcher = Matcher.open(index)
    assert "format 2" in caplog.text and "until the index is rebuilt" in caplog.text
    flipped = bytes.fromhex(PDQ[3])
    flipped = (flipped[0] ^ 0b111).to_bytes(1, "big") + flipped[1:]
    matches = matcher.lookup({"pdq": flipped.hex()})
    assert [(m.entry_id, m.distance) for m in matches] == [("e3", 3)]
    assert index_info(index)["algorithms"]["pdq"]["searched_by"] == "flat"
    info = runner.invoke(app, ["index", "info", str(index)])
    assert "flat search (its mih tables predate format 3: rebuild)" in info.stdout
    build_index([ListSource(source)], index, BuildOptions(search="mih"))
    assert index_info(index)["algorithms"]["pdq"]["searched_by"] == "mih"


def test_multi_index_tables_that_disagree_are_named_by_verify(tmp_path: Path, source: Path) -> None:
    index = _mih_index(tmp_path, source)
    version = _version(index)
    assert read_manifest(version).algorithms["pdq"]["search"]["kind"] == "mih"
    buckets = np.fromfile(version / "pdq.mih_buckets", dtype="<u8").reshape(-1, 2)
    buckets[len(buckets) // 2, 1] += 1  # one rank off by one
    buckets.tofile(version / "pdq.mih_buckets")

    def resign(data: dict[str, Any]) -> None:
        data["files"]["pdq.mih_buckets"]["sha256"] = file_sha256(version / "pdq.mih_buckets")

    _rewrite_manifest(version, resign)
    assert verify_index(index) == ["pdq.mih_buckets: ranks disagree with the bitmap"]
    code, stderr = _cli_verify(index)
    assert code == 1 and "ranks disagree" in stderr
    assert _repaired_by_a_build(index, source)
