"""Hash lists: every format, every validation reason with its line, and the bad-line policy."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import pytest
from typer.testing import CliRunner

from hashmatch import HashListError, hash_image
from hashmatch.cli.app import app
from hashmatch.fixtures.hashlists import SyntheticEntry, random_codes, write_list
from hashmatch.fixtures.images import save_image, synthetic_photo
from hashmatch.lists import HashListReader, parse_fraction, read_exclusions, read_hash_list

CODES = random_codes(6, seed=3)
PDQ = [code.tobytes().hex() for code in CODES]
PHASH = [code[:8].tobytes().hex() for code in CODES]


@pytest.mark.parametrize("list_format", ["csv", "lines", "jsonl"])
def test_every_format_yields_the_same_entries(tmp_path: Path, list_format: str) -> None:
    entries = [SyntheticEntry("pdq", h, f"id{i}", f"label {i}") for i, h in enumerate(PDQ)]
    path = write_list(tmp_path / f"known.{list_format}", entries, list_format)
    read = list(read_hash_list(path))
    assert [(e.algorithm, e.hash.hex, e.entry_id) for e in read] == [
        ("pdq", h, f"id{i}") for i, h in enumerate(PDQ)
    ]
    assert read[0].list == "known"  # the file's stem
    assert read[2].label == "label 2"


def test_plain_hex_needs_the_algorithm_from_the_caller(tmp_path: Path) -> None:
    path = write_list(tmp_path / "plain.txt", [SyntheticEntry("pdq", h) for h in PDQ], "hex")
    assert [e.hash.hex for e in read_hash_list(path, algorithm="pdq")] == PDQ
    with pytest.raises(HashListError, match="no algorithm: give --algorithm"):
        list(read_hash_list(path))


def test_csv_column_aliases_bom_crlf_and_metadata(tmp_path: Path) -> None:
    text = "\ufeffsignal_type,signal_str,content_id,tags,source\r\n" + "".join(
        f'PDQ,{h.upper()},c{i},"a,b",feed{i}\r\n' for i, h in enumerate(PDQ[:3])
    )
    path = tmp_path / "te-export.csv"
    path.write_bytes(text.encode("utf-8"))
    entries = list(read_hash_list(path))
    assert [e.hash.hex for e in entries] == PDQ[:3]
    assert entries[1].entry_id == "c1" and entries[1].label == "a,b"
    assert entries[1].metadata == {"source": "feed1"}


def test_algorithm_aliases_from_other_exporters(tmp_path: Path) -> None:
    text = f"hash_pdq {PDQ[0]}\nphoto_md5 {'ab' * 16}\nvideo_md5 {'cd' * 16}\n"
    (tmp_path / "mixed.txt").write_text(text)
    reader = HashListReader(tmp_path / "mixed.txt", max_invalid=0.5)
    assert [e.algorithm for e in reader.entries()] == ["pdq", "md5"]
    assert reader.stats.problems == [
        f"{tmp_path / 'mixed.txt'}:3: unknown algorithm 'video_md5'"
        " (video signals are not matched by an image index)"
    ]


def test_comments_and_blank_lines_are_skipped_in_line_formats(tmp_path: Path) -> None:
    text = f"# exported 2026-11-29\n\npdq {PDQ[0]} a1 first label\n   \n# end\npdq {PDQ[1]}\n"
    (tmp_path / "l.txt").write_text(text)
    entries = list(read_hash_list(tmp_path / "l.txt"))
    assert [(e.line, e.entry_id, e.label) for e in entries] == [
        (3, "a1", "first label"),
        (6, None, None),
    ]


def test_every_validation_reason_is_reported_with_its_line(tmp_path: Path) -> None:
    zeros, ones = "0" * 64, "f" * 64
    sparse = "01" * 32  # 32 bits set: not from PDQ's median threshold
    lines = [
        "algorithm,hash,id",
        f"pdq,{PDQ[0]},good1",
        "sift,abcd,x",
        f"pdq,{PDQ[1][:-2]},short",
        f"pdq,{PDQ[2][:-1]}g,nonhex",
        f"pdq,{zeros},z",
        f"pdq,{ones},o",
        f"pdq,{sparse},s",
        "phash,0000000000000000,pz",
        ",,empty",
        "pdq,too,many,fields",
        f"phash,{PHASH[0]},good2",
    ]
    path = tmp_path / "bad.csv"
    path.write_text("\n".join(lines) + "\n")
    reader = HashListReader(path, max_invalid=1.0)
    assert [e.entry_id for e in reader.entries()] == ["good1", "good2"]
    assert [p.split(":", 1)[1] for p in reader.stats.problems] == [
        "3: unknown algorithm 'sift'",
        "4: pdq hash must be 64 hex digits, got 62",
        "5: pdq hash has a non-hex character 'g'",
        "6: degenerate pdq hash: all zeros",
        "7: degenerate pdq hash: all ones",
        "8: degenerate pdq hash: 32 of 256 bits set, outside 64..192 (not produced by PDQ's"
        " median threshold)",
        "9: degenerate phash hash: all zeros",
        "10: missing hash",
        "11: expected 3 fields, got 4",
    ]
    assert reader.stats.rejected == 9
    assert reader.stats.reasons["degenerate hash"] == 4


def test_invalid_json_and_overlong_lines(tmp_path: Path) -> None:
    big = "x" * (2 << 20)
    text = f'{{"algorithm": "pdq", "hash": "{PDQ[0]}"}}\n{{not json\n["a list"]\n{big}\n'
    (tmp_path / "j.jsonl").write_text(text + f'{{"algorithm": "pdq", "hash": "{PDQ[1]}"}}\n')
    reader = HashListReader(tmp_path / "j.jsonl", max_invalid=1.0)
    assert len(list(reader.entries())) == 2
    reasons = [p.split(":", 2)[1:] for p in reader.stats.problems]
    assert reasons[0][0] == "2" and "invalid JSON" in reasons[0][1]
    assert reasons[1] == ["3", " expected a JSON object"]
    assert reasons[2] == ["4", " line longer than 1048576 characters"]


def test_strict_fails_on_the_first_bad_line(tmp_path: Path) -> None:
    path = tmp_path / "s.txt"
    path.write_text(f"pdq {PDQ[0]}\npdq 1234\npdq {PDQ[1]}\n")
    with pytest.raises(HashListError, match=r"s\.txt:2: pdq hash must be 64 hex digits"):
        list(read_hash_list(path, strict=True))


def test_invalid_fraction_above_the_limit_fails_the_list(tmp_path: Path) -> None:
    good = [f"pdq {h}" for h in PDQ]
    path = tmp_path / "f.txt"
    path.write_text("\n".join([*good, "pdq nothex"]) + "\n")  # 1 of 7 invalid: 14%
    with pytest.raises(
        HashListError, match=r"1 of 7 hashes invalid \(14.3%\), above the allowed 1.0%"
    ):
        list(read_hash_list(path))
    assert len(list(read_hash_list(path, max_invalid=0.2))) == 6


def test_a_file_in_the_wrong_format_is_an_error_not_an_empty_list(tmp_path: Path) -> None:
    path = tmp_path / "wrong.txt"
    path.write_text("this is a README\nnot a hash list at all\n")
    with pytest.raises(HashListError, match="2 of 2 hashes invalid"):
        list(read_hash_list(path, max_invalid=1.0))


def test_csv_without_a_hash_column_is_refused_with_its_header(tmp_path: Path) -> None:
    (tmp_path / "h.csv").write_text("name,colour\nx,red\n")
    with pytest.raises(HashListError, match=r"no hash column.*name,colour"):
        list(read_hash_list(tmp_path / "h.csv"))


@pytest.mark.parametrize(
    ("text", "expected"), [("1%", 0.01), ("0.01", 0.01), (0.5, 0.5), ("100%", 1.0)]
)
def test_fractions_accept_percentages(text, expected) -> None:
    assert parse_fraction(text) == pytest.approx(expected)


def test_fractions_refuse_nonsense() -> None:
    with pytest.raises(ValueError):
        parse_fraction("lots")
    with pytest.raises(ValueError):
        parse_fraction("150%")


def test_hash_command_csv_loads_as_a_list(tmp_path: Path) -> None:
    folder = tmp_path / "known"
    folder.mkdir()
    for seed in range(3):
        save_image(synthetic_photo(seed, (200, 150)), folder / f"k{seed}.png")
    (folder / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\nbroken")
    result = CliRunner().invoke(app, ["hash", str(folder), "-a", "pdq,phash", "-f", "csv"])
    listing = tmp_path / "known.csv"
    listing.write_text(result.stdout)
    reader = HashListReader(listing)
    entries = list(reader.entries())
    assert reader.stats.accepted == {"pdq": 3, "phash": 3}
    assert reader.stats.skipped == 1  # the broken file's row: no hash, not invalid
    first = next(e for e in entries if e.algorithm == "pdq" and e.entry_id.endswith("k0.png"))
    assert first.hash == hash_image(folder / "k0.png")["pdq"]
    assert first.metadata["pdq_quality"] == "100"
    assert next(csv.reader(io.StringIO(result.stdout)))[:3] == ["path", "pdq", "phash"]


def test_exclusion_files(tmp_path: Path) -> None:
    path = tmp_path / "fp.txt"
    path.write_text(f"# false positives\npdq {PDQ[0]}\nphash:{PHASH[1]}\n{'ab' * 16}\nid:case-7\n")
    exclusions = read_exclusions(path)
    assert exclusions.hashes["pdq"] == {bytes.fromhex(PDQ[0])}
    assert exclusions.hashes["phash"] == {bytes.fromhex(PHASH[1])}
    assert exclusions.hashes["md5"] == {bytes.fromhex("ab" * 16)}
    assert exclusions.entry_ids == {"case-7"}
    path.write_text("pdq nothex\n")
    with pytest.raises(HashListError, match=r"fp\.txt:1"):
        read_exclusions(path)
