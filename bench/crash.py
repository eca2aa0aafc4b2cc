"""Crash safety: SIGKILL ``hashmatch index build`` at random moments, then check the index.

    python bench/crash.py [--trials 20] [--entries 50000] [--seed 1]

Two synthetic PDQ lists alternate, so every build would replace the published version. Three
uninterrupted builds first measure when each phase ends, watched from outside the process:
``startup`` (imports, lock) until the staging directory appears, ``ingest`` (parse, SQLite,
merge) until its first array file, ``write`` until its manifest, ``publish`` (read back, diff,
rename, switch ``CURRENT``) until ``CURRENT`` names the new version, ``exit`` (old versions
removed, report, interpreter exit) until the process ends. Then every trial starts a build of
the other list and kills it: odd trials at a uniform moment of the whole measured duration,
even trials at a uniform moment of the window that starts when the staging manifest appears
(publishing lasts milliseconds, so the whole-duration trials would rarely hit it).

After every kill: ``verify_index`` finds nothing, the published index is exactly the old one or
exactly the new one (version name, entry count, and a hash only in one list), ``Matcher.open``
works, and the killed build's SQLite writer process exits by itself. A last, uninterrupted
build must leave no staging directory behind. Prints a table; exits 1 on any failure.
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from hashmatch import ListSource, Matcher, build_index
from hashmatch.fixtures.hashlists import SyntheticEntry, random_codes, write_list
from hashmatch.fixtures.processes import group_ends
from hashmatch.index.artifact import CURRENT, MANIFEST, VERSIONS, current_version
from hashmatch.index.inspect import index_info, verify_index

PHASES = ("startup", "ingest", "write", "publish", "exit")
STAGING = ".tmp-"
POLL_SECONDS = 0.001
ORPHAN_GRACE_SECONDS = 3.0


@dataclass(frozen=True)
class HashList:
    path: Path
    entries: int
    marker: str
    """A PDQ hash in this list and not in the other."""


@dataclass(frozen=True)
class Timeline:
    """Median seconds from launch at which each phase after ``startup`` began, and the end."""

    starts: tuple[float, float, float, float]
    end: float

    def phase_at(self, seconds: float) -> str:
        if seconds >= self.end:
            return "after exit"
        return PHASES[sum(seconds >= start for start in self.starts)]


@dataclass
class Trial:
    number: int
    target: str
    kill_at: float
    estimated_phase: str
    on_disk: str
    outcome: str = "-"
    verify: str = "-"
    staging_left: int = 0
    failure: str | None = None

    def fail(self, message: str) -> None:
        self.failure = message if self.failure is None else f"{self.failure}; {message}"


def make_lists(folder: Path, entries: int, seed: int) -> dict[str, HashList]:
    """Lists A and B of different sizes with disjoint random codes."""
    lists = {}
    for offset, name in enumerate("AB"):
        count = entries + 7 * offset
        codes = random_codes(count, seed=seed * 2 + offset)
        rows = [SyntheticEntry("pdq", c.tobytes().hex(), f"{name}{i}") for i, c in enumerate(codes)]
        path = write_list(folder / f"list-{name}.csv", rows, "csv")
        lists[name] = HashList(path, count, codes[0].tobytes().hex())
    return lists


def launch(source: Path, index: Path) -> subprocess.Popen[bytes]:
    """The real command line, in its own session (and process group) so its helpers can be
    found after it is killed."""
    command = [sys.executable, "-m", "hashmatch.cli", "index", "build", str(source)]
    return subprocess.Popen(
        [*command, "-o", str(index), "-q"], stdout=subprocess.DEVNULL, start_new_session=True
    )


def staging_dirs(index: Path) -> set[str]:
    return {name for name in os.listdir(index / VERSIONS) if name.startswith(STAGING)}


def stage_on_disk(index: Path, before: set[str], published: str | None) -> int:
    """How far the build got, as an index into PHASES, judged from the files it has written."""
    if current_version(index) != published:
        return 4
    names = set(os.listdir(index / VERSIONS)) - before
    if any(not name.startswith(STAGING) for name in names):
        return 3  # renamed into place, CURRENT not switched yet
    reached = 0
    for name in names:
        try:
            files = os.listdir(index / VERSIONS / name)
        except FileNotFoundError:  # renamed between the two listings
            return 3
        arrays = any(f.endswith(".codes") for f in files)
        reached = max(reached, 3 if MANIFEST in files else 2 if arrays else 1)
    return reached


def describe_on_disk(index: Path, before: set[str], published: str | None) -> str:
    """The phase the files show; ``publish (renamed)`` is the narrowest window: the version
    is in place and ``CURRENT`` still names the old one."""
    stage = stage_on_disk(index, before, published)
    names = set(os.listdir(index / VERSIONS)) - before
    renamed = stage == 3 and any(not name.startswith(STAGING) for name in names)
    return PHASES[stage] + (" (renamed)" if renamed else "")


def published_list(index: Path, lists: dict[str, HashList]) -> str | None:
    """Which list the published index was built from, judged by its entry count."""
    entries = index_info(index)["entries"]
    return next((name for name, item in lists.items() if item.entries == entries), None)


def measure_timeline(index: Path, lists: dict[str, HashList], runs: int) -> Timeline:
    """Phase boundaries of uninterrupted builds, seen by polling the index directory."""
    samples = []
    for _ in range(runs):
        target = other(published_list(index, lists))
        before, published = set(os.listdir(index / VERSIONS)), current_version(index)
        started = time.monotonic()
        process = launch(lists[target].path, index)
        seen = [0.0] * 4
        reached = 0
        while process.poll() is None:
            stage = stage_on_disk(index, before, published)
            now = time.monotonic() - started
            for step in range(reached, stage):
                seen[step] = now
            reached = max(reached, stage)
            time.sleep(POLL_SECONDS)
        end = time.monotonic() - started
        if process.returncode != 0:
            raise SystemExit(f"an uninterrupted build failed (exit {process.returncode})")
        samples.append([*(s or end for s in seen), end])
    medians = [statistics.median(column) for column in zip(*samples, strict=True)]
    return Timeline((medians[0], medians[1], medians[2], medians[3]), medians[4])


def other(name: str | None) -> str:
    return "B" if name == "A" else "A"


def run_trial(
    number: int,
    index: Path,
    lists: dict[str, HashList],
    timeline: Timeline,
    rng: np.random.Generator,
) -> Trial:
    """Build the other list, kill the build, and check what is published."""
    old_list, old_version = published_list(index, lists), current_version(index)
    target = other(old_list)
    before = set(os.listdir(index / VERSIONS))
    started = time.monotonic()
    process = launch(lists[target].path, index)
    if number % 2:
        estimate = wait_whole_build(process, started, timeline, rng)
    else:
        estimate = wait_near_publish(process, index, before, old_version, timeline, rng)
    killed_at = time.monotonic() - started
    running = process.poll() is None
    process.send_signal(signal.SIGKILL)  # does nothing if it has already been reaped
    process.wait()
    estimated_phase = timeline.phase_at(estimate) if running else "after exit"
    on_disk = describe_on_disk(index, before, old_version)
    trial = Trial(number, target, killed_at, estimated_phase, on_disk)
    orphans = wait_for_orphans(process.pid)
    if orphans:
        trial.fail(orphans)
    check_published(trial, index, lists, old_list, old_version)
    trial.staging_left = len(staging_dirs(index))
    return trial


def wait_whole_build(
    process: subprocess.Popen[bytes], started: float, timeline: Timeline, rng: np.random.Generator
) -> float:
    """Wait until a uniform moment of a whole build; returns that moment (from the launch)."""
    moment = float(rng.uniform(0, timeline.end))
    while time.monotonic() - started < moment and process.poll() is None:
        time.sleep(POLL_SECONDS)
    return moment


def wait_near_publish(
    process: subprocess.Popen[bytes],
    index: Path,
    before: set[str],
    published: str | None,
    timeline: Timeline,
    rng: np.random.Generator,
) -> float:
    """Wait for the staging manifest, then a uniform part of twice the publish phase; returns
    the moment in the measured timeline (startup time varies more than the build's end)."""
    while stage_on_disk(index, before, published) < 3 and process.poll() is None:
        time.sleep(POLL_SECONDS)
    publish_start, exit_start = timeline.starts[2], timeline.starts[3]
    delay = float(rng.uniform(0, 2 * (exit_start - publish_start)))
    time.sleep(delay)
    return publish_start + delay


def wait_for_orphans(group: int) -> str | None:
    """The killed build's helper (its SQLite writer) must notice and exit by itself."""
    if group_ends(group, within=ORPHAN_GRACE_SECONDS):
        return None
    return f"a helper of the killed build was still running after {ORPHAN_GRACE_SECONDS} s"


def check_published(
    trial: Trial,
    index: Path,
    lists: dict[str, HashList],
    old_list: str | None,
    old_version: str | None,
) -> None:
    """The published index must be exactly the old one or exactly the new one, and intact."""
    problems = verify_index(index)
    trial.verify = "ok" if not problems else "; ".join(problems)
    if problems:
        trial.fail("verify found problems")
        return
    try:
        matcher = Matcher.open(index)
    except Exception as exc:
        trial.fail(f"Matcher.open failed: {exc}")
        return
    found = {
        name: bool(matcher.lookup({"pdq": item.marker}, thresholds={"pdq": 0}))
        for name, item in lists.items()
    }
    now_list = published_list(index, lists)
    changed = current_version(index) != old_version
    if now_list is None:
        trial.fail("the published entry count matches neither list")
    elif found != {name: name == now_list for name in lists} or changed != (now_list != old_list):
        trial.fail(f"a mixed index: version changed {changed}, markers {found}")
    if trial.failure:
        return
    trial.outcome = "new" if changed else "old"


def final_build_cleans_up(index: Path, lists: dict[str, HashList]) -> list[str]:
    """An uninterrupted build after all the kills: no staging or pointer files may remain."""
    process = launch(lists[other(published_list(index, lists))].path, index)
    failures = (
        [] if process.wait() == 0 else [f"the final build failed (exit {process.returncode})"]
    )
    if staging_dirs(index) or (index / (CURRENT + ".tmp")).exists():
        failures.append(f"left behind after the final build: {sorted(staging_dirs(index))}")
    failures += [f"after the final build: {p}" for p in verify_index(index)]
    return failures


def print_table(trials: list[Trial]) -> None:
    print(
        f"{'trial':>5} {'build':>5} {'kill s':>7} {'phase (est.)':>12} {'on disk':>17}"
        f" {'outcome':>7} {'verify':>6} {'staging left':>12}"
    )
    for t in trials:
        print(
            f"{t.number:>5} {t.target:>5} {t.kill_at:>7.3f} {t.estimated_phase:>12}"
            f" {t.on_disk:>17} {t.outcome:>7} {t.verify:>6} {t.staging_left:>12}"
            + (f"  FAILED: {t.failure}" if t.failure else "")
        )


def print_summary(trials: list[Trial], timeline: Timeline, elapsed: float) -> None:
    def count(values: list[str]) -> str:
        return ", ".join(f"{v} {values.count(v)}" for v in dict.fromkeys(values))

    bounds = ", ".join(f"{p} {s:.3f}" for p, s in zip(PHASES[1:], timeline.starts, strict=True))
    print(f"\nuninterrupted build (median of 3): {bounds}, end {timeline.end:.3f} s")
    print("phase (est.): kill time against that median; on disk: what the files show after it")
    print(f"trials {len(trials)}; outcomes: {count([t.outcome for t in trials])}")
    print(f"phase (est.): {count([t.estimated_phase for t in trials])}")
    print(f"on disk: {count([t.on_disk for t in trials])}; {elapsed:.1f} s in all")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=20)
    parser.add_argument("--entries", type=int, default=50_000, help="entries per list")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    started = time.monotonic()
    rng = np.random.default_rng(args.seed)
    with tempfile.TemporaryDirectory(prefix="hashmatch-crash-") as work:
        folder = Path(work)
        lists = make_lists(folder, args.entries, args.seed)
        index = folder / "index"
        build_index([ListSource(lists["A"].path)], index)
        timeline = measure_timeline(index, lists, runs=3)
        trials = [run_trial(n, index, lists, timeline, rng) for n in range(1, args.trials + 1)]
        failures = [f"trial {t.number}: {t.failure}" for t in trials if t.failure]
        failures += final_build_cleans_up(index, lists)
    print_table(trials)
    print_summary(trials, timeline, time.monotonic() - started)
    for failure in failures:
        print(f"FAILED {failure}", file=sys.stderr)
    print("all checks passed" if not failures else f"{len(failures)} failures")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
