"""``hashmatch.once``: first-use work runs once, whoever arrives first and however many together."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from hashmatch.once import Once, shared_table

THREADS = 16


def _together(work) -> list:
    """Run ``work()`` in THREADS threads released by one barrier; their results in order."""
    barrier = threading.Barrier(THREADS)
    results: list = [None] * THREADS

    def run(number: int) -> None:
        barrier.wait()
        try:
            results[number] = work()
        except BaseException as exc:
            results[number] = exc

    threads = [threading.Thread(target=run, args=(n,)) for n in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not any(thread.is_alive() for thread in threads)
    return results


def test_once_runs_its_function_once_and_every_thread_gets_its_result() -> None:
    calls: list[int] = []
    inside = threading.Event()

    def setup() -> dict:
        calls.append(1)
        inside.set()
        threading.Event().wait(0.05)  # holds the others at the lock while it works
        return {"ready": True}

    ready = Once(setup)
    results = _together(ready)
    assert calls == [1]
    assert all(result is results[0] for result in results) and results[0] == {"ready": True}
    assert ready.done and ready() is results[0]


def test_once_remembers_nothing_when_its_function_fails() -> None:
    attempts: list[int] = []

    def flaky() -> str:
        attempts.append(1)
        if len(attempts) == 1:
            raise OSError("first try fails")
        return "ok"

    ready = Once(flaky)
    with pytest.raises(OSError):
        ready()
    assert not ready.done
    assert ready() == "ok" and len(attempts) == 2


def test_once_refuses_to_re_enter_itself_instead_of_deadlocking() -> None:
    holder: list[Once] = []
    holder.append(Once(lambda: holder[0]()))
    with pytest.raises(RuntimeError, match="re-entered"):
        holder[0]()


def test_shared_table_builds_each_table_once_and_hands_out_read_only_arrays() -> None:
    built: list[int] = []

    @shared_table(maxsize=4)
    def table(size: int) -> tuple[np.ndarray, np.ndarray]:
        built.append(size)
        threading.Event().wait(0.02)
        return np.arange(size), np.ones(size)

    results = _together(lambda: table(8))
    assert built == [8]
    assert all(result is results[0] for result in results)
    first, second = results[0]
    assert first.tolist() == list(range(8))
    with pytest.raises(ValueError, match="read-only"):
        first[0] = 99
    with pytest.raises(ValueError, match="read-only"):
        second[0] = 99


def test_shared_table_drops_the_oldest_beyond_its_size() -> None:
    built: list[int] = []

    @shared_table(maxsize=2)
    def table(size: int) -> np.ndarray:
        built.append(size)
        return np.zeros(size)

    table(1), table(2), table(1), table(3)  # 1 is the oldest: dropped
    table(2)
    table(1)
    assert built == [1, 2, 3, 1]
