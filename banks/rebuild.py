"""``--rebuild-every S`` / ``--rebuild-after N``: the writing instance folds its banks into
new versions itself.

A thread in the supervisor (which never loads the index) watches how many bank records the
published version has not folded in. When ``N`` wait, or records have waited and ``S`` seconds
have passed since the last rebuild, it runs ``hashmatch index build --config`` in a child
process (a build's memory and CPU stay out of the servers; a crash costs that build only) and
waits for it; records that arrive meanwhile wait for the next one. The build publishes
atomically, as every build does, and the servers pick the version up on their next check.
"""

from __future__ import annotations

import logging
import subprocess
import sys
import threading
import time
from pathlib import Path

from hashmatch.banks.directory import BankDirectory
from hashmatch.banks.overlay import folded_lists
from hashmatch.errors import OptionError
from hashmatch.index.config import load_config

__all__ = ["RebuildSchedule", "unfolded_records"]

_log = logging.getLogger("hashmatch.banks")


def unfolded_records(directory: BankDirectory, index: Path) -> int:
    """Records of the directory's banks that the published version of ``index`` has not
    folded in (all of them while nothing is published)."""
    folded = folded_lists(index)
    return sum(
        max(0, state.last_seq - folded.get(state.name, (0, 0.0))[0])
        for state in directory.banks.values()
        if state.exists or state.name in folded
    )


class RebuildSchedule:
    """Runs debounced rebuilds in child processes until :meth:`stop`."""

    def __init__(
        self,
        config: Path,
        index: Path,
        banks: Path,
        *,
        every: float = 0.0,
        after: int = 0,
        poll_interval: float = 1.0,
    ) -> None:
        parsed = load_config(config)  # a bad config stops the server now, not at the first build
        if parsed.banks is None or parsed.banks.directory(index).resolve() != banks.resolve():
            raise OptionError(
                f"{config}: its [banks] section must name this instance's bank directory"
                f" ({banks}): a rebuild without it would drop the banks' contents"
            )
        self.config, self.index, self.every, self.after = config, index, every, after
        self.poll_interval = poll_interval
        self.directory = BankDirectory(banks)
        self.builds = 0
        self.failures = 0
        self.last_error: str | None = None
        self._last_build = time.monotonic()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="hashmatch-rebuild", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        process = self._process
        if process is not None and process.poll() is None:
            process.terminate()  # a build killed at any moment publishes nothing
        if self._thread is not None:
            self._thread.join(timeout=30)

    def due(self, waiting: int, now: float) -> bool:
        if waiting == 0:
            return False
        if self.after and waiting >= self.after:
            return True
        return bool(self.every) and now - self._last_build >= self.every

    def _run(self) -> None:
        while not self._stop.wait(self.poll_interval):
            try:
                self.directory.refresh()
                waiting = unfolded_records(self.directory, self.index)
                if self.due(waiting, time.monotonic()):
                    self.rebuild(waiting)
            except Exception:  # keep scheduling; say why
                _log.exception("scheduling a rebuild of %s failed", self.index)

    def rebuild(self, waiting: int) -> bool:
        """One build now, in a child process; True if it published."""
        command = [
            sys.executable,
            "-m",
            "hashmatch.cli",
            "index",
            "build",
            "--config",
            str(self.config),
            "--output",
            str(self.index),
            "--quiet",
        ]
        _log.info("rebuilding %s: %d bank records to fold in", self.index, waiting)
        started = time.monotonic()
        self._process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        output, _ = self._process.communicate()
        self._last_build = time.monotonic()
        code = self._process.returncode
        self._process = None
        if code == 0:
            self.builds += 1
            self.last_error = None
            _log.info("rebuilt %s in %.1f s", self.index, self._last_build - started)
            return True
        self.failures += 1
        self.last_error = output.decode("utf-8", "replace").strip()[-2000:]
        _log.error("rebuild of %s failed (exit %s): %s", self.index, code, self.last_error)
        return False
