"""Work done on first use, made safe for threads that all get there first together.

An upload service's thread pool makes its first calls at the same moment, so every lazy
initialisation in hashmatch goes through here: :func:`once` for one-off set-up (the algorithm
registry, imports a function makes on first call) and :func:`shared_table` for tables built
per argument and shared by every caller (PDQ's filter weights, multi-index flip masks). A
check-then-set without a lock lets a second thread see the flag before the work is done.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable, Hashable
from typing import Any, Generic, ParamSpec, TypeVar

import numpy as np

__all__ = ["Once", "once", "shared_table"]

Result = TypeVar("Result")
Parameters = ParamSpec("Parameters")


class Once(Generic[Result]):
    """Calls a function the first time it is called and returns that result ever after.

    Threads that arrive while the first call runs wait for it and get its result; if it
    raises, nothing is remembered and the next call tries again. A call from inside the
    function itself (the same thread, re-entering) raises instead of deadlocking.
    """

    def __init__(self, function: Callable[[], Result]) -> None:
        self._function = function
        self._lock = threading.RLock()
        self._running = False
        self._result: list[Result] = []
        """Empty until the first call has returned; appended to once, so a reader that sees
        it filled sees the whole result."""
        functools.update_wrapper(self, function)

    def __call__(self) -> Result:
        if self._result:
            return self._result[0]
        with self._lock:
            if not self._result:
                if self._running:
                    raise RuntimeError(f"{self._function.__qualname__} re-entered itself")
                self._running = True
                try:
                    self._result.append(self._function())
                finally:
                    self._running = False
        return self._result[0]

    @property
    def done(self) -> bool:
        return bool(self._result)


def once(function: Callable[[], Result]) -> Once[Result]:
    """Decorator form of :class:`Once`."""
    return Once(function)


def shared_table(
    maxsize: int,
) -> Callable[[Callable[Parameters, Result]], Callable[Parameters, Result]]:
    """Memoise a pure table builder: each argument's table is built once and shared.

    Unlike ``functools.lru_cache``, concurrent first calls for the same arguments build the
    table once (the others wait), and numpy arrays in the result are made read-only, so no
    caller can change a table every other caller reads. A hit takes no lock (a dict read is
    atomic): multi-index search asks for its flip masks eleven times a query. Beyond
    ``maxsize`` tables the oldest is dropped.
    """

    def decorate(function: Callable[Parameters, Result]) -> Callable[Parameters, Result]:
        tables: dict[Hashable, Result] = {}
        lock = threading.Lock()

        @functools.wraps(function)
        def cached(*args: Parameters.args, **kwargs: Parameters.kwargs) -> Result:
            key = (args, tuple(sorted(kwargs.items()))) if kwargs else args
            try:
                return tables[key]
            except KeyError:
                pass
            with lock:  # building a table takes microseconds to milliseconds: others wait
                if key not in tables:
                    table = _read_only(function(*args, **kwargs))
                    if len(tables) >= maxsize:
                        del tables[next(iter(tables))]  # the oldest (dicts keep order)
                    tables[key] = table
                return tables[key]

        return cached

    return decorate


def _read_only(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        value.setflags(write=False)
    elif isinstance(value, tuple):
        for item in value:
            _read_only(item)
    return value
