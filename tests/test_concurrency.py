"""Matcher under load: threads query while the index is rebuilt and reloaded underneath them.

Every version carries its own number in its marker entries, at a row that moves from version
to version, so a result that mixed two versions (codes of one, entries of another) or that
claims a version it did not run on shows up as a wrong entry id or label.
"""

from __future__ import annotations

import gc
import os
import threading
import time
import weakref
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from hashmatch import BuildOptions, ListSource, Matcher, build_index, hash_image
from hashmatch.fixtures.hashlists import SyntheticEntry, random_codes, write_list
from hashmatch.fixtures.hostile import encode
from hashmatch.fixtures.images import synthetic_photo

THREADS = 8
RELOADS = 20
FILLER = 1000
RSS_TOLERANCE_MIB = 48
"""Allocator noise (per-thread malloc arenas, Pillow buffers) stays well under this; 20 leaked
versions with their connections would not."""

pytestmark = pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="needs /proc")


@dataclass(frozen=True)
class Fixture:
    """The images the threads query and the hashes their markers are built from."""

    marked_jpeg: bytes  # in every version: pdq (and phash in even versions) under "v{k}"
    odd_jpeg: bytes  # in odd versions only, under "odd{k}"
    unrelated_jpeg: bytes  # in none
    marked_pdq: str
    marked_phash: str
    odd_pdq: str


@dataclass
class Observations:
    """What the query threads saw; appended to from many threads (list.append is atomic)."""

    versions: dict[str, int] = field(default_factory=dict)
    """Version name -> version number, filled in by the main thread before each reload."""
    ran_on: list[int] = field(default_factory=list)
    """The version number of every query that came back right."""
    errors: list[str] = field(default_factory=list)


@pytest.fixture(scope="module")
def images() -> Fixture:
    marked, odd, unrelated = (synthetic_photo(seed, (320, 240)) for seed in (41, 42, 43))
    marked_hashes = hash_image(marked, ("pdq", "phash"))
    return Fixture(
        encode(marked, "JPEG", quality=85),
        encode(odd, "JPEG", quality=85),
        encode(unrelated, "JPEG", quality=85),
        marked_hashes["pdq"].hex,
        marked_hashes["phash"].hex,
        hash_image(odd, ("pdq",))["pdq"].hex,
    )


def publish(folder: Path, images: Fixture, number: int) -> str:
    """Build and publish version ``number``; returns its name.

    Even versions hold pdq and phash and search by multi-index hashing, odd ones pdq only with
    the flat scan; the marker sits at a different row each time, among fresh random codes.
    """
    filler = [
        SyntheticEntry("pdq", code.tobytes().hex(), f"filler-{i}", "", "filler")
        for i, code in enumerate(random_codes(FILLER, seed=number))
    ]
    markers = [SyntheticEntry("pdq", images.marked_pdq, f"v{number}", str(number), "markers")]
    if number % 2 == 0:
        markers.append(
            SyntheticEntry("phash", images.marked_phash, f"v{number}", str(number), "markers")
        )
    else:
        markers.append(SyntheticEntry("pdq", images.odd_pdq, f"odd{number}", str(number), "odd"))
    position = number * 149 % FILLER
    entries = filler[:position] + markers + filler[position:]
    source = write_list(folder / f"list-{number}.csv", entries, "csv")
    options = BuildOptions(search="mih" if number % 2 == 0 else "flat")
    return build_index([ListSource(source)], folder / "index", options).version


def expected_matches(query: str, number: int) -> set[tuple[str, str | None, str | None]]:
    """``(algorithm, entry id, label)`` that ``query`` must match in version ``number``."""
    label = str(number)
    if query == "marked":
        found = {("pdq", f"v{number}", label)}
        return found | {("phash", f"v{number}", label)} if number % 2 == 0 else found
    if query == "odd":
        return {("pdq", f"odd{number}", label)} if number % 2 else set()
    return set()


def check_match(matcher: Matcher, seen: Observations, query: str, jpeg: bytes) -> str | None:
    """Match once; what is wrong with the result, or None."""
    before = seen.versions[matcher.version]
    result = matcher.match(jpeg)
    after = seen.versions[matcher.version]
    number = seen.versions.get(result.index_version or "")
    if number is None or not before <= number <= after:
        return f"{query}: ran on {result.index_version}, current was v{before}..v{after}"
    found = {(m.algorithm, m.entry_id, m.label) for m in result.matches}
    wanted = expected_matches(query, number)
    if found != wanted or result.status != ("match" if wanted else "no_match"):
        return f"{query} on v{number}: {result.status} {sorted(found)}, wanted {sorted(wanted)}"
    seen.ran_on.append(number)
    return None


def check_lookup(matcher: Matcher, seen: Observations, marked_pdq: str) -> str | None:
    """Look the marker's PDQ up once: exactly one version's marker, at distance 0, from a
    version that was current at some moment during the call."""
    before = seen.versions[matcher.version]
    found = matcher.lookup({"pdq": marked_pdq})
    after = seen.versions[matcher.version]
    entries = [(m.entry_id, m.label, m.distance, m.hash) for m in found]
    numbers = [int(m.label) for m in found if m.label and m.label.isdigit()]
    if len(found) != 1 or not numbers or not before <= numbers[0] <= after:
        return f"lookup during v{before}..v{after}: {entries}"
    number = numbers[0]
    if entries != [(f"v{number}", str(number), 0, marked_pdq)]:
        return f"lookup on v{number}: {entries}"
    seen.ran_on.append(number)
    return None


