"""Worker processes that die: the file they held becomes a record, and the run goes on.

The crashes are real (SIGSEGV, SIGKILL, an abrupt exit of the worker process, or SIGKILL sent
from outside to the worker busy with a file); which file causes them is chosen by name through
:mod:`hashmatch.fixtures.faults`, met through the algorithm the commands here run with
(``-a pdq,faulty``). Every such run is its own process, so that algorithm never enters this
test process's registry; the pool itself is also tested directly, on plain tasks.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from hashmatch import ListSource, build_index
from hashmatch.fixtures.faults import (
    MARKERS_VARIABLE,
    cli_with_faults,
    misbehave_then_echo,
    read_marker,
)
from hashmatch.fixtures.hashlists import SyntheticEntry, write_list
from hashmatch.fixtures.images import save_image, synthetic_photo
from hashmatch.parallel import WorkerCrash, parallel_map

WAIT_SECONDS = 120
"""Bound on waiting for a worker to reach a file: it takes well under a second here."""

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")


def _photos(folder: Path, names: list[str], seed: int = 500) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    return [
        save_image(synthetic_photo(seed + n, (320, 240)), folder / name)
        for n, name in enumerate(names)
    ]


@pytest.fixture(scope="module")
def index(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An index of the PDQ hashes of the photos every test here writes (same seeds)."""
    from hashmatch import hash_image

    root = tmp_path_factory.mktemp("crash-index")
    entries = [
        SyntheticEntry("pdq", hash_image(synthetic_photo(seed, (320, 240)))["pdq"].hex, f"k{seed}")
        for seed in range(500, 520)
    ]
    build_index([ListSource(write_list(root / "known.csv", entries, "csv"))], root / "idx")
    return root / "idx"


def _environment(markers: Path) -> dict[str, str]:
    markers.mkdir(exist_ok=True)
    return {**os.environ, MARKERS_VARIABLE: str(markers)}


def _run(tmp_path: Path, *arguments: str) -> subprocess.CompletedProcess:
    """``hashmatch ARGUMENTS`` with the fault algorithm registered, to the end."""
    return subprocess.run(
        cli_with_faults(*arguments),
        capture_output=True,
        text=True,
        env=_environment(tmp_path / "markers"),
        timeout=600,
        check=False,
    )


def _records(text: str) -> dict[str, dict]:
    records = [json.loads(line) for line in text.splitlines() if line.strip()]
    by_path = {Path(record["path"]).name: record for record in records}
    assert len(by_path) == len(records), "a file was reported twice"
    return by_path


def _wait_for_marker(markers: Path, name: str, process: subprocess.Popen) -> int:
    """The process id of the worker that reached ``name`` (bounded wait)."""
    path = markers / f"{name}.pid"
    deadline = time.monotonic() + WAIT_SECONDS
    while time.monotonic() < deadline and process.poll() is None:
        if path.exists():
            return int(path.read_text())
        time.sleep(0.02)
    raise AssertionError(f"no worker reached {name} within {WAIT_SECONDS} s")


def test_a_file_that_crashes_its_worker_becomes_a_crashed_record_and_the_scan_goes_on(
    index: Path, tmp_path: Path
) -> None:
    names = ["a.png", "crash-b.png", "c.png", "exit-d.png", "crash1-e.png"]
    names += [f"f{n}.png" for n in range(10)]
    _photos(tmp_path / "up", names)
    done = _run(
        tmp_path, "scan", str(tmp_path / "up"), "-i", str(index), "-a", "pdq,faulty", "-j", "2"
    )
    assert done.returncode == 1, done.stderr  # matches found, errors too: 1 wins
    assert "Traceback" not in done.stderr
    records = _records(done.stdout)
    assert sorted(records) == sorted(names)
    assert records["crash-b.png"]["error"] == (
        "crashed: worker process killed by signal 11 (SIGSEGV) while on this file, 2 times"
    )
    assert records["exit-d.png"]["error"] == (
        "crashed: worker process exited with code 3 while on this file, 2 times"
    )
    # killed once, retried in a new worker, hashed the second time: an ordinary record
    assert records["crash1-e.png"]["status"] == "match"
    for name in names:
        if not name.startswith(("crash-", "exit-")):
            assert records[name]["status"] == "match", records[name]
    assert "scanned 15 files: 13 matched" in " ".join(done.stderr.split())


