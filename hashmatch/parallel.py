"""A bounded process-pool map for CPU-bound per-file work that survives its workers dying.

Decoding and hashing hold the GIL for much of their time, so batch jobs fan out to worker
processes. Hostile files make decoders crash (a segfault in C code) and big ones get workers
OOM-killed, so this pool does not trust its workers to live:

* every worker works through its own tasks in order, so when one dies, the task it was on is
  known exactly; that task is retried once in a new worker, and if it kills that one too it
  becomes the ``crashed`` value the caller supplies, never an exception that ends the run;
* tasks a dead worker had not started go back to the queue, untouched;
* a run whose workers keep dying without finishing anything stops with a
  :class:`~hashmatch.errors.WorkerError` that says so, instead of restarting them forever.

At most ``workers * IN_FLIGHT_PER_WORKER`` items are pending or waiting for their turn, so a
walk over millions of files runs in constant memory. Workers are started with ``spawn``: each
imports exactly what the parent's ``sys.path`` says, whatever the current directory holds
(a forkserver would import a ``hashmatch/`` folder there instead of the installed package).
Workers ignore SIGINT: Ctrl-C reaches only the parent, which stops them and returns.
"""

from __future__ import annotations

import contextlib
import importlib
import multiprocessing
import os
import pickle
import signal
import time
import warnings
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from multiprocessing.connection import Connection, wait
from typing import Any, Generic, TypeVar

from hashmatch.errors import WorkerError
from hashmatch.registry import plugin_modules

__all__ = [
    "ATTEMPTS_PER_ITEM",
    "IN_FLIGHT_PER_WORKER",
    "OVERRUN_GRACE",
    "WorkerCrash",
    "default_workers",
    "parallel_map",
    "picklable",
]

Item = TypeVar("Item")
Result = TypeVar("Result")

IN_FLIGHT_PER_WORKER = 8
"""Items sent or finished but not yet yielded, per worker (the memory bound)."""
ATTEMPTS_PER_ITEM = 2
"""An item whose worker dies is retried once; if it kills a second worker it is given up."""
_PREFETCH_BYTES = 32 * 1024
"""A busy worker is sent its next task only if it fits in the pipe's buffer (64 KiB on
Linux), so sending never waits for a worker to finish; bigger ones (image bytes) wait."""
_STOP_TIMEOUT = 5.0
OVERRUN_GRACE = 1.0
"""How long past its time limit a worker may stay on one item before the pool kills it."""


def default_workers() -> int:
    """The cores this process may use."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


@dataclass(frozen=True)
class WorkerCrash:
    """Why the worker processes holding an item died, for the item's error record."""

    causes: tuple[str, ...]
    """One per attempt, e.g. ``killed by signal 9 (SIGKILL)`` or ``exited with code 3``."""
    overran: float | None = None
    """Set when the pool killed the worker itself: the item ran past this many seconds (the
    caller's time limit, which the worker's own timer could not enforce)."""

    def __str__(self) -> str:
        if self.overran is not None:
            return f"took longer than {self.overran:g} s"
        if len(set(self.causes)) == 1 and len(self.causes) > 1:
            return f"worker process {self.causes[0]} while on this file, {len(self.causes)} times"
        return "worker process " + ", then ".join(self.causes) + " while on this file"


def parallel_map(
    function: Callable[[Item], Result],
    items: Iterable[Item],
    *,
    workers: int,
    crashed: Callable[[Item, WorkerCrash], Result],
    ordered: bool = False,
    time_limit: float | None = None,
) -> Iterator[Result]:
    """Yield ``function(item)`` for every item, as they finish or, if ``ordered``, in input order.

    ``function`` must be a module-level function and must not raise for bad input (return an
    error value instead): an exception from it is a bug and propagates. An item that kills
    the worker running it, twice, yields ``crashed(item, crash)`` instead. ``time_limit``
    (seconds) is the last resort behind a worker's own timer: a worker still on one item
    :data:`OVERRUN_GRACE` seconds after it is killed, and the item yields ``crashed`` with
    ``crash.overran`` set (a decoder stuck in C code never lets the timer's signal run). With
    ``workers`` <= 1 everything runs here, in this process (a crash then ends this process).
    """
    if workers <= 1:
        for item in items:
            yield function(item)
        return
    pool = _Pool(function, workers, time_limit)
    try:
        yield from pool.run(iter(items), crashed, ordered)
    finally:
        pool.stop()


@dataclass
class _Task(Generic[Item]):
    number: int
    item: Item
    payload: bytes
    causes: list[str] = field(default_factory=list)


@dataclass
class _Worker:
    process: Any
    connection: Connection
    ready: bool = False
    tasks: deque[_Task[Any]] = field(default_factory=deque)
    started: float = 0.0
    """When it began its current task (the first of ``tasks``), by the monotonic clock."""
    overran: bool = False
    """Killed by the pool for running past the time limit."""


