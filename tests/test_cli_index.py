"""``hashmatch index ...`` and ``hashmatch lookup`` end to end."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from hashmatch.cli.app import app
from hashmatch.fixtures.hashlists import SyntheticEntry, random_codes, write_list
from hashmatch.fixtures.images import save_image, synthetic_photo
from hashmatch.index.artifact import VERSIONS, current_version

runner = CliRunner()
CODES = random_codes(12, seed=21)
PDQ = [c.tobytes().hex() for c in CODES]


@pytest.fixture
def listing(tmp_path: Path) -> Path:
    entries = [SyntheticEntry("pdq", h, f"k{i}", f"label {i}") for i, h in enumerate(PDQ[:8])]
    path = write_list(tmp_path / "known.csv", entries, "csv")
    with open(path, "a") as file:
        file.write("pdq,00ff,broken,short,\n")  # line 10
    return path


def test_build_reports_bad_lines_by_number_and_publishes(tmp_path: Path, listing: Path) -> None:
    report = tmp_path / "report.json"
    result = runner.invoke(
        app,
        [
            "index",
            "build",
            str(listing),
            "-o",
            str(tmp_path / "idx"),
            "--max-invalid",
            "20%",
            "--report",
            str(report),
        ],
    )
    assert result.exit_code == 0, result.output
    assert "known.csv:10: pdq hash must be 64 hex digits, got 4" in result.stdout
    assert "pdq: 8 unique hashes from 8 entries" in result.stdout
    data = json.loads(report.read_text())
    assert data["lists"][0]["rejected"] == 1 and data["lists"][0]["accepted"] == {"pdq": 8}
    assert data["algorithms"]["pdq"]["codes"] == 8


def test_build_fails_above_max_invalid_with_exit_2(tmp_path: Path, listing: Path) -> None:
    result = runner.invoke(app, ["index", "build", str(listing), "-o", str(tmp_path / "idx")])
    assert result.exit_code == 2
    assert "1 of 9 hashes invalid" in result.stderr
    assert current_version(tmp_path / "idx") is None


def test_strict_build_stops_at_the_first_bad_line(tmp_path: Path, listing: Path) -> None:
    result = runner.invoke(
        app, ["index", "build", str(listing), "-o", str(tmp_path / "idx"), "--strict"]
    )
    assert result.exit_code == 2 and "known.csv:10:" in result.stderr


def _build(tmp_path: Path, *lists: Path, extra: tuple[str, ...] = ()) -> Path:
    index = tmp_path / "idx"
    args = ["index", "build", *map(str, lists), "-o", str(index), "--max-invalid", "20%", *extra]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    return index


def test_info_verify_and_diff(tmp_path: Path, listing: Path) -> None:
    index = _build(tmp_path, listing)
    info = runner.invoke(app, ["index", "info", str(index), "--format", "json"])
    data = json.loads(info.stdout)
    assert data["algorithms"]["pdq"]["codes"] == 8 and data["lists"][0]["name"] == "known"
    text = runner.invoke(app, ["index", "info", str(index)]).stdout
    assert "pdq: 8 unique hashes" in text and "list known" in text
    verify = runner.invoke(app, ["index", "verify", str(index)])
    assert verify.exit_code == 0 and verify.stdout.startswith("ok:")
    old_version = index / VERSIONS / current_version(index)
    more = write_list(tmp_path / "more.csv", [SyntheticEntry("pdq", h) for h in PDQ[8:]], "csv")
    _build(tmp_path, listing, more)
    diff = runner.invoke(app, ["index", "diff", str(old_version), str(index), "-f", "json"])
    assert json.loads(diff.stdout)["pdq"] == {"added": 4, "removed": 0, "unchanged": 8}


def test_verify_exits_1_and_names_the_damaged_part(tmp_path: Path, listing: Path) -> None:
    index = _build(tmp_path, listing)
    part = index / VERSIONS / current_version(index) / "pdq.codes"
    data = bytearray(part.read_bytes())
    data[5] ^= 0xFF
    part.write_bytes(bytes(data))
    result = runner.invoke(app, ["index", "verify", str(index)])
    assert result.exit_code == 1
    assert "pdq.codes: checksum mismatch" in result.stderr


def test_lookup_exit_codes_and_records(tmp_path: Path, listing: Path) -> None:
    index = _build(tmp_path, listing)
    hit = runner.invoke(app, ["lookup", str(index), f"pdq:{PDQ[3]}", f"pdq:{PDQ[10]}"])
    assert hit.exit_code == 1
    records = [json.loads(line) for line in hit.stdout.splitlines()]
    assert records[0]["query"] == f"pdq:{PDQ[3]}"
    assert records[0]["matches"][0] | {"variant": None} == {
        "algorithm": "pdq",
        "distance": 0,
        "hash": PDQ[3],
        "list": "known",
        "entry_id": "k3",
        "label": "label 3",
        "variant": None,
    }
    assert records[1]["matches"] == []
    miss = runner.invoke(app, ["lookup", str(index), f"pdq:{PDQ[11]}"])
    assert miss.exit_code == 0
    bad = runner.invoke(app, ["lookup", str(index), "pdq:xyz"])
    assert bad.exit_code == 2 and "non-hex" in bad.stderr
    missing = runner.invoke(app, ["lookup", str(tmp_path / "nope"), f"pdq:{PDQ[0]}"])
    assert missing.exit_code == 2 and "no such index" in missing.stderr


def test_build_from_config_with_threshold_override(tmp_path: Path, listing: Path) -> None:
    config = tmp_path / "lists.toml"
    config.write_text(
        '[index]\nmax_invalid = "20%"\n\n[[lists]]\npath = "known.csv"\nname = "feed"\n'
    )
    index = tmp_path / "idx"
    result = runner.invoke(
        app, ["index", "build", "--config", str(config), "-o", str(index), "--threshold", "pdq=20"]
    )
    assert result.exit_code == 0, result.output
    info = json.loads(runner.invoke(app, ["index", "info", str(index), "-f", "json"]).stdout)
    assert info["algorithms"]["pdq"]["threshold"] == 20 and info["lists"][0]["name"] == "feed"


def test_bad_threshold_option_is_a_usage_error(tmp_path: Path, listing: Path) -> None:
    result = runner.invoke(
        app, ["index", "build", str(listing), "-o", str(tmp_path / "i"), "--threshold", "pdq"]
    )
    assert result.exit_code == 2 and "expected ALGORITHM=N" in result.output


def test_hash_then_build_then_lookup_round_trip(tmp_path: Path) -> None:
    folder = tmp_path / "known"
    folder.mkdir()
    for seed in range(3):
        save_image(synthetic_photo(seed, (240, 180)), folder / f"k{seed}.png")
    hashed = runner.invoke(
        app,
        [
            "hash",
            str(folder),
            "-a",
            "pdq,md5",
            "-f",
            "csv",
            "-o",
            str(tmp_path / "known.csv"),
            "-q",
        ],
    )
    assert hashed.exit_code == 0
    index = _build(tmp_path, tmp_path / "known.csv")
    hashed_one = runner.invoke(
        app, ["hash", str(folder / "k1.png"), "-a", "pdq,md5", "-f", "jsonl"]
    )
    record = json.loads(hashed_one.stdout)
    found = runner.invoke(
        app, ["lookup", str(index), f"pdq:{record['pdq']}", f"md5:{record['md5']}"]
    )
    assert found.exit_code == 1
    matches = [json.loads(line)["matches"][0] for line in found.stdout.splitlines()]
    assert [m["entry_id"].endswith("k1.png") for m in matches] == [True, True]


def test_info_and_diff_speak_every_output_format(tmp_path: Path, listing: Path) -> None:
    index = _build(tmp_path, listing)
    records = runner.invoke(app, ["index", "info", str(index), "-f", "jsonl"]).stdout
    (pdq,) = [json.loads(line) for line in records.splitlines()]
    assert pdq["algorithm"] == "pdq" and pdq["codes"] == 8 and pdq["searched_by"] == "flat"
    table = runner.invoke(app, ["index", "info", str(index), "-f", "csv"]).stdout.splitlines()
    assert table[0] == "path,version,algorithm,codes,entries,threshold,searched_by"
    assert table[1].split(",")[2:] == ["pdq", "8", "8", "31", "flat"]
    diff = runner.invoke(app, ["index", "diff", str(index), str(index), "-f", "jsonl"]).stdout
    assert json.loads(diff) == {"algorithm": "pdq", "added": 0, "removed": 0, "unchanged": 8}
    listed = runner.invoke(app, ["lookup", str(index), f"pdq:{PDQ[0]}", "-f", "json"])
    assert listed.exit_code == 1
    assert [record["query"] for record in json.loads(listed.stdout)] == [f"pdq:{PDQ[0]}"]
    refused = runner.invoke(app, ["index", "info", str(index), "-f", "xml"])
    assert refused.exit_code == 2 and "xml" in refused.output


def test_every_command_reports_errors_the_same_way(tmp_path: Path) -> None:
    from hashmatch.cli.exit_codes import ExitCode

    missing = str(tmp_path / "nowhere")
    for command in (
        ["index", "info", missing],
        ["index", "diff", missing, missing],
        ["lookup", missing, f"pdq:{PDQ[0]}"],
        ["scan", str(tmp_path), "--index", missing],
        ["index", "build", str(tmp_path / "no-list.csv"), "-o", str(tmp_path / "idx")],
    ):
        outcome = runner.invoke(app, command)
        assert outcome.exit_code == ExitCode.FAILED == 2, (command, outcome.output)
        assert outcome.stderr.startswith("error: "), (command, outcome.stderr)
        assert "nowhere" in outcome.stderr or "no-list.csv" in outcome.stderr