def query_loop(
    matcher: Matcher, images: Fixture, seen: Observations, stop: threading.Event
) -> None:
    """Cycle through the queries until ``stop``; every failure or exception is recorded."""
    queries: list[Callable[[], str | None]] = [
        lambda: check_match(matcher, seen, "marked", images.marked_jpeg),
        lambda: check_lookup(matcher, seen, images.marked_pdq),
        lambda: check_match(matcher, seen, "odd", images.odd_jpeg),
        lambda: check_match(matcher, seen, "unrelated", images.unrelated_jpeg),
    ]
    done = 0
    while not stop.is_set():
        try:
            problem = queries[done % len(queries)]()
        except BaseException as exc:
            seen.errors.append(f"{type(exc).__name__}: {exc}")
            return
        done += 1
        if problem is not None:
            seen.errors.append(problem)


@pytest.fixture
def no_cycle_collector() -> Iterator[None]:
    """Old versions must be released by reference counting alone, as soon as the last call
    on them returns, not whenever the cycle collector happens to run."""
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


def rss_mib() -> float:
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS in /proc/self/status")


def files_in_use(index: Path) -> set[str]:
    """Version directories this process has open, as descriptors or memory mappings."""
    versions = str(index / "versions") + "/"
    targets = []
    for descriptor in os.listdir("/proc/self/fd"):
        try:
            targets.append(os.readlink(f"/proc/self/fd/{descriptor}"))
        except OSError:  # closed since listed
            continue
    with open("/proc/self/maps", encoding="utf-8") as maps:
        targets += [line.split(maxsplit=5)[-1] for line in maps if versions in line]
    return {t[len(versions) :].split("/")[0] for t in targets if t.startswith(versions)}


def wait_for_queries(seen: Observations, number: int, count: int, timeout: float = 30) -> None:
    """Until ``count`` queries have come back from version ``number`` (or one went wrong)."""
    deadline = time.monotonic() + timeout
    while seen.ran_on.count(number) < count and not seen.errors:
        if time.monotonic() > deadline:
            raise AssertionError(f"fewer than {count} queries on v{number} in {timeout} s")
        time.sleep(0.01)


def test_queries_stay_consistent_while_the_index_is_rebuilt_and_reloaded(
    tmp_path: Path, images: Fixture, no_cycle_collector: None
) -> None:
    seen = Observations()
    seen.versions[publish(tmp_path, images, 0)] = 0
    matcher = Matcher.open(tmp_path / "index")
    stop = threading.Event()
    threads = [
        threading.Thread(target=query_loop, args=(matcher, images, seen, stop), daemon=True)
        for _ in range(THREADS)
    ]
    for thread in threads:
        thread.start()
    wait_for_queries(seen, 0, 4 * THREADS)  # every thread warmed up: connections, arenas, caches
    baseline = rss_mib()
    released = []
    try:
        for number in range(1, RELOADS + 1):
            seen.versions[publish(tmp_path, images, number)] = number
            released.append(weakref.ref(matcher._snapshot))
            assert matcher.reload() is True
            wait_for_queries(seen, number, THREADS)
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=30)
    current = matcher.version

    assert seen.errors == []
    assert not any(thread.is_alive() for thread in threads)
    assert len(seen.ran_on) >= RELOADS * THREADS
    assert [ref() is None for ref in released] == [True] * RELOADS
    assert files_in_use(tmp_path / "index") == {current}
    assert rss_mib() - baseline < RSS_TOLERANCE_MIB

    del matcher
    assert files_in_use(tmp_path / "index") == set()


def test_match_hashes_for_the_algorithms_of_the_version_it_searches(
    tmp_path: Path, images: Fixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A reload landing inside ``match`` must not mix versions: the image is hashed for the
    algorithms of the version it is searched in (here phash too), not of the newer one."""
    first = publish(tmp_path, images, 0)  # pdq and phash
    matcher = Matcher.open(tmp_path / "index")
    publish(tmp_path, images, 1)  # pdq only
    newer = Matcher.open(tmp_path / "index")._snapshot
    reads = iter([matcher._snapshot])  # the first read sees version 0, any later one version 1
    snapshot = property(lambda self: next(reads, newer))
    monkeypatch.setattr(Matcher, "_snapshot", snapshot, raising=False)
    result = matcher.match(images.marked_jpeg)
    assert result.index_version == first and set(result.hashes) == {"pdq", "phash"}
    assert {(m.algorithm, m.entry_id) for m in result.matches} == {("pdq", "v0"), ("phash", "v0")}


def test_a_matcher_keeps_working_after_its_version_is_deleted(tmp_path: Path, images) -> None:
    """A Matcher that is not reloaded outlives its version: builds keep only the newest three."""
    publish(tmp_path, images, 0)
    matcher = Matcher.open(tmp_path / "index")
    first = matcher.version
    for number in range(1, 5):
        publish(tmp_path, images, number)
    assert not (tmp_path / "index" / "versions" / first).exists()
    results: list[object] = []

    def query() -> None:  # a thread that has never queried this matcher
        try:
            results.append(matcher.match(images.marked_jpeg))
        except BaseException as exc:
            results.append(exc)

    thread = threading.Thread(target=query)
    thread.start()
    thread.join()
    (result,) = results
    assert getattr(result, "status", result) == "match"
    assert {m.entry_id for m in result.matches} == {"v0"}  # type: ignore[attr-defined]
