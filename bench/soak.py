"""Soak test: continuous matching while the index is rebuilt and reloaded underneath it.

    python bench/soak.py --minutes 3 [--threads 3] [--pool-workers 2] [--codes 100000]
                         [--rebuild-every 10] [--report-every 10] [--max-growth-mib 32]

Writes two hash lists, each ``--codes`` random PDQ codes plus the PDQ of a few known images
(list ``A`` and list ``B``), and publishes them alternately every ``--rebuild-every`` seconds
from a child process, as a separate rebuild job would; one ``Matcher`` (``reload_interval=1``)
follows them. Meanwhile ``--threads`` threads call ``match(jpeg_bytes)`` (re-encoded known
images must match their entry, unrelated ones must not) and ``lookup`` (a known PDQ must find
exactly its entry), and with ``--pool-workers`` a ``match_many`` pool matches image files.

Every ``--report-every`` seconds it prints: elapsed time, queries done, queries/s since the last
row, errors (exceptions, wrong verdicts, failed builds), builds published, index versions that
answered queries, the version in use, RSS (VmRSS) and open file descriptors. At the end, the
verdict: after ``--warmup`` seconds, the median RSS of the last third of the rows against the
first third; exit status 1 if it grew by more than ``--max-growth-mib``, or if any query, build
or reload failed. The default bound, 32 MiB, is far above the drift seen on the benchmark
machine (under 1 MiB after warm-up) and below what keeping old versions would cost (each maps
3+ MiB of codes that every flat scan touches; a 3-minute run publishes about 18). Pool workers
are separate processes: their memory is not in this RSS.
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")

import argparse
import itertools
import multiprocessing
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from hashmatch import ListSource, Match, Matcher, MatchResult, build_index, hash_image
from hashmatch.fixtures.hashlists import random_codes
from hashmatch.fixtures.hostile import encode
from hashmatch.fixtures.images import synthetic_photo

KNOWN_IMAGES = 8
UNRELATED_IMAGES = 4


@dataclass(frozen=True)
class Case:
    """One query image and the entry it must match (None: it must not match)."""

    name: str
    jpeg: bytes
    path: Path
    expected: str | None


@dataclass
class Tally:
    """What the threads did, shared between them (updated under ``lock``)."""

    queries: int = 0
    errors: int = 0
    builds: int = 0
    versions: set[str] = field(default_factory=set)
    """Index versions that answered queries."""
    first_errors: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def record(self, problem: str | None, version: str | None = None) -> None:
        """One query done; ``problem`` says what went wrong, if anything."""
        with self.lock:
            self.queries += 1
            if version is not None:
                self.versions.add(version)
            if problem is not None:
                self._fail(problem)

    def build_done(self, problem: str | None) -> None:
        with self.lock:
            self.builds += problem is None
            if problem is not None:
                self._fail(problem)

    def _fail(self, problem: str) -> None:
        self.errors += 1
        if len(self.first_errors) < 5:
            self.first_errors.append(problem)


@dataclass(frozen=True)
class Sample:
    seconds: float
    queries: int
    errors: int
    builds: int
    versions: int
    version: str
    rss_mib: float
    descriptors: int


def rss_mib() -> float:
    """This process's resident set (VmRSS), in MiB."""
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def open_descriptors() -> int:
    """Open file descriptors: leaked SQLite connections or mappings would show here first."""
    return len(os.listdir("/proc/self/fd"))


def prepare(folder: Path, codes: int) -> tuple[list[Path], list[Case], dict[str, str]]:
    """The two lists, the query cases (also written as files for the pool), and the known
    images' PDQ by entry id."""
    uploads = folder / "uploads"
    uploads.mkdir()
    cases, known_pdq = [], {}
    for number in range(KNOWN_IMAGES + UNRELATED_IMAGES):
        image = synthetic_photo(100 + number, (640, 480))
        known = number < KNOWN_IMAGES
        entry = f"known-{number}" if known else None
        if entry is not None:
            known_pdq[entry] = hash_image(image, ("pdq",))["pdq"].hex
        jpeg = encode(image, "JPEG", quality=80)  # an upload is a re-encoded copy
        path = uploads / f"{number:02d}.jpg"
        path.write_bytes(jpeg)
        cases.append(Case(path.stem, jpeg, path, entry))
    lists = [
        write_list(folder / f"{name}.csv", name, codes, seed, known_pdq)
        for seed, name in enumerate("AB")
    ]
    return lists, cases, known_pdq


