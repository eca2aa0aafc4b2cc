"""First use under concurrency: sixteen threads make their first calls at the same moment.

Everything hashmatch initialises lazily (the algorithm registry, the index API behind
``hashmatch.Matcher``, tables built on first use, imports made inside functions) must be safe
when an upload service's thread pool makes its first calls together. Each run is a fresh
interpreter, since only the first calls in a process can race; the threads start together
through a barrier, and every call's answer is checked, not only the absence of exceptions.
"""

from __future__ import annotations

import json
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

import pytest

from hashmatch import BuildOptions, ListSource, build_index, hash_image
from hashmatch.fixtures.hashlists import SyntheticEntry, random_codes, write_list
from hashmatch.fixtures.hostile import encode
from hashmatch.fixtures.images import synthetic_photo

THREADS = 16
RUNS = 20
CALLS_PER_THREAD = 5
FILLER = 2000

# The child makes no hashmatch call before the barrier: the threads race on the lazy import
# of the index API first, then (after one of them opened the shared matcher in the barrier's
# action) on their first lookup, match and hash_image calls.
CHILD = r"""
import json, sys, threading, traceback

import hashmatch

index, flat_index, jpeg_path, expected_path = sys.argv[1:5]
threads, calls = int(sys.argv[5]), int(sys.argv[6])
jpeg = open(jpeg_path, "rb").read()
expected = json.load(open(expected_path))
shared = {}
errors = []


def open_shared():
    shared["mih"] = hashmatch.Matcher.open(index)
    shared["flat"] = hashmatch.Matcher.open(flat_index)


imported = threading.Barrier(threads)
opened = threading.Barrier(threads, action=open_shared)


def check(what, got, wanted):
    if got != wanted:
        errors.append(f"{what}: got {got!r}, wanted {wanted!r}")


def work(number):
    try:
        imported.wait()
        hashmatch.Matcher, hashmatch.MatchResult, hashmatch.Match  # the lazy index API
        opened.wait()
        matcher = shared["mih" if number % 2 else "flat"]
        for _ in range(calls):
            found = matcher.lookup({"pdq": expected["pdq"], "phash": expected["phash"]})
            check("lookup", sorted([m.algorithm, m.entry_id, m.distance] for m in found),
                  [["pdq", "known", 0], ["phash", "known", 0]])
            result = matcher.match(jpeg)
            check("match status", result.status, "match")
            check("match entries", sorted({m.entry_id for m in result.matches}), ["known"])
            hashes = hashmatch.hash_image(jpeg, ("pdq", "phash", "dhash", "whash", "md5"),
                                          dihedral=True)
            check("hash_image", {name: h.hex for name, h in hashes.items()}, expected["all"])
    except BaseException as exc:
        errors.append("".join(traceback.format_exception_only(type(exc), exc)).strip())


pool = [threading.Thread(target=work, args=(n,)) for n in range(threads)]
for thread in pool:
    thread.start()
for thread in pool:
    thread.join(timeout=600)
alive = sum(thread.is_alive() for thread in pool)
print(json.dumps({"errors": errors, "alive": alive}))
"""


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    """Two 2,000-entry indexes (multi-index and flat search) holding one known image's
    PDQ and phash, the image as a JPEG, and the hashes the child must compute."""
    root = tmp_path_factory.mktemp("first-use")
    jpeg = encode(synthetic_photo(77, (640, 480)), "JPEG", quality=88)
    (root / "known.jpg").write_bytes(jpeg)
    hashes = hash_image(jpeg, ("pdq", "phash", "dhash", "whash", "md5"), dihedral=True)
    entries = [
        SyntheticEntry("pdq", code.tobytes().hex(), f"filler-{n}", "", "filler")
        for n, code in enumerate(random_codes(FILLER, seed=7))
    ]
    entries += [
        SyntheticEntry("pdq", hashes["pdq"].hex, "known", "", "known"),
        SyntheticEntry("phash", hashes["phash"].hex, "known", "", "known"),
    ]
    source = ListSource(write_list(root / "known.csv", entries, "csv"))
    build_index([source], root / "mih", BuildOptions(search="mih"))
    build_index([source], root / "flat", BuildOptions(search="flat"))
    expected = {
        "pdq": hashes["pdq"].hex,
        "phash": hashes["phash"].hex,
        "all": {name: h.hex for name, h in hashes.items()},
    }
    (root / "expected.json").write_text(json.dumps(expected))
    return [
        str(root / "mih"),
        str(root / "flat"),
        str(root / "known.jpg"),
        str(root / "expected.json"),
    ]


def _run_child(arguments: list[str]) -> dict:
    done = subprocess.run(
        [sys.executable, "-c", CHILD, *arguments, str(THREADS), str(CALLS_PER_THREAD)],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_sixteen_threads_making_their_first_calls_together_all_get_right_answers(world) -> None:
    # two children at a time: each is mostly import and start-up, and the machine has 2 cores
    with ThreadPoolExecutor(2) as pool:
        outcomes = list(pool.map(_run_child, [world] * RUNS))
    problems = [
        f"run {run}: {outcome['alive']} threads hung; {outcome['errors'][:3]}"
        for run, outcome in enumerate(outcomes)
        if outcome["errors"] or outcome["alive"]
    ]
    assert not problems, "\n".join(problems)
