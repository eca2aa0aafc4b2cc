"""The hostile corpus: every kind of bad input gets one clear record, and nothing else breaks."""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from hashmatch import HashmatchError, ListSource, build_index, hash_image
from hashmatch.cli.app import app
from hashmatch.deadline import DeadlineExceeded, deadline
from hashmatch.fixtures.faults import SLOW_SECONDS, cli_with_faults
from hashmatch.fixtures.hashlists import SyntheticEntry, write_list
from hashmatch.fixtures.hostile import HostileCase, encode, write_hostile_corpus
from hashmatch.fixtures.images import synthetic_photo

HANG_BOUND_SECONDS = 30
"""No single hostile file may take this long to hash or refuse: the slowest (the 121-megapixel
flood) takes about 0.5 s here, so only a hang, not a slow machine, gets near it."""

# Pillow warns from 89 million pixels; our own limit (128 Mi pixels) decides what is refused.
pytestmark = pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, list[HostileCase]]:
    """A folder with the hostile corpus and three known JPEGs, and an index of the known."""
    root = tmp_path_factory.mktemp("hostile")
    cases = write_hostile_corpus(root / "scan")
    entries = []
    for number in range(3):
        photo = synthetic_photo(300 + number)
        (root / "scan" / f"good{number}.jpg").write_bytes(encode(photo, "JPEG", quality=90))
        entries.append(SyntheticEntry("pdq", hash_image(photo)["pdq"].hex, f"known-{number}"))
    build_index([ListSource(write_list(root / "known.csv", entries, "csv"))], root / "idx")
    return root / "scan", root / "idx", cases


def _records(output: str) -> dict[str, dict]:
    records = [json.loads(line) for line in output.splitlines() if line.strip()]
    by_path = {record["path"]: record for record in records}
    assert len(by_path) == len(records), "a path was reported twice"
    return by_path


def test_the_corpus_has_at_least_30_kinds(world) -> None:
    _, _, cases = world
    kinds = [case.kind for case in cases]
    assert len(set(kinds)) == len(kinds) >= 30


def test_library_calls_raise_only_hashmatch_errors(world) -> None:
    _, _, cases = world
    for case in cases:
        if case.path.is_dir():
            continue
        started = time.monotonic()
        try:
            hash_image(case.path, ("pdq", "phash", "md5"), dihedral=True, trim_borders=True)
        except HashmatchError as exc:
            assert case.expect in ("error", "skipped"), (case.kind, exc)
            assert str(case.path) in str(exc) or os.fsdecode(case.path) in str(exc)
        else:
            assert case.expect == "hashed", case.kind
        assert time.monotonic() - started < HANG_BOUND_SECONDS, case.kind


def _check(case: HostileCase, record: dict | None) -> None:
    if case.expect == "hashed":
        assert record is not None and record["status"] != "error", (case.kind, record)
    elif case.expect == "error":
        assert record is not None and record["status"] == "error", (case.kind, record)
        assert record["error"].startswith(f"{case.error_kind}:"), (case.kind, record["error"])
    elif case.expect == "skipped":
        assert record is None, (case.kind, record)


@pytest.mark.parametrize("workers", ["1", "2"])
def test_a_scan_of_the_corpus_reports_each_entry_once_and_matches_the_good(
    world, workers: str
) -> None:
    folder, index, cases = world
    runner = CliRunner()
    outcome = runner.invoke(
        app, ["scan", str(folder), "-r", "--index", str(index), "-f", "jsonl", "-j", workers]
    )
    assert outcome.exit_code == 1, outcome.output  # the good files matched
    assert "Traceback" not in outcome.output
    records = _records(outcome.stdout)
    for case in cases:
        _check(case, records.get(os.fsdecode(case.path)))
    inside = [path for path in records if path.startswith(f"{folder}/x.jpg/")]
    assert len(inside) == 1 and records[inside[0]]["status"] == "no_match"
    for number in range(3):
        good = records[f"{folder}/good{number}.jpg"]
        assert good["status"] == "match"
        assert good["matches"][0]["entry_id"] == f"known-{number}"
    expected = sum(case.expect in ("hashed", "error") for case in cases) + len(inside) + 3
    assert len(records) == expected