def test_a_worker_killed_from_outside_mid_file_loses_nothing(index: Path, tmp_path: Path) -> None:
    names = [f"a{n:02d}.png" for n in range(12)] + ["hang1-m.png"]
    names += [f"z{n:02d}.png" for n in range(7)]
    _photos(tmp_path / "up", names)
    markers = tmp_path / "markers"
    up, out = str(tmp_path / "up"), str(tmp_path / "out.jsonl")
    options = ["-a", "pdq,faulty", "-j", "2", "--time-limit", "0", "-f", "jsonl", "-o", out]
    command = cli_with_faults("scan", up, "-i", str(index), *options)
    process = subprocess.Popen(
        command, stderr=subprocess.PIPE, text=True, env=_environment(markers)
    )
    worker = _wait_for_marker(markers, "hang1-m.png", process)
    assert worker != process.pid  # a worker process holds the file, not the scan itself
    os.kill(worker, signal.SIGKILL)  # what the OOM killer does
    _, stderr = process.communicate(timeout=600)
    assert process.returncode == 1, stderr
    assert "Traceback" not in stderr
    records = _records((tmp_path / "out.jsonl").read_text())
    assert sorted(records) == sorted(names)  # every file exactly once
    assert all(record["status"] == "match" for record in records.values())


def test_workers_dying_on_every_file_stop_the_run_with_a_clear_message(
    index: Path, tmp_path: Path
) -> None:
    _photos(tmp_path / "up", [f"killed-{n:02d}.png" for n in range(40)])
    done = _run(
        tmp_path, "scan", str(tmp_path / "up"), "-i", str(index), "-a", "pdq,faulty", "-j", "2"
    )
    assert done.returncode == 2
    message = " ".join(done.stderr.split())
    assert "Traceback" not in done.stderr
    assert "error: stopping: worker processes died 8 times in a row" in message
    assert "(last one killed by signal 9 (SIGKILL))" in message
    assert "stopped after" in message
    records = _records(done.stdout)
    assert 0 < len(records) < 40  # the files given up on so far, not a loop over all 40
    assert all(r["error"].startswith("crashed: ") for r in records.values())


def test_hash_and_match_many_turn_a_crashing_file_into_an_error_too(
    index: Path, tmp_path: Path
) -> None:
    names = ["a.png", "crash-b.png", "c.png", "d.png"]
    files = _photos(tmp_path / "up", names)
    environment = _environment(tmp_path / "markers")
    hashed = _run(tmp_path, "hash", *map(str, files), "-a", "pdq,faulty", "-j", "2", "-f", "jsonl")
    assert hashed.returncode == 2 and "Traceback" not in hashed.stderr
    records = _records(hashed.stdout)
    assert records["crash-b.png"]["error"].startswith("crashed: worker process killed by")
    assert all(records[n]["error"] is None and records[n]["pdq"] for n in names if n != names[1])
    script = (
        "import sys, json\n"
        "import hashmatch.fixtures.faulty_algorithm\n"
        "from hashmatch import Matcher\n"
        "if __name__ == '__main__':\n"
        "    matcher = Matcher.open(sys.argv[1])\n"
        "    results = matcher.match_many(sys.argv[2:], workers=2, algorithms=['pdq', 'faulty'])\n"
        "    for r in results:\n"
        "        print(json.dumps({'path': r.source, 'status': r.status, 'error': r.error}))\n"
    )
    (tmp_path / "many.py").write_text(script)
    matched = subprocess.run(
        [sys.executable, str(tmp_path / "many.py"), str(index), *map(str, files)],
        capture_output=True,
        text=True,
        env=environment,
        timeout=600,
        check=False,
    )
    assert matched.returncode == 0, matched.stderr
    results = _records(matched.stdout)
    assert sorted(results) == sorted(names)
    assert results["crash-b.png"]["status"] == "error"
    assert results["crash-b.png"]["error"].startswith("crashed: ")
    assert {results[n]["status"] for n in names if n != names[1]} == {"match"}


