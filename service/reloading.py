"""Following the index: the server's view of which version it serves and how fresh that is.

:class:`IndexWatch` opens the index at start and, in a background thread, checks
``CURRENT`` every ``reload_interval`` seconds and whenever asked (``SIGHUP``). A new version
is loaded next to the old one and swapped in by :meth:`Matcher.reload` (one reference):
requests in flight keep the version they pinned, and the old one is freed when the last of
them ends. A version that fails to load leaves the old one serving; the failure is logged
and kept for ``/readyz`` and the metrics. An index that cannot be opened at all yet (nothing
published) is retried on every check, and lookups answer 503 until it loads.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from hashmatch.index.matcher import Matcher
from hashmatch.index.overlay import LiveAdditions
from hashmatch.service.config import ServiceConfig

__all__ = ["IndexWatch", "ReloadStatus"]

_log = logging.getLogger("hashmatch.service")

_TICK = 1.0
"""How often the thread wakes to see whether a check is due (and update its age gauge)."""


@dataclass
class ReloadStatus:
    """What the last checks found, for ``/status``, ``/readyz`` and the metrics."""

    last_check: float | None = None
    """Monotonic time of the last check that completed (successful or not)."""
    last_success: float | None = None
    """Monotonic time of the last check that found a loadable published version."""
    last_error: str | None = None
    reloads: int = 0
    failures: int = 0
    load_seconds: float | None = None


class IndexWatch:
    """The served :class:`Matcher` and its freshness, kept current by a thread."""

    def __init__(
        self,
        config: ServiceConfig,
        on_update: Callable[[IndexWatch], None] | None = None,
        banks: LiveAdditions | None = None,
    ) -> None:
        self.config = config
        self.banks = banks
        self.status = ReloadStatus()
        self._matcher: Matcher | None = None
        self._on_update = on_update
        """Called after every check and tick (the metrics read the status there)."""
        self._wanted = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.check()

    @property
    def matcher(self) -> Matcher | None:
        return self._matcher

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="hashmatch-watch", daemon=True)
        self._thread.start()

    def request_check(self) -> None:
        """Check now (what ``SIGHUP`` does); safe from a signal handler."""
        self._wanted.set()

    def stop(self) -> None:
        self._stop.set()
        self._wanted.set()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def seconds_since_success(self) -> float | None:
        success = self.status.last_success
        return None if success is None else time.monotonic() - success

    def fresh(self) -> bool:
        """Loaded, and the last successful check is younger than ``stale_after``."""
        age = self.seconds_since_success()
        return self._matcher is not None and age is not None and age <= self.config.stale_after

    def check(self) -> bool:
        """Look at ``CURRENT`` once; True if a new version is now served."""
        started = time.monotonic()
        changed = ok = False
        try:
            if self._matcher is None:
                self._matcher = Matcher.open(
                    self.config.index, verify=self.config.verify, banks=self.banks
                )
                changed = True
            else:
                changed = self._matcher.reload()
            ok = True
        except Exception as exc:  # keep serving what is loaded; say why
            self.status.failures += 1
            self.status.last_error = f"{type(exc).__name__}: {exc}"
            _log.warning("index check of %s failed: %s", self.config.index, exc)
        finished = time.monotonic()
        self.status.last_check = finished
        if ok:
            self.status.last_success = finished
            self.status.last_error = None
            if changed:
                self.status.reloads += 1
                self.status.load_seconds = finished - started
                assert self._matcher is not None
                _log.info(
                    "serving index version %s (loaded in %.2f s)",
                    self._matcher.version,
                    finished - started,
                )
        self._updated()
        return changed

    def _run(self) -> None:
        due = time.monotonic() + self.config.reload_interval
        while not self._stop.is_set():
            asked = self._wanted.wait(_TICK)
            if self._stop.is_set():
                return
            if asked or time.monotonic() >= due:
                self._wanted.clear()
                self.check()
                due = time.monotonic() + self.config.reload_interval
            else:
                self._updated()

    def _updated(self) -> None:
        if self._on_update is not None:
            try:
                self._on_update(self)
            except Exception:  # metrics must never stop the reloads
                _log.exception("updating the index metrics failed")
