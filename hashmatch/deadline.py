"""A wall-clock limit for one unit of work, so one pathological file cannot stall a batch.

Decoders are C code, but Pillow feeds them from Python in chunks, and our hashing is numpy
calls: a ``SIGALRM`` handler gets to run between those steps, so an interval timer stops a
slow decode within a chunk's time. Signals only reach the main thread, so elsewhere (a web
server's worker thread, say) the limit is not applied; scans hash in worker processes' main
threads, where it always is.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["DeadlineExceeded", "deadline", "deadline_supported"]


class DeadlineExceeded(BaseException):
    """Raised inside the guarded block when its time is up.

    A BaseException, like KeyboardInterrupt, so that code which turns any ``Exception`` from
    a decoder into a decode error lets it through to the code that set the deadline."""


def deadline_supported() -> bool:
    """True where :func:`deadline` can enforce its limit (POSIX, main thread)."""
    return hasattr(signal, "setitimer") and threading.current_thread() is threading.main_thread()


@contextmanager
def deadline(seconds: float | None) -> Iterator[None]:
    """Raise :class:`DeadlineExceeded` in the block after ``seconds`` (None: no limit)."""
    if not seconds or seconds <= 0 or not deadline_supported():
        yield
        return

    def expire(signum: int, frame: object) -> None:
        raise DeadlineExceeded(f"took longer than {seconds:g} s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