class _Pool(Generic[Item, Result]):
    """The parent's side: workers, their tasks in order, and the retry queue."""

    def __init__(
        self,
        function: Callable[[Item], Result],
        size: int,
        time_limit: float | None = None,
        *,
        give_up_on_deaths: bool = True,
        prefetch: bool = True,
    ) -> None:
        self._function = function
        self._size = size
        self._time_limit = time_limit or None
        self._deadline = self._time_limit + OVERRUN_GRACE if self._time_limit else None
        self._context = multiprocessing.get_context("spawn")
        self._workers: list[_Worker] = []
        self._retry: deque[_Task[Item]] = deque()
        self._deaths_in_a_row = 0
        self._failed_starts_in_a_row = 0
        self._prefetch = prefetch
        """Queue a small task behind a busy worker's current one (batch throughput); off,
        tasks wait for an idle worker (a service: no request waits behind a slow one)."""
        self._death_limit = 4 + 2 * size if give_up_on_deaths else None
        """Deaths with no item finished in between after which the run is given up (None: a
        long-lived pool, where each item is judged on its own)."""
        for _ in range(size):
            self._start_worker()

    def run(
        self,
        items: Iterator[Item],
        crashed: Callable[[Item, WorkerCrash], Result],
        ordered: bool,
    ) -> Iterator[Result]:
        limit = self._size * IN_FLIGHT_PER_WORKER
        finished: dict[int, Result] = {}
        submitted = next_to_yield = 0
        exhausted = False
        while True:
            # refill first, then wait, then yield: workers get their next task before the
            # consumer of the results (lookups, writing records) takes its time
            while True:
                if self._retry:  # already counted against the limit when first sent
                    task = self._retry.popleft()
                elif exhausted or len(finished) + self._outstanding() >= limit:
                    break
                else:
                    try:
                        item = next(items)
                    except StopIteration:
                        exhausted = True
                        break
                    task = _Task(submitted, item, _task_payload(submitted, item))
                    submitted += 1
                if not self._assign(task):
                    self._retry.appendleft(task)
                    break
            busy = self._outstanding() > 0 or self._retry
            if not finished and not busy and exhausted:
                return
            if busy and (not finished or (ordered and next_to_yield not in finished)):
                for number, outcome in self._wait(crashed):
                    finished[number] = outcome
            if ordered:
                while next_to_yield in finished:
                    yield finished.pop(next_to_yield)
                    next_to_yield += 1
            else:
                ready = list(finished.values())
                finished.clear()
                yield from ready

    def stop(self) -> None:
        """End every worker: politely when idle, by force when busy or stuck."""
        for worker in self._workers:
            with contextlib.suppress(OSError):
                worker.connection.send_bytes(b"")
        for worker in self._workers:
            worker.process.join(timeout=0 if worker.tasks else _STOP_TIMEOUT)
            if worker.process.is_alive():
                worker.process.kill()
                worker.process.join()
            worker.connection.close()
        self._workers.clear()

    def _outstanding(self) -> int:
        return sum(len(worker.tasks) for worker in self._workers)

    def _assign(self, task: _Task[Item]) -> bool:
        """Send ``task`` to the least busy ready worker that can take it now."""
        candidates = [worker for worker in self._workers if worker.ready]
        idle = [worker for worker in candidates if not worker.tasks]
        small = self._prefetch and len(task.payload) <= _PREFETCH_BYTES
        chosen = idle or [w for w in candidates if small and len(w.tasks) < 2]
        if not chosen:
            return False
        worker = min(chosen, key=lambda w: len(w.tasks))
        try:
            worker.connection.send_bytes(task.payload)
        except OSError:  # it died: the wait notices; this task goes back to the queue
            return False
        if not worker.tasks:
            worker.started = time.monotonic()
        worker.tasks.append(task)
        return True

    def _wait(
        self, crashed: Callable[[Item, WorkerCrash], Result], also: tuple[Any, ...] = ()
    ) -> list[tuple[int, Result]]:
        """Block until a worker reports or dies (or one of ``also`` is ready to read); what
        that settled, by item number."""
        waitables: dict[Any, _Worker | None] = dict.fromkeys(also)
        for worker in self._workers:
            waitables[worker.connection] = worker
            waitables[worker.process.sentinel] = worker
        settled: list[tuple[int, Result]] = []
        dead: list[_Worker] = []
        for ready in wait(list(waitables), timeout=self._next_overrun()):
            owner = waitables[ready]
            if owner is None:
                continue  # one of ``also``: the caller reads it
            alive = ready is owner.connection and self._receive(owner, settled)
            if not alive and owner not in dead:
                dead.append(owner)
        self._kill_overrunning(dead)
        for worker in dead:
            while self._receive(worker, settled, block=False):
                pass  # results it sent before dying still count
            settled.extend(self._bury(worker, crashed))
        return settled

    def _next_overrun(self) -> float | None:
        """Seconds until the first busy worker runs out of time (None: no time limit)."""
        if self._deadline is None:
            return None
        busy = [worker.started for worker in self._workers if worker.tasks]
        if not busy:
            return None
        return max(0.0, min(busy) + self._deadline - time.monotonic())

    def _kill_overrunning(self, dead: list[_Worker]) -> None:
        if self._deadline is None:
            return
        now = time.monotonic()
        for worker in self._workers:
            if worker.tasks and now - worker.started >= self._deadline and worker not in dead:
                worker.process.kill()
                worker.overran = True
                dead.append(worker)

    def _receive(
        self, worker: _Worker, settled: list[tuple[int, Result]], *, block: bool = True
    ) -> bool:
        """Take one message from ``worker``; False if there is none or it is gone."""
        try:
            if not block and not worker.connection.poll():
                return False
            message = worker.connection.recv_bytes()
        except (EOFError, OSError):
            return False
        kind, number, value = pickle.loads(message)
        if kind == "ready":
            worker.ready = True
            self._failed_starts_in_a_row = 0
            return True
        if kind == "bug":
            raise value
        task = worker.tasks.popleft()
        assert task.number == number, "a worker answered out of order"
        worker.started = time.monotonic()  # it goes on to its next task now
        self._deaths_in_a_row = 0
        settled.append((number, value))
        return True

    def _bury(
        self, worker: _Worker, crashed: Callable[[Item, WorkerCrash], Result]
    ) -> list[tuple[int, Result]]:
        """Replace a dead worker; its current task is retried or given up, the rest requeued."""
        worker.process.join()
        worker.connection.close()
        self._workers.remove(worker)
        cause = _describe_exit(worker.process.exitcode)
        given_up: list[tuple[int, Result]] = []
        if not worker.ready:
            self._failed_starts_in_a_row += 1
            if self._failed_starts_in_a_row >= 3:
                raise WorkerError(
                    f"worker processes fail to start ({cause}, {self._failed_starts_in_a_row}"
                    " times in a row); their error is printed above"
                )
        elif worker.overran and worker.tasks:  # not a crash: no retry, no count toward stopping
            current = worker.tasks.popleft()
            crash = WorkerCrash((cause,), overran=self._time_limit)
            given_up.append((current.number, crashed(current.item, crash)))
        elif worker.tasks:
            self._deaths_in_a_row += 1
            current = worker.tasks.popleft()
            current.causes.append(cause)
            if len(current.causes) >= ATTEMPTS_PER_ITEM:
                crash = WorkerCrash(tuple(current.causes))
                given_up.append((current.number, crashed(current.item, crash)))
            else:
                self._retry.appendleft(current)
            if self._death_limit is not None and self._deaths_in_a_row >= self._death_limit:
                raise WorkerError(
                    f"stopping: worker processes died {self._deaths_in_a_row} times in a row"
                    f" without finishing a file (last one {cause})"
                )
        self._retry.extendleft(reversed(worker.tasks))  # never started: no attempt used
        self._start_worker()
        return given_up

    def _start_worker(self) -> None:
        parent_end, worker_end = self._context.Pipe(duplex=True)
        process = self._context.Process(
            target=_worker_main,
            args=(self._function, worker_end, plugin_modules()),
            name="hashmatch-worker",
            daemon=True,
        )
        process.start()
        worker_end.close()
        self._workers.append(_Worker(process, parent_end))


