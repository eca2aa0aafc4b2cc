"""``scan --engine ray`` on a real local Ray cluster of 2 CPUs started here: the local scan's
records (hostile files and crashing decoders included), an actor killed mid-scan, a version
the actors do not have, the library's Dataset, and input from an S3-compatible server."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

pytest.importorskip("ray", reason="cluster scans need the ray extra (pip install -e '.[ray]')")

from hashmatch import ListSource, build_index, hash_image
from hashmatch.fixtures.clusters import ray_auth, ray_node, s3_server, s3_upload
from hashmatch.fixtures.faults import MARKERS_VARIABLE, cli_with_faults, read_marker
from hashmatch.fixtures.hashlists import SyntheticEntry, write_list
from hashmatch.fixtures.hostile import write_hostile_corpus
from hashmatch.fixtures.images import save_image, synthetic_photo

pytestmark = pytest.mark.slow
SCAN_SECONDS = 600


@pytest.fixture(scope="module")
def markers(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("fault-markers")


@pytest.fixture(scope="module")
def ray_address(tmp_path_factory: pytest.TempPathFactory, markers: Path) -> Iterator[str]:
    """A Ray head of 2 CPUs, its actors seeing the fault markers' directory; this process's
    environment carries the cluster's token for the drivers the tests start."""
    log = tmp_path_factory.mktemp("ray-log") / "ray.log"
    auth = ray_auth()
    with pytest.MonkeyPatch.context() as patch:
        for name, value in auth.items():
            patch.setenv(name, value)
        with ray_node(2, environment={MARKERS_VARIABLE: str(markers)}, log=log) as address:
            yield address


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """An index of photos 0..9 and uploads: those photos, strangers, files that crash or kill
    their decoder, a broken one, a text file, and the hostile corpus."""
    root = tmp_path_factory.mktemp("cluster-world")
    photos = [synthetic_photo(seed, (320, 240)) for seed in range(600, 610)]
    entries = [
        SyntheticEntry("pdq", hash_image(photo)["pdq"].hex, f"k{n}")
        for n, photo in enumerate(photos)
    ]
    build_index([ListSource(write_list(root / "known.csv", entries, "csv"))], root / "idx")
    uploads = root / "uploads"
    (uploads / "day1").mkdir(parents=True)
    for n, photo in enumerate(photos):
        save_image(photo, uploads / "day1" / f"known-{n}.png")
    for n in range(6):
        save_image(synthetic_photo(700 + n, (320, 240)), uploads / f"stranger-{n}.jpg")
    save_image(photos[0], uploads / "crash-a.png")  # SIGSEGV in the decoder, every time
    save_image(photos[1], uploads / "exit-b.png")
    (uploads / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 truncated")
    (uploads / "notes.txt").write_text("not an image")
    write_hostile_corpus(uploads / "hostile")
    return root / "idx", uploads


def _scan(
    *arguments: str, env: dict[str, str] | None = None, markers: Path | None = None
) -> subprocess.CompletedProcess[str]:
    environment = {**os.environ, **(env or {})}
    if markers is not None:
        environment[MARKERS_VARIABLE] = str(markers)
    return subprocess.run(
        cli_with_faults("scan", *arguments),
        capture_output=True,
        text=True,
        env=environment,
        timeout=SCAN_SECONDS,
        check=False,
    )


def _records(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _by_path(records: list[dict]) -> dict[str, dict]:
    by_path = {record["path"]: record for record in records}
    assert len(by_path) == len(records), "a file was recorded twice"
    return by_path


def _summary(stderr: str) -> str:
    """The summary line without its timing."""
    line = next(line for line in stderr.splitlines() if line.startswith("scanned "))
    return re.sub(r" in [0-9.]+s \([0-9.]+ files/s\)", "", line)


def test_ray_records_equal_the_local_scans(
    world: tuple[Path, Path], ray_address: str, tmp_path: Path, markers: Path
) -> None:
    index, uploads = world
    common = [str(uploads), "-r", "-i", str(index), "-a", "pdq,faulty", "-f", "jsonl"]
    local = _scan(*common, "-j", "2", "-o", str(tmp_path / "local.jsonl"), markers=markers)
    ray = _scan(
        *common,
        "--engine", "ray", "--ray-address", ray_address, "--batch-size", "4",
        "-o", str(tmp_path / "ray.jsonl"),
        markers=markers,
    )  # fmt: skip
    assert local.returncode == 1, local.stderr
    assert ray.returncode == 1, ray.stderr
    assert "Traceback" not in ray.stderr
    expected = _by_path(_records(tmp_path / "local.jsonl"))
    got = _by_path(_records(tmp_path / "ray.jsonl"))
    assert got == expected
    assert _summary(ray.stderr) == _summary(local.stderr)
    crashed = got[str(uploads / "crash-a.png")]["error"]
    assert crashed == (
        "crashed: worker process killed by signal 11 (SIGSEGV) while on this file, 2 times"
    )
    statuses = {record["status"] for record in got.values()}
    assert {"match", "no_match", "error"} <= statuses


def _parent_of(pid: int) -> int:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[1])


def test_an_actor_killed_mid_scan_loses_and_repeats_nothing(
    world: tuple[Path, Path],
    ray_address: str,
    tmp_path: Path,
    markers: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    index, _ = world
    uploads = tmp_path / "uploads"
    uploads.mkdir()
    names = [f"a{n:02d}.png" for n in range(16)] + ["hang1-kill.png"]
    names += [f"z{n:02d}.png" for n in range(16)]
    for n, name in enumerate(names):  # odd ones known, even ones strangers
        save_image(synthetic_photo(600 + n % 10 if n % 2 else 800 + n, (320, 240)), uploads / name)
    out = tmp_path / "ray.jsonl"
    command = cli_with_faults(
        "scan", str(uploads), "-i", str(index), "-a", "pdq,faulty", "-f", "jsonl", "-o", str(out),
        "--engine", "ray", "--ray-address", ray_address, "--batch-size", "3", "--time-limit", "0",
    )  # fmt: skip
    monkeypatch.setenv(MARKERS_VARIABLE, str(markers))
    process = subprocess.Popen(command, stderr=subprocess.PIPE, text=True, env=dict(os.environ))
    try:
        deadline = time.monotonic() + SCAN_SECONDS
        while read_marker("hang1-kill.png") is None:  # an actor's hashing process holds it
            assert process.poll() is None, process.communicate()[1]
            if time.monotonic() > deadline:  # a bound on a hang, not a speed test
                pytest.fail("the scan never reached the file")
            time.sleep(0.1)
        hashing = read_marker("hang1-kill.png")
        assert hashing is not None
        actor = _parent_of(hashing)
        assert "ScanActor" in Path(f"/proc/{actor}/cmdline").read_text()
        os.kill(actor, signal.SIGKILL)  # what the OOM killer does to the actor itself
        os.kill(hashing, signal.SIGKILL)  # left without its actor, it would sleep on
        _, stderr = process.communicate(timeout=SCAN_SECONDS)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 1, stderr
    records = _by_path(_records(out))  # every file exactly once
    assert sorted(Path(path).name for path in records) == sorted(names)
    for path, record in records.items():
        assert record["error"] is None, record  # the killed batch ran again, on a new actor
        expected = "match" if names.index(Path(path).name) % 2 else "no_match"
        assert record["status"] == expected, record
    assert "scanned 33 files" in " ".join(stderr.split())


def _driver(ray_address: str, script: str, *arguments: str) -> subprocess.CompletedProcess[str]:
    """``script`` run as a Ray driver of the test cluster, in a process of its own (Ray in
    the test process would outlive the tests' environment)."""
    prologue = f"import ray, sys; ray.init(address={ray_address!r}, logging_level='ERROR')\n"
    return subprocess.run(
        [sys.executable, "-c", prologue + textwrap.dedent(script), *arguments],
        capture_output=True,
        text=True,
        timeout=SCAN_SECONDS,
        check=False,
    )


def test_the_library_returns_a_dataset_a_pipeline_can_take_further(
    world: tuple[Path, Path], ray_address: str, tmp_path: Path
) -> None:
    index, uploads = world
    script = """
        import json
        from hashmatch import cluster
        day, index, out = sys.argv[1:]
        dataset = cluster.scan([day], index, with_hashes=True)
        matched = dataset.filter(lambda row: row["status"] == "match")  # a stage of one's own
        print(json.dumps({"columns": dataset.columns(), "matched": matched.count()}))
        dataset.write_json(out)  # and one's own sink
    """
    out = tmp_path / "out"
    done = _driver(ray_address, script, str(uploads / "day1"), str(index), str(out))
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    assert summary == {
        "columns": ["path", "status", "matches", "error", "pdq", "pdq_quality"],
        "matched": 10,
    }
    written = [json.loads(line) for part in out.iterdir() for line in part.open()]
    assert sorted(Path(r["path"]).name for r in written) == [f"known-{n}.png" for n in range(10)]
    assert all(json.loads(r["matches"])[0]["entry_id"].startswith("k") for r in written)
    assert all(len(r["pdq"]) == 64 for r in written)


def test_actors_refuse_an_index_version_the_driver_did_not_pin(
    world: tuple[Path, Path], ray_address: str
) -> None:
    index, uploads = world
    script = """
        from dataclasses import replace
        from hashmatch import MatchOptions, cluster
        from hashmatch.cluster.pipeline import cluster_failure
        day, index = sys.argv[1:]
        listing = cluster.list_sources([day])
        pin = cluster.pin_index(index)
        others = [replace(pin, version="20990101-000000-0000"), replace(pin, checksum="0" * 64)]
        for other in others:
            try:
                cluster.records_dataset(listing, other, MatchOptions(), actors=1).take_all()
                print("not refused")
            except Exception as exc:
                print("refused:", cluster_failure(exc))
    """
    done = _driver(ray_address, script, str(uploads / "day1"), str(index))
    assert done.returncode == 0, done.stderr
    lines = [line for line in done.stdout.splitlines() if line.startswith(("refused", "not"))]
    assert len(lines) == 2, done.stdout
    assert "this node has no index version 20990101" in lines[0]
    assert "differs from the driver's" in lines[1]


def test_s3_input_gives_the_records_of_the_same_files_on_disk(
    world: tuple[Path, Path], ray_address: str, tmp_path: Path
) -> None:
    index, uploads = world
    with s3_server() as settings:
        day = uploads / "day1"
        extra = tmp_path / "extra"
        extra.mkdir()
        (extra / "notes.txt").write_text("not an image")
        (extra / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 truncated")
        save_image(synthetic_photo(700, (320, 240)), extra / "renamed.bin", format="JPEG")
        folder = tmp_path / "folder"
        (folder / "sub").mkdir(parents=True)
        for source, target in ((day, folder), (extra, folder / "sub")):
            for path in source.iterdir():
                (target / path.name).write_bytes(path.read_bytes())
        assert s3_upload(settings, "uploads", "2026/12", folder) == 13
        common = ["-r", "-i", str(index), "-f", "jsonl", "--engine", "ray"]
        common += ["--ray-address", ray_address]
        disk = _scan(str(folder), *common, "-o", str(tmp_path / "disk.jsonl"))
        url = "s3://uploads/2026/12"
        bucket = _scan(url, *common, "-o", str(tmp_path / "s3.jsonl"), env=settings)
    assert disk.returncode == bucket.returncode == 1, bucket.stderr
    on_disk = {
        Path(r["path"]).relative_to(folder).as_posix(): r
        for r in _records(tmp_path / "disk.jsonl")
    }
    in_bucket = {
        r["path"].removeprefix("s3://uploads/2026/12/"): r for r in _records(tmp_path / "s3.jsonl")
    }
    assert set(in_bucket) == set(on_disk)
    for name, record in in_bucket.items():
        assert record["path"] == f"s3://uploads/2026/12/{name}"
        assert {**record, "path": None} == {**on_disk[name], "path": None}
    assert _summary(bucket.stderr) == _summary(disk.stderr)  # notes.txt skipped in both
    assert "1 skipped" in _summary(bucket.stderr)


def test_resume_scans_only_what_an_interrupted_run_did_not_record(
    world: tuple[Path, Path], ray_address: str, tmp_path: Path
) -> None:
    index, uploads = world
    day = str(uploads / "day1")
    out = tmp_path / "out.jsonl"
    common = ["-i", str(index), "--engine", "ray", "--ray-address", ray_address]
    first = _scan(day, *common, "-f", "jsonl", "-o", str(out))
    assert first.returncode == 1, first.stderr
    lines = out.read_text().splitlines(keepends=True)
    out.write_text("".join(lines[:4]) + lines[4][:20])  # killed while writing the fifth
    again = _scan(day, *common, "--resume", str(out))
    assert again.returncode == 1, again.stderr
    records = _by_path(_records(out))
    assert sorted(Path(p).name for p in records) == [f"known-{n}.png" for n in range(10)]
    assert all(record["status"] == "match" for record in records.values())
    assert "scanned 6 files (4 done earlier)" in " ".join(again.stderr.split())
