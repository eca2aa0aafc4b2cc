"""The long-lived worker pool a service hashes uploads in: futures from any thread, and a
crash or overrun costing only its own item."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from hashmatch.errors import WorkerError
from hashmatch.fixtures.faults import MARKERS_VARIABLE, misbehave_then_echo
from hashmatch.parallel import WorkerCrash
from hashmatch.worker_pool import WorkerPool

WAIT = 120.0
"""Bound on any one answer (they take well under a second; a hang fails, not blocks)."""


def crashed(item: str, crash: WorkerCrash) -> str:
    return f"crashed {item}: {'overran' if crash.overran else crash.causes}"


@pytest.fixture
def markers(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv(MARKERS_VARIABLE, str(tmp_path))
    return tmp_path


def test_items_from_many_threads_each_get_their_own_answer(markers: Path) -> None:
    with WorkerPool(misbehave_then_echo, workers=2, crashed=crashed) as pool:
        barrier = threading.Barrier(8)
        answers: dict[int, list[str]] = {}

        def caller(number: int) -> None:
            barrier.wait()
            futures = [pool.submit(f"item-{number}-{i}") for i in range(10)]
            answers[number] = [future.result(timeout=WAIT) for future in futures]

        threads = [threading.Thread(target=caller, args=(n,)) for n in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(WAIT)
    assert answers == {n: [f"item-{n}-{i}" for i in range(10)] for n in range(8)}


def test_a_crashing_item_costs_only_itself_and_the_pool_never_gives_up(markers: Path) -> None:
    with WorkerPool(misbehave_then_echo, workers=2, crashed=crashed) as pool:
        # far more crashes in a row than a batch pool would tolerate
        crashes = [pool.submit(f"crash-{n}") for n in range(12)]
        fine = pool.submit("fine")
        assert fine.result(timeout=WAIT) == "fine"
        results = [future.result(timeout=WAIT) for future in crashes]
        assert all(r.startswith("crashed crash-") and "SIGSEGV" in r for r in results)
        assert pool.submit("after").result(timeout=WAIT) == "after"


def test_an_item_past_the_time_limit_is_answered_while_others_go_on(markers: Path) -> None:
    with WorkerPool(misbehave_then_echo, workers=2, crashed=crashed, time_limit=1.0) as pool:
        stuck = pool.submit("stuck-forever")  # blocks its timer: the pool must kill it
        quick = [pool.submit(f"quick-{n}") for n in range(5)]
        assert [future.result(timeout=WAIT) for future in quick] == [f"quick-{n}" for n in range(5)]
        assert stuck.result(timeout=WAIT) == "crashed stuck-forever: overran"


def test_a_full_waiting_line_refuses_new_items(markers: Path) -> None:
    with WorkerPool(misbehave_then_echo, workers=1, crashed=crashed, max_waiting=2) as pool:
        hanging = pool.submit("hang-holder")
        refused = 0
        for n in range(50):
            try:
                pool.submit(f"queued-{n}")
            except WorkerError as exc:
                assert "busy" in str(exc)
                refused += 1
        assert refused > 0
        assert not hanging.done()


def test_closing_fails_what_is_unfinished_and_refuses_more(markers: Path) -> None:
    pool = WorkerPool(misbehave_then_echo, workers=1, crashed=crashed)
    hanging = pool.submit("hang-at-close")
    pool.close()
    with pytest.raises(WorkerError):
        hanging.result(timeout=WAIT)
    with pytest.raises(WorkerError, match="closed"):
        pool.submit("late")


def test_with_prefetch_a_crash_still_costs_only_its_item_and_queued_ones_survive(
    markers: Path,
) -> None:
    """A batch job's pool sends each worker its next item ahead: the worker that dies holds
    that queued item too, which must go to another worker untouched, not fail with it."""
    with WorkerPool(misbehave_then_echo, workers=1, crashed=crashed, prefetch=True) as pool:
        items = ["a", "crash-b", "c", "crash1-d", "e", "f"]
        answers = [future.result(timeout=WAIT) for future in [pool.submit(i) for i in items]]
    assert answers[0::2] == ["a", "c", "e"]
    assert answers[1].startswith("crashed crash-b") and "SIGSEGV" in answers[1]
    assert answers[3] == "crash1-d"  # killed once, retried, answered
    assert answers[5] == "f"
