"""Hostile hash lists: garbage, giant lines, NULs, mixed encodings, CSV tricks, formula labels.

Every bad line is reported with its file and line number and every good line stored verbatim;
a list that is mostly garbage fails the build with a clear message, in bounded memory; labels
that look like spreadsheet formulas or terminal markup come out of every output as inert text.
"""

from __future__ import annotations

import csv
import io
import json
import re
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from hashmatch import hash_image
from hashmatch.cli.app import app
from hashmatch.fixtures.hashlists import random_codes
from hashmatch.fixtures.hostile_lists import (
    FORMULA_LABELS,
    TERMINAL_LABELS,
    HostileList,
    csv_quoting_tricks,
    formula_labels,
    small_hostile_lists,
    write_garbage_list,
    write_list_with_long_line,
)
from hashmatch.fixtures.images import save_image, synthetic_photo
from hashmatch.fixtures.peak_rss import run_measuring_peak_rss
from hashmatch.index.artifact import current_version
from hashmatch.lists import HashListReader, ListEntry
from hashmatch.lists import readers as list_readers

runner = CliRunner()
GARBAGE_RSS_LIMIT_MB = 400
FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")


def _read(path: Path) -> tuple[dict[int, ListEntry], dict[int, str]]:
    """Entries and problems of a list, by line number."""
    reader = HashListReader(path, max_invalid=1.0)
    entries = {entry.line: entry for entry in reader.entries()}
    pattern = re.compile(re.escape(str(path)) + r":(\d+): (.*)", re.DOTALL)
    problems = {}
    for problem in reader.stats.problems:
        match = pattern.fullmatch(problem)
        assert match, problem
        problems[int(match.group(1))] = match.group(2)
    return entries, problems


@pytest.mark.parametrize("case", small_hostile_lists(), ids=lambda case: case.name)
def test_every_line_is_stored_verbatim_or_reported_at_its_number(
    tmp_path: Path, case: HostileList
) -> None:
    entries, problems = _read(case.write(tmp_path))
    assert {line: (e.entry_id, e.label) for line, e in entries.items()} == case.stored
    assert sorted(problems) == sorted(case.rejected), problems
    for line, reason in case.rejected.items():
        assert reason in problems[line]


@pytest.mark.parametrize("block_chars", [7, 64, 300])
def test_quoted_records_read_the_same_across_block_boundaries(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, block_chars: int
) -> None:
    path = csv_quoting_tricks().write(tmp_path)
    expected = _read(path)
    monkeypatch.setattr(list_readers, "_BLOCK_CHARS", block_chars)
    entries, problems = _read(path)
    assert {n: (e.entry_id, e.label) for n, e in entries.items()} == {
        n: (e.entry_id, e.label) for n, e in expected[0].items()
    }
    assert problems == expected[1]


def test_an_unbalanced_quote_does_not_swallow_the_lines_after_it(tmp_path: Path) -> None:
    good = "\n".join(f"pdq,{h},g{i},label" for i, h in enumerate(_hashes(200)))
    path = tmp_path / "stray.csv"
    path.write_bytes(b"algorithm,hash,id,label\npdq," + _hashes(1)[0].encode() + b',x,"oops\n')
    with open(path, "a") as file:
        file.write(good + "\n")
    entries, problems = _read(path)
    assert list(problems) == [2] and "unbalanced quote" in problems[2]
    assert sorted(entries) == list(range(3, 203))


def _hashes(count: int) -> list[str]:
    return [code.tobytes().hex() for code in random_codes(count, seed=77)]


@pytest.mark.slow
def test_a_million_garbage_lines_fail_the_build_clearly_in_bounded_memory(
    tmp_path: Path,
) -> None:
    garbage = write_garbage_list(tmp_path / "garbage.txt", 1_000_000)
    index = tmp_path / "idx"
    build = ["-m", "hashmatch.cli", "index", "build", str(garbage), "-o", str(index)]
    started = time.monotonic()
    done = run_measuring_peak_rss([sys.executable, *build])
    elapsed = time.monotonic() - started
    assert done.returncode == 2
    message = " ".join(done.stderr.split())
    assert f"{garbage}: 1000000 of 1000000 hashes invalid (100.0%)" in message
    assert "(--max-invalid)" in message and f"{garbage}:1: unknown algorithm" in message
    assert done.peak_mb < GARBAGE_RSS_LIMIT_MB, f"peak RSS {done.peak_mb:.0f} MB"
    assert current_version(index) is None
    print(f"1M garbage lines: {elapsed:.1f} s, peak RSS {done.peak_mb:.0f} MB")


@pytest.mark.parametrize(
    ("suffix", "first", "junk", "rows"),
    [
        (".txt", f"pdq {'ab' * 32}\n", "x\n", 300_001),
        (".csv", "algorithm,hash\n", "x\n", 300_000),
        (".jsonl", "", "1\n", 300_000),
    ],
)
def test_tiny_junk_lines_are_read_in_bounded_batches(
    tmp_path: Path, suffix: str, first: str, junk: str, rows: int
) -> None:
    path = tmp_path / f"tiny{suffix}"
    path.write_text(first + junk * 300_000)  # 600 KB: 300000 rows rejected while reading
    batches = list(list_readers.read_batches(path, list_readers.detect_format(path)))
    # A batch closes after the block that fills it; a 4 MiB block of such lines held 900 MB.
    assert max(batch.rows for batch in batches) < 2 * list_readers.BATCH_ROWS
    assert sum(len(batch.problems) + len(batch) for batch in batches) == rows