def write_list(path: Path, name: str, count: int, seed: int, known: dict[str, str]) -> Path:
    with open(path, "w", encoding="ascii") as file:
        file.write("algorithm,hash,id,label,list\n")
        file.writelines(f"pdq,{pdq},{entry},known,{name}\n" for entry, pdq in known.items())
        rows = random_codes(count, seed=seed)
        file.writelines(f"pdq,{row.tobytes().hex()},r{i},,{name}\n" for i, row in enumerate(rows))
    return path


def build_version(source: Path, index: Path) -> None:
    build_index([ListSource(source)], index)


def build_in_child(source: Path, index: Path) -> None:
    """Publish a version from another process, as a scheduled rebuild job would."""
    child = multiprocessing.get_context("spawn").Process(target=build_version, args=(source, index))
    child.start()
    child.join()
    if child.exitcode != 0:
        raise RuntimeError(f"index build from {source.name} failed (exit {child.exitcode})")


def rebuild_loop(
    lists: list[Path], index: Path, every: float, tally: Tally, stop: threading.Event
) -> None:
    """Publish the lists alternately, one build starting every ``every`` seconds."""
    for source in itertools.cycle(lists):
        started = time.monotonic()
        if stop.is_set():
            return
        try:
            build_in_child(source, index)
            tally.build_done(None)
        except Exception as exc:
            tally.build_done(f"build: {exc}")
        stop.wait(max(0.0, every - (time.monotonic() - started)))


def verdict_problem(matches: list[Match], expected: str | None) -> str | None:
    """What is wrong with a result's matches (all from one list, the one entry), or None."""
    entries = {m.entry_id for m in matches}
    lists = {m.list for m in matches}
    if expected is None:
        return f"unexpected matches {sorted(entries)}" if entries else None
    if entries != {expected} or len(lists) != 1:
        return f"wanted {expected}, got {sorted(entries)} from lists {sorted(lists)}"
    return None


def result_problem(result: MatchResult, case: Case) -> str | None:
    """What is wrong with the verdict on ``case``, or None."""
    if result.status == "error" or result.index_version is None:
        return f"{case.name}: {result.status} {result.error}"
    problem = verdict_problem(result.matches, case.expected)
    return f"{case.name}: {problem}" if problem else None


def lookup_problem(found: list[Match], entry: str) -> str | None:
    """A known PDQ must find exactly its own entry, at distance 0."""
    if [(m.entry_id, m.distance) for m in found] != [(entry, 0)]:
        return f"lookup {entry}: {[(m.entry_id, m.distance) for m in found]}"
    return None


def query_loop(
    matcher: Matcher,
    cases: list[Case],
    known_pdq: dict[str, str],
    tally: Tally,
    stop: threading.Event,
) -> None:
    """Alternate image matches and hash lookups until ``stop``; nothing escapes uncounted."""
    known = list(known_pdq.items())
    for turn in itertools.count():
        if stop.is_set():
            return
        case, (entry, pdq) = cases[turn % len(cases)], known[turn % len(known)]
        try:
            result = matcher.match(case.jpeg)
            tally.record(result_problem(result, case), result.index_version)
            tally.record(lookup_problem(matcher.lookup({"pdq": pdq}), entry))
        except Exception as exc:
            tally.record(f"{type(exc).__name__}: {exc}")


def endless_paths(cases: list[Case], stop: threading.Event) -> Iterator[Path]:
    for case in itertools.cycle(cases):
        if stop.is_set():
            return
        yield case.path


def pool_loop(
    matcher: Matcher, cases: list[Case], workers: int, tally: Tally, stop: threading.Event
) -> None:
    """One long ``match_many`` over the image files, hashed by ``workers`` processes."""
    expected = {str(case.path): case for case in cases}
    try:
        for result in matcher.match_many(endless_paths(cases, stop), workers=workers):
            problem = result_problem(result, expected[str(result.source)])
            tally.record(problem and f"pool {problem}", result.index_version)
    except Exception as exc:
        tally.record(f"pool: {type(exc).__name__}: {exc}")


def print_row(sample: Sample, previous: Sample | None) -> None:
    if previous is None:
        print(
            f"{'time s':>7} {'queries':>9} {'q/s':>7} {'errors':>6} {'builds':>6}"
            f" {'served':>6} {'index version':<30} {'RSS MiB':>8} {'fds':>4}"
        )
        previous = Sample(0.0, 0, 0, 0, 0, "", 0.0, 0)
    rate = (sample.queries - previous.queries) / (sample.seconds - previous.seconds)
    print(
        f"{sample.seconds:7.0f} {sample.queries:9d} {rate:7.1f} {sample.errors:6d}"
        f" {sample.builds:6d} {sample.versions:6d} {sample.version:<30}"
        f" {sample.rss_mib:8.1f} {sample.descriptors:4d}",
        flush=True,
    )


