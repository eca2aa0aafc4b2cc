"""A bounded, unordered process-pool map for CPU-bound per-file work.

Decoding and hashing hold the GIL for much of their time, so batch jobs fan out to worker
processes. At most ``workers * IN_FLIGHT_PER_WORKER`` items are pending at once, so a walk over
millions of files runs in constant memory, and results come back as they finish. Workers ignore
SIGINT: Ctrl-C reaches only the parent, which stops submitting and shuts the pool down.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from typing import TypeVar

__all__ = ["IN_FLIGHT_PER_WORKER", "default_workers", "parallel_map"]

Item = TypeVar("Item")
Result = TypeVar("Result")

IN_FLIGHT_PER_WORKER = 8


def default_workers() -> int:
    """The cores this process may use."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


def _ignore_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def parallel_map(
    function: Callable[[Item], Result],
    items: Iterable[Item],
    *,
    workers: int,
    ordered: bool = False,
) -> Iterator[Result]:
    """Yield ``function(item)`` for every item, as they finish or, if ``ordered``, in input order.

    ``function`` must be a module-level function and must not raise for bad input (return an
    error value instead): an exception here is a bug and propagates. Ordered output holds
    finished results until their turn, within the same in-flight bound.
    """
    if workers <= 1:
        for item in items:
            yield function(item)
        return
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(["hashmatch.hashing", "hashmatch.batch"])
    limit = workers * IN_FLIGHT_PER_WORKER
    iterator = iter(items)
    with ProcessPoolExecutor(workers, mp_context=context, initializer=_ignore_sigint) as pool:
        pending: dict[Future[Result], int] = {}
        finished: dict[int, Result] = {}
        submitted = next_to_yield = 0
        exhausted = False
        try:
            while pending or finished or not exhausted:
                while not exhausted and len(pending) + len(finished) < limit:
                    try:
                        item = next(iterator)
                    except StopIteration:
                        exhausted = True
                        break
                    pending[pool.submit(function, item)] = submitted
                    submitted += 1
                if pending:
                    done, _ = wait(pending, return_when=FIRST_COMPLETED)
                    for future in done:
                        finished[pending.pop(future)] = future.result()
                if not ordered:
                    yield from finished.values()
                    finished.clear()
                    continue
                while next_to_yield in finished:
                    yield finished.pop(next_to_yield)
                    next_to_yield += 1
        finally:
            for future in pending:
                future.cancel()