@pytest.mark.parametrize("list_format", ["csv", "lines", "jsonl"])
def test_a_10_mb_line_is_reported_by_number_and_the_good_lines_build(
    tmp_path: Path, list_format: str
) -> None:
    suffix = {"csv": ".csv", "lines": ".txt", "jsonl": ".jsonl"}[list_format]
    path, long_line = write_list_with_long_line(tmp_path / f"giant{suffix}", list_format)
    report = tmp_path / "report.json"
    args = ["index", "build", str(path), "-o", str(tmp_path / "idx"), "--report", str(report)]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    listed = json.loads(report.read_text())["lists"][0]
    assert listed["accepted"] == {"pdq": 300} and listed["rejected"] == 1
    assert listed["first_problems"] == [
        f"{path}:{long_line}: line longer than {list_readers.MAX_LINE_CHARS} characters"
    ]


# --- formula-looking and markup labels, through the command line ------------------------------

LABELS = (*FORMULA_LABELS, *TERMINAL_LABELS)
IMAGE_NAME = "=cmd|' calc'!A0.png"


@pytest.fixture
def formula_world(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, str]:
    """An index whose entries for one image carry every hostile label; cwd holds the image,
    itself named like a formula, so scans print it as a relative path."""
    monkeypatch.chdir(tmp_path)
    image = save_image(synthetic_photo(5), tmp_path / IMAGE_NAME)
    digest = hash_image(image)["pdq"].hex
    listing = formula_labels([digest] * len(LABELS), LABELS).write(tmp_path)
    result = runner.invoke(app, ["index", "build", str(listing), "-o", "idx", "-q"])
    assert result.exit_code == 0, result.output
    return tmp_path / "idx", digest


def _labels(matches: list[dict]) -> set[str]:
    return {m["label"] for m in matches} | {m["entry_id"] for m in matches}


def _csv_rows(text: str) -> list[dict[str, str]]:
    rows = list(csv.DictReader(io.StringIO(text)))
    for row in rows:
        for value in row.values():
            assert not value.startswith(FORMULA_PREFIXES), f"live formula cell {value!r}"
    return rows


def test_lookup_keeps_labels_verbatim_in_jsonl_and_inert_in_csv(formula_world) -> None:
    index, digest = formula_world
    jsonl = runner.invoke(app, ["lookup", str(index), f"pdq:{digest}", "-f", "jsonl"])
    assert jsonl.exit_code == 1, jsonl.output
    assert _labels(json.loads(jsonl.stdout)["matches"]) == set(LABELS)
    as_csv = runner.invoke(app, ["lookup", str(index), f"pdq:{digest}", "-f", "csv"])
    assert as_csv.exit_code == 1, as_csv.output
    (row,) = _csv_rows(as_csv.stdout)
    assert _labels(json.loads(row["matches"])) == set(LABELS)


def test_scan_csv_escapes_a_formula_file_name_and_keeps_labels_inert(formula_world) -> None:
    index, _ = formula_world
    args = ["scan", IMAGE_NAME, "--index", str(index), "-q", "--workers", "1"]
    as_csv = runner.invoke(app, [*args, "-f", "csv"])
    assert as_csv.exit_code == 1, as_csv.output
    (row,) = _csv_rows(as_csv.stdout)
    assert row["path"] == "'" + IMAGE_NAME and row["status"] == "match"
    assert _labels(json.loads(row["matches"])) == set(LABELS)
    jsonl = runner.invoke(app, [*args, "-f", "jsonl"])
    record = json.loads(jsonl.stdout)
    assert record["path"] == IMAGE_NAME and _labels(record["matches"]) == set(LABELS)


@pytest.mark.parametrize("command", ["lookup", "scan"])
def test_tables_print_markup_and_escapes_as_plain_text(formula_world, command: str) -> None:
    index, digest = formula_world
    if command == "lookup":
        args = ["lookup", str(index), f"pdq:{digest}", "-f", "table"]
    else:
        args = ["scan", IMAGE_NAME, "--index", str(index), "-q", "--workers", "1", "-f", "table"]
    result = runner.invoke(app, args, env={"COLUMNS": "2000"})  # wide: no wrapped cells
    assert result.exit_code == 1, result.output  # a MarkupError used to end it
    assert "[/]" in result.stdout
    assert "[link=https://example.invalid]click[/link]" in result.stdout
    at = result.stdout.find("\x1b")
    assert at < 0, repr(result.stdout[max(0, at - 300) : at + 50])
    escaped = "\\u001b" if command == "lookup" else "\\x1b"  # lookup cells hold JSON
    assert f"{escaped}[2Jcleared" in result.stdout


def test_a_build_error_quoting_list_text_is_printed_as_is(tmp_path: Path) -> None:
    listing = tmp_path / "markup.csv"
    listing.write_text("[/],[bold]x\n1,2\n")
    result = runner.invoke(app, ["index", "build", str(listing), "-o", str(tmp_path / "idx")])
    assert result.exit_code == 2, result.output  # not a MarkupError traceback
    assert "CSV header has no hash column" in result.stderr
    assert "[/],[bold]x" in "".join(result.stderr.split())
