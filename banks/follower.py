"""``BankFollower``: a process's live view of a bank directory, for its matcher.

It reads the logs forward (at once when the directory's ``.changes`` hint moved, which a
lookup checks with one ``stat``; every ``poll_interval`` seconds in a thread otherwise, for
file systems whose hint lags and for contents whose ``disable_until_ts`` comes due) and keeps
the :class:`~hashmatch.banks.overlay.Overlay` of the version being served. A writer in the
same process (:class:`~hashmatch.banks.directory.BankWriter` made by :meth:`writer`) shares
its directory, so its records are in the overlay before its call returns.
"""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path
from typing import Any

from hashmatch.banks.directory import (
    BankDirectory,
    BankWriter,
    Change,
    default_bank_directory,
)
from hashmatch.banks.log import LOG_SUFFIX
from hashmatch.banks.overlay import Overlay, View, folded_through
from hashmatch.errors import OptionError
from hashmatch.index.loaded import LoadedIndex

__all__ = ["BankFollower", "live_banks"]

_log = logging.getLogger("hashmatch.banks")


class BankFollower:
    """Follows ``path``'s banks; :meth:`view_for` is what a :class:`~hashmatch.Matcher`
    searches alongside each published version."""

    def __init__(self, path: str | Path, *, poll_interval: float = 1.0) -> None:
        if (
            isinstance(poll_interval, bool)
            or not isinstance(poll_interval, (int, float))
            or not poll_interval > 0
        ):
            raise OptionError(f"poll_interval must be seconds > 0, got {poll_interval!r}")
        self.path = Path(path)
        self.poll_interval = float(poll_interval)
        self.directory = BankDirectory(self.path, on_changes=self._apply)
        self._lock = threading.Lock()
        """Guards the overlay; always taken after the directory's lock, never before."""
        self._overlays: dict[str, Overlay] = {}
        """By version: the served one and the one before (requests still pinned to it)."""
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.last_poll: float | None = None
        self.directory.refresh()

    # -- following -------------------------------------------------------------------------

    def start(self) -> BankFollower:
        self._thread = threading.Thread(target=self._run, name="hashmatch-banks", daemon=True)
        self._thread.start()
        return self

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def _run(self) -> None:
        while not self._stop.wait(self.poll_interval):
            try:
                self.poll()
            except Exception:  # a reader must keep reading; say why
                _log.exception("reading the banks in %s failed", self.path)

    def poll(self) -> None:
        """Read what the logs gained and apply it, and any ``disable_until_ts`` now due."""
        with self.directory.locked():
            self.directory.refresh()
            with self._lock:
                for overlay in self._overlays.values():
                    overlay.apply_due()
        self.last_poll = time.time()

    def _apply(self, changes: list[Change]) -> None:
        """The directory's listener (its lock held)."""
        with self._lock:
            for overlay in self._overlays.values():
                overlay.apply(changes)

    # -- what the matcher asks -------------------------------------------------------------

    def view_for(self, snapshot: LoadedIndex) -> View:
        """The overlay view for ``snapshot`` as the logs are now (made, for a version seen
        first, from the whole directory: once per published version)."""
        overlay = self._overlays.get(snapshot.version)
        if self.directory.changed_since_refresh() or (overlay is not None and overlay.due()):
            self.poll()
            overlay = self._overlays.get(snapshot.version)
        if overlay is None:
            with self.directory.locked(), self._lock:
                overlay = self._overlays.get(snapshot.version)
                if overlay is None:
                    overlay = Overlay(snapshot, self.directory)
                    kept = list(self._overlays.values())[-1:]
                    self._overlays = {o.version: o for o in (*kept, overlay)}
        return overlay.view()

    def current_overlay(self) -> Overlay | None:
        """The overlay made last (the served version's)."""
        overlays = list(self._overlays.values())
        return overlays[-1] if overlays else None

    def writer(self, *, shared_lock: bool = False) -> BankWriter:
        """A writer on this follower's directory: its records are in the overlay before its
        calls return."""
        return BankWriter(self.path, directory=self.directory, shared_lock=shared_lock)

    # -- what the metrics and /v1 say ------------------------------------------------------

    def stats(self, snapshot: LoadedIndex | None) -> dict[str, Any]:
        """Per bank its records and contents; the overlay's size; how long since each bank's
        records were last folded into the served version, and how many are not yet."""
        folded = folded_through(snapshot) if snapshot is not None else {}
        overlay = self._overlays.get(snapshot.version) if snapshot is not None else None
        now = time.time()
        banks = {}
        for state in self.directory.existing():
            through, at = folded.get(state.name, (0, 0.0))
            banks[state.name] = {
                "records": state.last_seq,
                "contents": state.live_entries,
                "unfolded_records": state.last_seq - through,
                "seconds_since_fold": (now - at) if at else None,
            }
        return {
            "banks": banks,
            "overlay_contents": overlay.size() if overlay is not None else 0,
            "overlay_hidden": overlay.hidden_count() if overlay is not None else 0,
            "unreadable_records": self.directory.problem_count,
        }


def live_banks(index: str | Path) -> BankFollower | None:
    """A started follower of ``index``'s own bank directory when it holds any bank (what the
    ``lookup`` and ``scan`` commands search beside the published version), else None."""
    path = default_bank_directory(index)
    if not any(path.glob(f"*{LOG_SUFFIX}")):
        return None
    return BankFollower(path).start()
