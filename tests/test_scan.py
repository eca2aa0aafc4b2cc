"""Scanning end to end: records, statuses, exit codes, workers, streaming, resume, Ctrl-C."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
from PIL import Image
from typer.testing import CliRunner

from hashmatch import ListSource, Matcher, build_index, hash_image
from hashmatch.cli.app import app
from hashmatch.fixtures.faults import MARKERS_VARIABLE, cli_with_faults
from hashmatch.fixtures.hashlists import SyntheticEntry, write_list
from hashmatch.fixtures.hostile import encode, truncated
from hashmatch.fixtures.images import save_image, synthetic_photo
from hashmatch.index.evaluation.transforms import apply_transform

runner = CliRunner()


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> tuple[Path, Path]:
    """An index of four known images and an uploads folder of copies, strangers, a bad file."""
    root = tmp_path_factory.mktemp("world")
    known = [synthetic_photo(seed, (640, 480)) for seed in range(40, 44)]
    entries = [
        SyntheticEntry("pdq", hash_image(image)["pdq"].hex, f"case-{i}", "known", "feed")
        for i, image in enumerate(known)
    ]
    build_index([ListSource(write_list(root / "known.csv", entries, "csv"))], root / "idx")
    uploads = root / "uploads"
    (uploads / "nested").mkdir(parents=True)
    save_image(apply_transform("jpeg_q50", known[0]), uploads / "a-reencoded.jpg")
    save_image(apply_transform("rotate_90", known[1]), uploads / "b-rotated.png")
    save_image(apply_transform("pad_20pct_white", known[2]), uploads / "nested" / "c-padded.jpg")
    save_image(apply_transform("resize_0.5", known[3]), uploads / "nested" / "d-small.webp")
    for seed in (90, 91):
        save_image(synthetic_photo(seed, (500, 400)), uploads / f"stranger-{seed}.jpg")
    save_image(Image.new("RGB", (300, 200), (90, 90, 90)), uploads / "flat.png")
    (uploads / "broken.jpg").write_bytes(truncated(encode(known[0], "JPEG"), 0.3))
    (uploads / "notes.txt").write_text("not an image")
    return root / "idx", uploads


def _records(text: str) -> dict[str, dict]:
    return {Path(r["path"]).name: r for r in map(json.loads, text.splitlines())}


EXPECTED = {
    "a-reencoded.jpg": ("match", "case-0"),
    "b-rotated.png": ("match", "case-1"),
    "c-padded.jpg": ("match", "case-2"),
    "d-small.webp": ("match", "case-3"),
    "stranger-90.jpg": ("no_match", None),
    "stranger-91.jpg": ("no_match", None),
    "flat.png": ("low_quality", None),
    "broken.jpg": ("error", None),
}


def test_scan_reports_every_status_with_the_right_entries(world) -> None:
    index, uploads = world
    result = runner.invoke(app, ["scan", str(uploads), "-r", "--index", str(index), "-f", "jsonl"])
    assert result.exit_code == 1, result.output
    records = _records(result.stdout)
    assert set(records) == set(EXPECTED)
    for name, (status, entry) in EXPECTED.items():
        assert records[name]["status"] == status, name
        if entry:
            match = records[name]["matches"][0]
            assert (match["entry_id"], match["list"], match["label"]) == (entry, "feed", "known")
            assert {"algorithm", "distance"} <= set(match)
    assert records["broken.jpg"]["error"].startswith("decode:")
    assert records["b-rotated.png"]["matches"][0]["variant"] == "rotate270"
    assert records["c-padded.jpg"]["matches"][0]["variant"] == "trimmed"
    assert "8 files: 4 matched, 1 low quality, 1 errors, 1 skipped" in result.stderr


def test_scan_without_recursion_dihedral_or_trimming(world) -> None:
    index, uploads = world
    args = ["scan", str(uploads), "--index", str(index), "-f", "jsonl"]
    records = _records(runner.invoke(app, [*args, "--no-dihedral", "--no-trim-borders"]).stdout)
    assert "c-padded.jpg" not in records  # nested, no -r
    assert records["b-rotated.png"]["status"] == "no_match"
    assert records["a-reencoded.jpg"]["status"] == "match"


def test_exit_codes_clean_and_errors_only(world, tmp_path: Path) -> None:
    index, uploads = world
    clean = runner.invoke(app, ["scan", str(uploads / "stranger-90.jpg"), "--index", str(index)])
    assert clean.exit_code == 0
    broken = runner.invoke(
        app,
        [
            "scan",
            str(uploads / "broken.jpg"),
            str(tmp_path / "missing.jpg"),
            "--index",
            str(index),
            "-f",
            "jsonl",
        ],
    )
    assert broken.exit_code == 2
    records = _records(broken.stdout)
    assert records["missing.jpg"]["error"] == "read: no such file or directory"
    bad_index = runner.invoke(app, ["scan", str(uploads), "--index", str(tmp_path / "nope")])
    assert bad_index.exit_code == 2 and "no such index" in bad_index.stderr


def test_two_workers_give_the_same_records_as_one(world) -> None:
    index, uploads = world
    args = ["scan", str(uploads), "-r", "--index", str(index), "-f", "jsonl", "-q"]
    one = _records(runner.invoke(app, [*args, "--workers", "1"]).stdout)
    two = _records(runner.invoke(app, [*args, "--workers", "2"]).stdout)
    assert one == two


def test_csv_table_and_hashes(world) -> None:
    index, uploads = world
    base = ["scan", str(uploads / "a-reencoded.jpg"), "--index", str(index)]
    rows = runner.invoke(app, [*base, "-f", "csv", "--with-hashes"]).stdout.splitlines()
    assert rows[0] == "path,status,matches,error,pdq,pdq_quality"
    assert ",match," in rows[1] and '""entry_id"": ""case-0""' in rows[1]
    wide = {"COLUMNS": "400"}  # temporary paths are long: keep rich from shortening them
    table = runner.invoke(
        app, ["scan", str(uploads), "--index", str(index), "-f", "table"], env=wide
    ).stdout
    assert "a-reencoded.jpg" in table and "feed/case-0" in table and "stranger" not in table
    record = json.loads(runner.invoke(app, [*base, "-f", "jsonl", "--with-hashes"]).stdout)
    assert record["hashes"]["pdq"] == hash_image(uploads / "a-reencoded.jpg")["pdq"].hex


def test_resume_skips_recorded_paths_and_repairs_a_cut_line(world, tmp_path: Path) -> None:
    index, uploads = world
    output = tmp_path / "scan.jsonl"
    first = runner.invoke(
        app,
        [
            "scan",
            str(uploads / "a-reencoded.jpg"),
            str(uploads / "flat.png"),
            "--index",
            str(index),
            "-o",
            str(output),
            "-f",
            "jsonl",
            "-q",
        ],
    )
    assert first.exit_code == 1
    with open(output, "a") as file:
        file.write('{"path": "half-written')  # a scan killed mid-line
    again = runner.invoke(
        app, ["scan", str(uploads), "-r", "--index", str(index), "--resume", str(output)]
    )
    assert again.exit_code == 1
    lines = output.read_text().splitlines()
    paths = [json.loads(line)["path"] for line in lines]  # every line is whole JSON
    assert len(paths) == len(set(paths)) == len(EXPECTED)
    assert "(2 done earlier)" in again.stderr


def _scan_command(index: Path, uploads: Path, output: Path, *options: str) -> list[str]:
    """A scan that also runs the ``faulty`` algorithm, so a file named ``hang...`` holds it
    at that file until the test acts (:mod:`hashmatch.fixtures.faults`)."""
    return cli_with_faults(
        "scan",
        str(uploads),
        "--index",
        str(index),
        "-o",
        str(output),
        "-f",
        "jsonl",
        "-a",
        "pdq,faulty",
        "--time-limit",
        "0",
        *options,
    )


def _interruptible() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _start_and_signal(
    command: list[str], markers: Path, hanging: str, signal_number: int, **popen: object
) -> subprocess.Popen:
    """Start a scan and send it a signal once it is held at the file ``hanging``. The scan
    gets Ctrl-C's default disposition, as from a terminal: a test run started in the
    background by a shell inherits SIGINT ignored, and Python then never sees it."""
    process = subprocess.Popen(  # type: ignore[call-overload]
        command,
        env={**os.environ, MARKERS_VARIABLE: str(markers)},
        preexec_fn=_interruptible,
        **popen,
    )
    marker = markers / f"{hanging}.pid"
    deadline = time.monotonic() + 120  # reaching it takes about a second here
    while not marker.exists():
        assert time.monotonic() < deadline and process.poll() is None, "the scan never got there"
        time.sleep(0.02)
    process.send_signal(signal_number)
    return process


@pytest.fixture
def many_uploads(tmp_path: Path) -> Path:
    """40 uploads; in name order, the 21st holds its scan until something happens."""
    folder = tmp_path / "many"
    folder.mkdir()
    names = [f"a{n:03d}.jpg" for n in range(20)] + ["hang1-k.jpg"]
    names += [f"z{n:03d}.jpg" for n in range(19)]
    for seed, name in enumerate(names):
        save_image(synthetic_photo(1000 + seed, (900, 700)), folder / name)
    return folder


@pytest.mark.slow
def test_killed_scan_keeps_its_records_and_resume_completes_it(
    world, many_uploads: Path, tmp_path: Path
) -> None:
    index, _ = world
    output, markers = tmp_path / "out.jsonl", tmp_path / "markers"
    markers.mkdir()
    command = _scan_command(index, many_uploads, output, "-q", "--workers", "1")
    _start_and_signal(command, markers, "hang1-k.jpg", signal.SIGKILL).wait()
    kept = [json.loads(line) for line in output.read_text().splitlines() if line.endswith("}")]
    # one worker, files in name order, each record flushed: exactly the 20 before it
    assert [Path(r["path"]).name for r in kept] == [f"a{n:03d}.jpg" for n in range(20)]
    resume = _scan_command(index, many_uploads, output, "-q", "--workers", "2")
    resume[resume.index("-o") : resume.index("-o") + 2] = ["--resume", str(output)]
    subprocess.run(resume, check=False, env={**os.environ, MARKERS_VARIABLE: str(markers)})
    paths = [json.loads(line)["path"] for line in output.read_text().splitlines()]
    assert len(paths) == len(set(paths)) == 40


@pytest.mark.slow
def test_ctrl_c_flushes_prints_the_summary_and_exits_130(
    world, many_uploads: Path, tmp_path: Path
) -> None:
    index, _ = world
    output, markers = tmp_path / "out.jsonl", tmp_path / "markers"
    markers.mkdir()
    (many_uploads / "hang1-k.jpg").rename(many_uploads / "hang-k.jpg")  # hangs every time
    command = _scan_command(index, many_uploads, output, "--workers", "2")
    process = _start_and_signal(
        command, markers, "hang-k.jpg", signal.SIGINT, stderr=subprocess.PIPE, text=True
    )
    _, stderr = process.communicate(timeout=120)  # a worker stuck on a file must not hold it
    assert process.returncode == 130
    assert "interrupted after" in stderr and "Traceback" not in stderr
    records = [json.loads(line) for line in output.read_text().splitlines()]
    assert "hang-k.jpg" not in {Path(r["path"]).name for r in records}


def test_match_many_yields_every_source_once(world) -> None:
    index, uploads = world
    matcher = Matcher.open(index)
    paths = sorted(str(p) for p in uploads.glob("*.*") if p.suffix != ".txt")
    results = list(matcher.match_many(paths, workers=2))
    assert sorted(r.source for r in results) == paths
    statuses = {Path(r.source).name: r.status for r in results}
    assert statuses["a-reencoded.jpg"] == "match" and statuses["broken.jpg"] == "error"
    data = [Path(p).read_bytes() for p in paths[:3]]
    positions = sorted(r.source for r in matcher.match_many(data))
    assert positions == [0, 1, 2]


def test_scan_help_documents_exit_codes() -> None:
    text = runner.invoke(app, ["scan", "--help"]).stdout
    assert "0 no match" in " ".join(text.split()) and "130" in text
