"""Progress on stderr for long batch commands, shown only when stderr is a terminal.

The walk over the input paths runs in a background thread, so the total grows as files are
discovered while the work proceeds (a drive with millions of files starts at once).
"""

from __future__ import annotations

import queue
import sys
import threading
from collections.abc import Iterable, Iterator
from types import TracebackType
from typing import TypeVar

from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)

from hashmatch.cli.output import stderr_console

__all__ = ["BatchProgress", "discover_in_background"]

Item = TypeVar("Item")
_DONE = object()
_QUEUE_SIZE = 100_000


class BatchProgress:
    """A progress bar with a growing total and named counters (matches, errors...)."""

    def __init__(self, description: str, counters: Iterable[str], *, enabled: bool) -> None:
        self.enabled = enabled and sys.stderr.isatty()
        self.counts = dict.fromkeys(counters, 0)
        self.total = 0
        self.done = 0
        self._progress: Progress | None = None
        self._task: TaskID | None = None
        self._description = description

    def __enter__(self) -> BatchProgress:
        if self.enabled:
            self._progress = Progress(
                TextColumn("[bold]{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.fields[rate]}"),
                TextColumn("{task.fields[counters]}"),
                TimeElapsedColumn(),
                console=stderr_console(),
                transient=False,
            )
            self._progress.start()
            self._task = self._progress.add_task(
                self._description, total=None, rate="", counters=""
            )
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if self._progress is not None:
            self._refresh()
            self._progress.stop()

    def discovered(self, count: int = 1) -> None:
        """``count`` more files to do (the walk found them)."""
        before, self.total = self.total, self.total + count
        if before // 64 != self.total // 64:
            self._refresh()

    def advance(self, *, total: int | None = None, **increments: int) -> None:
        """One more file done (``total``: the whole count, when it became known better)."""
        self.done += 1
        if total is not None:
            self.total = total
        for name, value in increments.items():
            self.counts[name] = self.counts.get(name, 0) + value
        self._refresh()

    def _refresh(self) -> None:
        if self._progress is None or self._task is None:
            return
        task = self._progress.tasks[0]
        speed = task.speed
        rate = f"{speed:.1f} files/s" if speed else ""
        counters = "  ".join(f"{name} {value}" for name, value in self.counts.items())
        self._progress.update(
            self._task,
            completed=self.done,
            total=max(self.total, self.done),
            rate=rate,
            counters=counters,
        )


def discover_in_background(items: Iterable[Item], progress: BatchProgress) -> Iterator[Item]:
    """Iterate ``items`` produced by a background thread, counting each as discovered."""
    buffer: queue.Queue[object] = queue.Queue(maxsize=_QUEUE_SIZE)
    stop = threading.Event()
    failure: list[BaseException] = []

    def produce() -> None:
        try:
            for item in items:
                if stop.is_set():
                    return
                progress.discovered()
                buffer.put(item)
        except BaseException as exc:  # re-raised in the consumer
            failure.append(exc)
        finally:
            buffer.put(_DONE)

    thread = threading.Thread(target=produce, name="hashmatch-walk", daemon=True)
    thread.start()
    try:
        while True:
            item = buffer.get()
            if item is _DONE:
                break
            yield item  # type: ignore[misc]
        if failure:
            raise failure[0]
    finally:
        stop.set()