def rss_growth(samples: list[Sample], warmup: float) -> tuple[float, float, float] | None:
    """Median RSS of the first and last thirds of the rows after warm-up, and the growth."""
    steady = [s.rss_mib for s in samples if s.seconds >= warmup]
    third = len(steady) // 3
    if third == 0:
        return None
    first, last = statistics.median(steady[:third]), statistics.median(steady[-third:])
    return first, last, last - first


def soak(args: argparse.Namespace, folder: Path) -> int:
    lists, cases, known_pdq = prepare(folder, args.codes)
    index = folder / "index"
    build_in_child(lists[-1], index)
    matcher = Matcher.open(index, reload_interval=1.0)
    stop, tally = threading.Event(), Tally()
    workers = [
        threading.Thread(target=query_loop, args=(matcher, cases, known_pdq, tally, stop))
        for _ in range(args.threads)
    ]
    if args.pool_workers:
        pool_args = (matcher, cases, args.pool_workers, tally, stop)
        workers.append(threading.Thread(target=pool_loop, args=pool_args))
    rebuild_args = (lists, index, args.rebuild_every, tally, stop)
    rebuilder = threading.Thread(target=rebuild_loop, args=rebuild_args)
    started = time.monotonic()
    for thread in [*workers, rebuilder]:
        thread.start()
    samples: list[Sample] = []
    try:
        while (elapsed := time.monotonic() - started) < args.minutes * 60:
            time.sleep(min(args.report_every, args.minutes * 60 - elapsed))
            samples.append(take_sample(started, tally, matcher))
            print_row(samples[-1], samples[-2] if len(samples) > 1 else None)
    finally:
        stop.set()
        for thread in workers:
            thread.join()
        rebuilder.join()
        matcher.close()
    if matcher.last_reload_error is not None:
        tally.build_done(f"reload: {matcher.last_reload_error}")
    return report(args, samples, tally)


def take_sample(started: float, tally: Tally, matcher: Matcher) -> Sample:
    with tally.lock:
        counts = (tally.queries, tally.errors, tally.builds, len(tally.versions))
    seconds = time.monotonic() - started
    return Sample(seconds, *counts, matcher.version, rss_mib(), open_descriptors())


def report(args: argparse.Namespace, samples: list[Sample], tally: Tally) -> int:
    """Print the verdict; the exit status (0: no errors and RSS growth within bound)."""
    end = samples[-1]
    print(
        f"\n{end.seconds:.0f} s, {tally.queries} queries ({tally.queries / end.seconds:.1f}/s),"
        f" {tally.errors} errors, {end.builds} builds, {end.versions} versions served;"
        f" RSS {samples[0].rss_mib:.1f} MiB at the first row, {end.rss_mib:.1f} MiB at the last"
    )
    for problem in tally.first_errors:
        print(f"  error: {problem}")
    growth = rss_growth(samples, args.warmup)
    if growth is None:
        print("RSS: too few rows after warm-up for a verdict (run longer)")
        return 1
    first, last, grown = growth
    within = grown <= args.max_growth_mib
    print(
        f"RSS after {args.warmup:.0f} s warm-up: median {first:.1f} MiB (first third) ->"
        f" {last:.1f} MiB (last third), growth {grown:+.1f} MiB; bound"
        f" {args.max_growth_mib:.0f} MiB: {'PASS' if within else 'FAIL'}"
    )
    return 0 if within and tally.errors == 0 else 1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=3.0)
    parser.add_argument("--threads", type=int, default=3, help="threads calling match/lookup")
    parser.add_argument("--pool-workers", type=int, default=0, help="match_many processes")
    parser.add_argument("--codes", type=int, default=100_000, help="random PDQ codes per list")
    parser.add_argument("--rebuild-every", type=float, default=10.0, help="seconds")
    parser.add_argument("--report-every", type=float, default=10.0, help="seconds")
    parser.add_argument(
        "--warmup", type=float, default=30.0, help="seconds left out of the verdict"
    )
    parser.add_argument("--max-growth-mib", type=float, default=32.0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="hashmatch-soak-") as folder:
        sys.exit(soak(args, Path(folder)))


if __name__ == "__main__":
    main()