def _task_payload(number: int, item: Any) -> bytes:
    return pickle.dumps((number, item), pickle.HIGHEST_PROTOCOL)


def _worker_main(
    function: Callable[[Any], Any], connection: Connection, imports: tuple[str, ...]
) -> None:
    """A worker's loop: one task at a time, in the order sent, until an empty message.

    ``imports`` are the modules that registered the parent's own algorithms."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    for module in imports:
        importlib.import_module(module)
    # our own pixel limit decides what is too large (hashmatch.ImageLimits); Pillow's
    # warning below it would print once per worker
    from PIL import Image

    warnings.simplefilter("ignore", Image.DecompressionBombWarning)
    connection.send_bytes(pickle.dumps(("ready", -1, None)))
    while True:
        try:
            message = connection.recv_bytes()
        except EOFError:
            return
        if not message:
            return
        number, item = pickle.loads(message)
        try:
            answer = pickle.dumps(("done", number, function(item)), pickle.HIGHEST_PROTOCOL)
        except BaseException as exc:  # a bug in function: the parent re-raises it
            sent = exc if picklable(exc) else RuntimeError(f"{type(exc).__name__}: {exc}")
            answer = pickle.dumps(("bug", number, sent))
        connection.send_bytes(answer)


def picklable(value: object) -> bool:
    """Whether ``value`` can cross to another process (exceptions often cannot)."""
    try:
        pickle.dumps(value)
    except Exception:
        return False
    return True


def _describe_exit(code: int | None) -> str:
    if code is None:
        return "stopped"
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = "unknown signal"
        return f"killed by signal {-code} ({name})"
    return f"exited with code {code}"
