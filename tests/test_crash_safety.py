"""A build that dies or fails midway: killed in each phase, or out of disk space.

Either way the published index must stay exactly the old one or become exactly the new one,
intact, and nothing the failed build wrote may outlive the next build (``bench/crash.py`` runs
the kill trials at random moments, many more of them).
"""

from __future__ import annotations

import errno
import hashlib
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from hashmatch import IndexBuildError, ListSource, Matcher, build_index
from hashmatch.fixtures.hashlists import SyntheticEntry, random_codes, write_list
from hashmatch.fixtures.processes import group_ends
from hashmatch.index.artifact import CURRENT, MANIFEST, METADATA, VERSIONS, current_version
from hashmatch.index.inspect import index_info, verify_index


def _pdq_list(path: Path, count: int, seed: int) -> tuple[Path, str]:
    """A list of random PDQ codes (no ids, so the entries database stays small), and a hash
    that only this list holds."""
    codes = random_codes(count, seed=seed)
    write_list(path, [SyntheticEntry("pdq", c.tobytes().hex()) for c in codes], "csv")
    return path, codes[0].tobytes().hex()


def _cli_build(source: Path, index: Path, *prefix: str) -> list[str]:
    command = ["index", "build", str(source), "-o", str(index), "-q"]
    return [sys.executable, *(prefix or ("-m", "hashmatch.cli")), *command]


def _new_names(index: Path, before: set[str]) -> set[str]:
    return set(os.listdir(index / VERSIONS)) - before


def _staged(index: Path, before: set[str], suffix: str) -> bool:
    """Whether a staging directory of this build holds a file ending in ``suffix``."""
    for name in _new_names(index, before):
        if name.startswith(".tmp-"):
            try:
                if any(f.endswith(suffix) for f in os.listdir(index / VERSIONS / name)):
                    return True
            except FileNotFoundError:  # renamed into place meanwhile
                return True
    return False


# When to kill, each a moment seen from outside: (index, names before, version before) -> due.
KILL_MOMENTS: dict[str, Callable[[Path, set[str], str | None], bool]] = {
    "startup": lambda index, before, old: True,
    "ingest": lambda index, before, old: bool(_new_names(index, before)),
    "write": lambda index, before, old: _staged(index, before, ".codes"),
    "publish": lambda index, before, old: _staged(index, before, MANIFEST),
    "exit": lambda index, before, old: current_version(index) != old,
}


def _kill_build_when(
    due: Callable[[Path, set[str], str | None], bool],
    source: Path,
    index: Path,
    rng: np.random.Generator,
) -> None:
    """Kill the build at that moment; its helper (the SQLite writer) must then exit by itself."""
    before, old = set(os.listdir(index / VERSIONS)), current_version(index)
    command = _cli_build(source, index)
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, start_new_session=True)
    while not due(index, before, old) and process.poll() is None:
        time.sleep(0.001)
    time.sleep(float(rng.uniform(0, 0.005)))
    process.send_signal(signal.SIGKILL)
    process.wait()
    # the orphaned writer notices within a second (its queue poll) plus one batch of inserts
    assert group_ends(process.pid, within=60.0), "the killed build's writer is still running"


def _published(index: Path, markers: dict[str, str]) -> tuple[str | None, int, set[str]]:
    """The published version, its entry count, and which lists' marker hashes it matches."""
    matcher = Matcher.open(index)
    found = {n for n, h in markers.items() if matcher.lookup({"pdq": h}, thresholds={"pdq": 0})}
    return current_version(index), index_info(index)["entries"], found


def test_a_build_killed_in_any_phase_publishes_exactly_the_old_or_the_new_index(
    tmp_path: Path,
) -> None:
    lists = {
        name: _pdq_list(tmp_path / f"{name}.csv", 3000 + 7 * n, n) for n, name in enumerate("AB")
    }
    markers = {name: marker for name, (_, marker) in lists.items()}
    index = tmp_path / "idx"
    build_index([ListSource(lists["A"][0])], index)
    rng = np.random.default_rng(5)
    outcomes = []
    for phase, due in KILL_MOMENTS.items():
        old = _published(index, markers)
        target = "B" if old[2] == {"A"} else "A"  # alternate, so a finished build changes it
        _kill_build_when(due, lists[target][0], index, rng)
        assert verify_index(index) == [], phase
        now = _published(index, markers)  # Matcher.open works too
        if now[0] == old[0]:
            assert now == old, phase
        else:
            assert now[1:] == (3000 + 7 * "AB".index(target), {target}), phase
        outcomes.append("old" if now[0] == old[0] else "new")
    assert outcomes[0] == "old" and outcomes[-1] == "new", outcomes
    build_index([ListSource(lists["A"][0])], index)  # the next build clears what kills left
    assert not list((index / VERSIONS).glob(".tmp-*")) and not (index / f"{CURRENT}.tmp").exists()
    assert verify_index(index) == []


FILE_SIZE_LIMITED = """
import resource, runpy, signal, sys
limit = int(sys.argv.pop(1))
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit then fails with EFBIG
resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
sys.argv[0] = "hashmatch"
runpy.run_module("hashmatch.cli", run_name="__main__")
"""


def _snapshot(index: Path) -> dict[str, str]:
    """Every path under the index with its content's SHA-256 (directories as ``/``)."""
    return {
        str(path.relative_to(index)): "/"
        if path.is_dir()
        else hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(index.rglob("*"))
    }


@pytest.mark.parametrize("failing", [METADATA, "pdq.codes"])
def test_a_build_that_runs_out_of_space_fails_cleanly_and_leaves_the_index(
    tmp_path: Path, failing: str
) -> None:
    old_list, old_marker = _pdq_list(tmp_path / "old.csv", 50, 1)
    new_list, _ = _pdq_list(tmp_path / "new.csv", 4000, 2)
    reference = build_index([ListSource(new_list)], tmp_path / "reference")
    sizes = {
        p.name: p.stat().st_size
        for p in (tmp_path / "reference" / VERSIONS / reference.version).iterdir()
    }
    assert sizes[METADATA] < sizes["pdq.codes"]  # the database is written first
    limit = (
        sizes[METADATA] // 2 if failing == METADATA else (sizes[METADATA] + sizes["pdq.codes"]) // 2
    )
    index = tmp_path / "idx"
    build_index([ListSource(old_list)], index)
    before = _snapshot(index)
    command = _cli_build(new_list, index, "-c", FILE_SIZE_LIMITED, str(limit))
    result = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert result.returncode == 2, result.stderr
    assert re.search(rf"^error: .*{re.escape(failing)}", result.stderr), result.stderr
    assert "Traceback" not in result.stderr
    assert _snapshot(index) == before  # no staging directory, no temporary file
    assert verify_index(index) == []
    assert Matcher.open(index).lookup({"pdq": old_marker}, thresholds={"pdq": 0})


def test_a_publish_that_fails_leaves_no_new_version_behind(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    index = tmp_path / "idx"
    build_index([ListSource(_pdq_list(tmp_path / "old.csv", 50, 1)[0])], index)
    before = _snapshot(index)

    def disk_full(*_: object) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "replace", disk_full)  # the rename that switches CURRENT
    with pytest.raises(IndexBuildError, match=r"publishing version .* failed"):
        build_index([ListSource(_pdq_list(tmp_path / "new.csv", 60, 2)[0])], index)
    monkeypatch.undo()
    assert _snapshot(index) == before
    assert verify_index(index) == []
