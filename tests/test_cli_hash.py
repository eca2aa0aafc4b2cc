"""``hashmatch hash`` end to end: records, formats, exit codes, workers, the console script."""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from hashmatch import hash_image
from hashmatch.cli.app import app
from hashmatch.fixtures.hostile import encode, truncated
from hashmatch.fixtures.images import save_image, synthetic_photo

runner = CliRunner()


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    images = tmp_path / "images"
    images.mkdir()
    for seed in range(3):
        save_image(synthetic_photo(seed, (320, 240)), images / f"photo{seed}.jpg")
    save_image(synthetic_photo(9, (200, 200)), images / "graphic.png")
    (images / "readme.txt").write_text("not an image")
    return images


def _jsonl(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def test_one_jsonl_record_per_image_with_the_library_s_hashes(folder: Path) -> None:
    result = runner.invoke(app, ["hash", str(folder), "--format", "jsonl", "-a", "pdq,md5"])
    assert result.exit_code == 0, result.output
    records = _jsonl(result.stdout)
    assert [Path(r["path"]).name for r in records] == [
        "graphic.png",
        "photo0.jpg",
        "photo1.jpg",
        "photo2.jpg",
    ]
    expected = hash_image(folder / "photo0.jpg", ("pdq", "md5"))
    photo0 = records[1]
    assert set(photo0) == {"path", "pdq", "md5", "pdq_quality", "width", "height", "error"}
    assert photo0["pdq"] == expected["pdq"].hex and photo0["md5"] == expected["md5"].hex
    assert (photo0["pdq_quality"], photo0["width"], photo0["height"]) == (100, 320, 240)
    assert photo0["error"] is None
    assert "1 skipped" in result.stderr


def test_broken_file_gets_an_error_record_and_exit_code_2(folder: Path) -> None:
    (folder / "cut.jpg").write_bytes(truncated((folder / "photo0.jpg").read_bytes(), 0.5))
    result = runner.invoke(app, ["hash", str(folder), "-f", "jsonl"])
    assert result.exit_code == 2
    records = {Path(r["path"]).name: r for r in _jsonl(result.stdout)}
    assert len(records) == 5
    assert records["cut.jpg"]["error"].startswith("decode: ")
    assert records["cut.jpg"]["pdq"] is None
    assert all(records[f"photo{i}.jpg"]["pdq"] for i in range(3))
    assert "1 failed" in result.stderr


def test_csv_output_is_a_table_of_the_same_records(folder: Path) -> None:
    result = runner.invoke(app, ["hash", str(folder), "-f", "csv", "-a", "pdq,phash"])
    assert result.exit_code == 0
    rows = list(csv.DictReader(io.StringIO(result.stdout)))
    assert list(rows[0]) == ["path", "pdq", "phash", "pdq_quality", "width", "height", "error"]
    assert len(rows) == 4
    photo1 = next(r for r in rows if r["path"].endswith("photo1.jpg"))
    assert photo1["phash"] == hash_image(folder / "photo1.jpg", "phash")["phash"].hex


def test_dihedral_adds_one_column_per_variant(folder: Path) -> None:
    result = runner.invoke(app, ["hash", str(folder / "photo0.jpg"), "-f", "jsonl", "--dihedral"])
    record = _jsonl(result.stdout)[0]
    expected = hash_image(folder / "photo0.jpg", dihedral=True).variants["pdq"]
    assert record["pdq_rotate90"] == expected["rotate90"].hex
    assert record["pdq_flipminus1"] == expected["flipminus1"].hex


def test_output_file_and_table_format(folder: Path, tmp_path: Path) -> None:
    out = tmp_path / "hashes.jsonl"
    result = runner.invoke(app, ["hash", str(folder), "-o", str(out), "-a", "all", "-q"])
    assert result.exit_code == 0 and result.stdout == "" and result.stderr == ""
    records = _jsonl(out.read_text())
    assert len(records) == 4 and all(r["sha256"] and r["whash"] for r in records)
    table = runner.invoke(app, ["hash", str(folder / "photo2.jpg"), "-f", "table"])
    assert "photo2.jpg" in table.stdout and "pdq_quality" in table.stdout


def test_exact_flag_hashes_full_resolution(tmp_path: Path) -> None:
    path = save_image(synthetic_photo(4, (2400, 1800)), tmp_path / "big.jpg")
    fast = _jsonl(runner.invoke(app, ["hash", str(path), "-f", "jsonl"]).stdout)[0]
    exact = _jsonl(runner.invoke(app, ["hash", str(path), "-f", "jsonl", "--exact"]).stdout)[0]
    assert exact["pdq"] == hash_image(path, exact=True)["pdq"].hex
    assert fast["pdq"] == hash_image(path)["pdq"].hex


def test_two_workers_give_the_same_records_as_one(folder: Path) -> None:
    (folder / "cut.png").write_bytes(truncated(encode(synthetic_photo(3), "PNG"), 0.4))
    one = runner.invoke(app, ["hash", str(folder), "-f", "jsonl", "-j", "1", "-a", "pdq,phash"])
    two = runner.invoke(app, ["hash", str(folder), "-f", "jsonl", "-j", "2", "-a", "pdq,phash"])
    assert one.exit_code == two.exit_code == 2
    key = lambda record: record["path"]  # noqa: E731
    assert sorted(_jsonl(one.stdout), key=key) == sorted(_jsonl(two.stdout), key=key)


def test_csv_cells_that_look_like_formulas_are_defused(tmp_path: Path, monkeypatch) -> None:
    save_image(synthetic_photo(2, (64, 64)), tmp_path / "=HYPERLINK(1).png")
    monkeypatch.chdir(tmp_path)
    result = runner.invoke(app, ["hash", "=HYPERLINK(1).png", "-f", "csv"])
    assert result.stdout.splitlines()[1].startswith("'=HYPERLINK(1).png,")


def test_unknown_algorithm_is_a_usage_error(folder: Path) -> None:
    result = runner.invoke(app, ["hash", str(folder), "-a", "sift"])
    assert result.exit_code == 2
    assert "unknown algorithm 'sift'" in result.output


def test_missing_path_is_an_error_record(tmp_path: Path) -> None:
    result = runner.invoke(app, ["hash", str(tmp_path / "nope.jpg"), "-f", "jsonl"])
    assert result.exit_code == 2
    assert _jsonl(result.stdout)[0]["error"] == "read: no such file or directory"


def test_version_and_help() -> None:
    version = runner.invoke(app, ["--version"])
    assert version.exit_code == 0 and version.stdout.startswith("hashmatch ")
    help_text = runner.invoke(app, ["--help"]).stdout
    assert "hash" in help_text and "one record per file" in help_text


def test_console_script_runs(folder: Path) -> None:
    command = [sys.executable, "-m", "hashmatch.cli", "hash", str(folder), "-f", "jsonl", "-q"]
    completed = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert completed.returncode == 0, completed.stderr
    assert len(_jsonl(completed.stdout)) == 4


def test_demo_classifies_every_upload_correctly(tmp_path: Path) -> None:
    result = runner.invoke(app, ["demo", str(tmp_path / "demo")])
    assert result.exit_code == 0, result.output
    assert "14 of 14 uploads handled correctly" in " ".join(result.stdout.split())
    assert len(list((tmp_path / "demo" / "known").iterdir())) == 5
    assert (tmp_path / "demo" / "index" / "CURRENT").is_file()


@pytest.mark.parametrize("width", [80, 200])
def test_demo_reads_whole_at_80_and_200_columns(tmp_path: Path, width: int) -> None:
    from hashmatch.fixtures.demo import UNRELATED_SEEDS, UPLOAD_EDITS

    result = runner.invoke(app, ["demo", str(tmp_path / "demo")], env={"COLUMNS": str(width)})
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    # commands to copy (they hold the demo's folder) are left to the terminal to wrap
    prose = [line for line in lines if not line.startswith(("  hashmatch ", "Building "))]
    assert max(len(line) for line in prose) <= width
    uploads = [f"k{known}-{edit}.{kind}" for known, edit, kind in UPLOAD_EDITS]
    expected = {name: ("MATCH", f"known/k{name[1]}.jpg") for name in uploads}
    expected["k4-exact-copy.jpg"] = ("MATCH", "known/k4.jpg")
    expected.update({f"other-{seed}.jpg": ("no_match", "unrelated") for seed in UNRELATED_SEEDS})
    expected["broken.jpg"] = ("error", "decode: image file is truncated")
    for name, (status, why) in expected.items():
        row = [line for line in lines if f" {name} " in line]
        assert len(row) == 1, f"{name} does not appear whole on one line at {width} columns"
        assert f" {status} " in row[0] and why in row[0], row[0]