def test_entries_named_explicitly_get_one_record_each(world) -> None:
    _, index, cases = world
    paths = [os.fsdecode(case.path) for case in cases if not case.path.is_dir()]
    runner = CliRunner()
    outcome = runner.invoke(app, ["scan", *paths, "--index", str(index), "-f", "jsonl", "-j", "1"])
    assert outcome.exit_code == 2, outcome.output  # errors, and nothing known among them
    records = _records(outcome.stdout)
    assert sorted(records) == sorted(paths)
    for case in cases:
        if case.expect == "skipped":  # named explicitly, it is an error, not a skip
            assert records[os.fsdecode(case.path)]["status"] == "error", case.kind


def test_scanning_the_bombs_stays_under_1_gib(world, tmp_path: Path) -> None:
    folder, index, _ = world
    script = (
        "import resource, sys\n"
        "from hashmatch.cli.app import main\n"
        "sys.argv = ['hashmatch', 'scan', sys.argv[1], '-r', '--index', sys.argv[2],"
        " '-f', 'jsonl', '-o', sys.argv[3], '-j', '1', '-q']\n"
        "try:\n    main()\nexcept SystemExit:\n    pass\n"
        "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)\n"
    )
    output = tmp_path / "records.jsonl"
    done = subprocess.run(
        [sys.executable, "-c", script, str(folder), str(index), str(output)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    peak_kib = int(done.stdout.strip().splitlines()[-1])
    assert peak_kib < 1024 * 1024, f"peak RSS {peak_kib / 1024:.0f} MiB"
    assert len(output.read_text().splitlines()) >= 30


def test_a_slow_file_becomes_a_timeout_record_and_the_scan_goes_on(world, tmp_path: Path) -> None:
    """The slow file takes exactly SLOW_SECONDS (a fault seam, not a big decode), so the limit
    trips on every machine; the good file takes 10-150 ms here, far under the limit."""
    folder, index, _ = world
    good, slow = folder / "good0.jpg", tmp_path / "slow-file.png"
    slow.write_bytes(encode(synthetic_photo(301), "PNG"))
    limit = "3"
    assert float(limit) * 2 <= SLOW_SECONDS
    runs = {
        "limited, in the scan": ["-j", "1", "--time-limit", limit],
        "limited, in workers": ["-j", "2", "--time-limit", limit],
        "no limit": ["-j", "1", "--time-limit", "0"],
    }
    scan = ["scan", str(good), str(slow), "--index", str(index), "-f", "jsonl", "-a", "pdq,faulty"]
    started = {
        name: subprocess.Popen(
            cli_with_faults(*scan, *options),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for name, options in runs.items()
    }
    outcomes = {name: process.communicate(timeout=600) for name, process in started.items()}
    for name in ("limited, in the scan", "limited, in workers"):
        stdout, stderr = outcomes[name]
        records = _records(stdout)
        assert records[str(slow)]["error"] == f"timeout: took longer than {limit} s", name
        assert records[str(good)]["status"] == "match", (name, stderr)
        assert started[name].returncode == 1 and "Traceback" not in stderr
    relaxed = _records(outcomes["no limit"][0])
    assert relaxed[str(slow)]["status"] != "error"
    assert relaxed[str(good)]["status"] == "match"


def test_deadline_interrupts_python_work_and_restores_the_previous_state() -> None:
    with pytest.raises(DeadlineExceeded), deadline(0.05):
        while True:
            pass
    with deadline(5):  # finishes in time: no alarm left behind
        total = sum(range(1000))
    assert total == 499500
    time.sleep(0.06)
    soft, _ = resource.getrlimit(resource.RLIMIT_CPU)  # the process is still healthy
    assert soft is not None