def test_eval_reports_a_file_that_crashes_its_worker_and_scores_the_rest(tmp_path: Path) -> None:
    _photos(tmp_path / "known", ["a.png", "crash-b.png", "c.png"])
    report = str(tmp_path / "report")
    options = ["-a", "pdq,faulty", "-t", "jpeg_q30", "-j", "2", "-q"]
    done = _run(tmp_path, "eval", str(tmp_path / "known"), "-o", report, *options)
    assert done.returncode == 0, done.stderr
    message = " ".join(done.stderr.split())
    assert "crash-b.png: crashed: worker process killed by signal 11 (SIGSEGV)" in message
    results = json.loads((tmp_path / "report" / "results.json").read_text())
    assert [Path(path).name for path in results["images"]] == ["a.png", "c.png"]


# --- the pool itself, on plain tasks (hashmatch.fixtures.faults registers nothing) -----------


def _crash_note(item: str, crash: WorkerCrash) -> str:
    return f"gave up on {item}: {crash}"


def test_the_pool_keeps_order_retries_once_and_gives_up_on_a_file_that_kills_twice(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(MARKERS_VARIABLE, str(tmp_path))  # the workers inherit it
    items = [f"a{n}" for n in range(20)] + ["killed-x", "crash1-y"] + [f"b{n}" for n in range(20)]
    results = list(
        parallel_map(misbehave_then_echo, items, workers=2, crashed=_crash_note, ordered=True)
    )
    expected = [
        "gave up on killed-x: worker process killed by signal 9 (SIGKILL) while on this file,"
        " 2 times"
        if item == "killed-x"
        else item
        for item in items
    ]
    assert results == expected
    assert read_marker("crash1-y") is not None  # it did kill a worker, once


def test_a_bug_in_the_task_function_propagates_from_the_pool() -> None:
    with pytest.raises(AttributeError, match="startswith"):
        list(parallel_map(misbehave_then_echo, ["a", 7, "b"], workers=2, crashed=_crash_note))


def test_leaving_the_pool_early_stops_a_worker_stuck_on_a_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(MARKERS_VARIABLE, str(tmp_path))
    results = parallel_map(
        misbehave_then_echo, ["hang-x", "a", "b"], workers=2, crashed=_crash_note
    )
    assert next(results) in ("a", "b")
    deadline = time.monotonic() + WAIT_SECONDS
    while read_marker("hang-x") is None and time.monotonic() < deadline:
        time.sleep(0.02)
    stuck = read_marker("hang-x")
    assert stuck is not None
    results.close()  # what Ctrl-C in the consumer does: the pool's finally stops the workers
    with pytest.raises(ProcessLookupError):
        os.kill(stuck, 0)


def test_a_file_stuck_where_the_timer_cannot_reach_is_stopped_by_the_pool(
    index: Path, tmp_path: Path
) -> None:
    """A decoder stuck in C code never lets the time limit's signal run; the pool kills that
    worker one second past the limit, and the file is a timeout, not a crash."""
    names = ["a.png", "stuck-b.png", "c.png", "stuck-d.png", "e.png"]
    _photos(tmp_path / "up", names)
    options = ["-a", "pdq,faulty", "-j", "2", "--time-limit", "2"]
    done = _run(tmp_path, "scan", str(tmp_path / "up"), "-i", str(index), *options)
    assert done.returncode == 1, done.stderr
    assert "Traceback" not in done.stderr
    records = _records(done.stdout)
    assert sorted(records) == sorted(names)
    for name in ("stuck-b.png", "stuck-d.png"):
        assert records[name]["error"] == "timeout: took longer than 2 s"
    assert {records[name]["status"] for name in ("a.png", "c.png", "e.png")} == {"match"}
