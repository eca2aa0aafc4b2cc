"""A long-lived pool of worker processes that takes one item at a time, from any thread.

:func:`~hashmatch.parallel.parallel_map` serves batch jobs, which own a stream of items; a
service has no stream, only requests arriving on many threads or an event loop, each wanting
its one answer back. :class:`WorkerPool` is the same workers with that face: ``submit(item)``
returns a :class:`concurrent.futures.Future`. It keeps the batch pool's guarantees (an item
whose worker dies is retried once, then becomes ``crashed(item, crash)``; a worker still on an
item a second past the time limit is killed and the item answered as overrun), and never
gives up on its workers: each request is judged on its own, a hostile upload costs only
itself. One dispatcher thread owns the workers; callers only touch a queue and a wake pipe.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future
from typing import Generic, TypeVar

from hashmatch.errors import WorkerError
from hashmatch.parallel import WorkerCrash, _Pool, _Task, _task_payload

__all__ = ["WorkerPool"]

Item = TypeVar("Item")
Result = TypeVar("Result")


class WorkerPool(Generic[Item, Result]):
    """``workers`` spawn processes running ``function`` on submitted items.

    ``function`` and ``crashed`` follow :func:`~hashmatch.parallel.parallel_map`'s rules
    (module-level; return error values, never raise for bad input). ``max_waiting`` bounds
    the items not yet started: past it ``submit`` raises :class:`~hashmatch.WorkerError`
    (a service answers "busy" rather than queueing without end). ``prefetch`` sends a busy
    worker its next small item ahead, so it never waits for this process between items: for
    batch work, where throughput counts; a service leaves it off, so a request waits behind
    no other request that a free worker could have taken.
    """

    def __init__(
        self,
        function: Callable[[Item], Result],
        *,
        workers: int,
        crashed: Callable[[Item, WorkerCrash], Result],
        time_limit: float | None = None,
        max_waiting: int = 256,
        prefetch: bool = False,
    ) -> None:
        if workers < 1:
            raise ValueError(f"workers must be >= 1, got {workers}")
        self._function = function
        self._crashed = crashed
        self._size = workers
        self._time_limit = time_limit
        self._max_waiting = max_waiting
        self._prefetch = prefetch
        self._inbox: deque[tuple[Item, Future[Result]]] = deque()
        self._unstarted = 0
        """Items submitted and not yet sent to a worker (what ``max_waiting`` bounds)."""
        self._lock = threading.Lock()
        self._closing = False
        self._broken: BaseException | None = None
        self._wake_read, self._wake_write = os.pipe()
        os.set_blocking(self._wake_read, False)
        os.set_blocking(self._wake_write, False)
        self._thread = threading.Thread(target=self._dispatch, name="hashmatch-pool", daemon=True)
        self._thread.start()

    def submit(self, item: Item) -> Future[Result]:
        """Queue ``item``; the future holds ``function(item)`` (or ``crashed(...)``)."""
        future: Future[Result] = Future()
        with self._lock:
            if self._broken is not None:
                raise WorkerError(f"the worker pool stopped: {self._broken}")
            if self._closing:
                raise WorkerError("the worker pool is closed")
            if self._unstarted >= self._max_waiting:
                raise WorkerError(f"busy: {self._unstarted} items are waiting for a worker")
            self._unstarted += 1
            self._inbox.append((item, future))
        self._wake()
        return future

    def close(self) -> None:
        """Stop the workers; items not finished fail with WorkerError."""
        with self._lock:
            self._closing = True
        self._wake()
        self._thread.join(timeout=30)
        for fd in (self._wake_read, self._wake_write):
            with contextlib.suppress(OSError):
                os.close(fd)

    def __enter__(self) -> WorkerPool[Item, Result]:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _started_one(self) -> None:
        with self._lock:
            self._unstarted -= 1

    def _wake(self) -> None:
        with contextlib.suppress(BlockingIOError, OSError):
            os.write(self._wake_write, b"x")

    def _dispatch(self) -> None:
        futures: dict[int, Future[Result]] = {}
        waiting: deque[_Task[Item]] = deque()
        numbers = 0
        pool: _Pool[Item, Result] | None = None
        try:
            pool = _Pool(
                self._function,
                self._size,
                self._time_limit,
                give_up_on_deaths=False,
                prefetch=self._prefetch,
            )
            while True:
                with contextlib.suppress(BlockingIOError):
                    while os.read(self._wake_read, 4096):
                        pass
                with self._lock:
                    closing = self._closing
                    arrived = list(self._inbox)
                    self._inbox.clear()
                for item, future in arrived:
                    if not future.set_running_or_notify_cancel():
                        self._started_one()
                        continue  # the caller gave up before it started
                    try:
                        payload = _task_payload(numbers, item)
                    except Exception as exc:  # cannot cross to a worker: the caller's bug
                        self._started_one()
                        future.set_exception(exc)
                        continue
                    waiting.append(_Task(numbers, item, payload))
                    futures[numbers] = future
                    numbers += 1
                if closing:
                    return
                while pool._retry or waiting:
                    retrying = bool(pool._retry)
                    queue = pool._retry if retrying else waiting
                    task = queue.popleft()
                    if not pool._assign(task):
                        queue.appendleft(task)
                        break
                    if not retrying:
                        self._started_one()
                for number, result in pool._wait(self._crashed, also=(self._wake_read,)):
                    future = futures.pop(number)
                    if not future.done():
                        future.set_result(result)
        except BaseException as exc:  # a pool that cannot run: every caller hears why
            with self._lock:
                self._broken = exc
        finally:
            with self._lock:
                leftover = [future for _, future in self._inbox]
                self._inbox.clear()
                reason = self._broken
            leftover.extend(futures.values())
            for future in leftover:
                if not future.done():
                    message = f"the worker pool stopped: {reason}" if reason else "pool closed"
                    future.set_exception(WorkerError(message))
            if pool is not None:
                pool.stop()
