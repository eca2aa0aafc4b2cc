"""The Ray actor of a cluster scan: one pinned ``Matcher`` and its own hashing processes.

Ray Data calls the actor with batches of listed files from its own threads. Decoding runs in
a :class:`~hashmatch.worker_pool.WorkerPool` process of the actor's, never in the actor: a file
that crashes its decoder kills that process, not the actor, and becomes the same ``crashed``
record a local scan writes (and a file past its time limit the same ``timeout``); the actor's
batch goes on. Remote files are read ahead in threads while the previous ones hash. If the
actor itself dies (OOM, ``SIGKILL``), Ray restarts it and runs its unfinished batch again;
records leave only with a finished batch, so every file is still recorded exactly once.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

from hashmatch.batch import (
    HashOutcome,
    HashTask,
    crashed_task,
    failed_outcome,
    hash_file,
    hash_task,
)
from hashmatch.cluster.pinning import IndexPin, open_pinned
from hashmatch.cluster.remote import RemoteFile, read_remote
from hashmatch.errors import ImageError
from hashmatch.formats import SNIFF_BYTES
from hashmatch.index.options import MatchOptions
from hashmatch.index.scan_records import QUALITY_COLUMN, record_columns, scan_record
from hashmatch.index.search import single_threaded_searches
from hashmatch.walking import WalkEntry, classify_file, content_skip
from hashmatch.worker_pool import WorkerPool

if TYPE_CHECKING:
    import pyarrow

__all__ = ["SKIPPED", "ScanActor"]

SKIPPED = "skipped"
"""The status of a row for a file that is not an image (only with ``keep_skipped``)."""
_READ_AHEAD = 4
"""Remote files read at once per hashing process: enough to hide an object store's latency."""


class ScanActor:
    """Turns a batch of listed files into their flat scan records (one row each)."""

    def __init__(
        self,
        pin: IndexPin,
        options: MatchOptions,
        with_hashes: bool,
        keep_skipped: bool,
        verify: bool = True,
        *,
        workers: int = 1,
    ) -> None:
        # Ray kills an actor's child processes when it ends the actor, the resource tracker
        # among them, before the pool's shutdown asks it to forget the pool: not a leak
        warnings.filterwarnings("ignore", "resource_tracker: process died unexpectedly")
        self._matcher = open_pinned(pin, verify=verify)  # refuses a different version
        self._options = options
        self._job = self._matcher.hash_job(options)
        self._with_hashes = with_hashes
        self._keep_skipped = keep_skipped
        algorithms = pin.matched_algorithms(options)
        self._columns = columns = record_columns(algorithms, with_hashes, "flat")
        import pyarrow  # Ray's dependency, so only on the cluster

        self._schema = pyarrow.schema(
            [(c, pyarrow.int64() if c == QUALITY_COLUMN else pyarrow.string()) for c in columns]
        )
        self._pool: WorkerPool[HashTask, HashOutcome] = WorkerPool(
            hash_task,
            workers=workers,
            crashed=crashed_task,
            time_limit=options.time_limit,
            max_waiting=1 << 16,
            prefetch=True,  # the next file waits in the pipe, not on this process's GIL
        )
        self._readers = ThreadPoolExecutor(
            _READ_AHEAD * workers, thread_name_prefix="hashmatch-read"
        )

    def __call__(self, batch: pyarrow.Table) -> pyarrow.Table | dict[str, list[Any]]:
        import pyarrow

        rows = batch.to_pylist()
        reads = [self._read_ahead(row) for row in rows]
        pending: list[tuple[str, Future[HashOutcome] | HashOutcome | str]] = []
        for row, read in zip(rows, reads, strict=True):
            pending.append((row["path"], self._start(row, read)))
        records = [self._record(path, work) for path, work in pending]
        columns = {
            column: [record.get(column) for record in records if record is not None]
            for column in self._columns
        }
        try:
            return pyarrow.Table.from_pydict(columns, schema=self._schema)
        except (UnicodeEncodeError, pyarrow.ArrowException):
            return columns  # a name that is not UTF-8: Ray keeps it as a Python object

    def _read_ahead(self, row: Mapping[str, Any]) -> Future[bytes] | None:
        if row.get("root") is None or row.get("error") is not None:
            return None
        remote = RemoteFile(row["path"], row["root"], row["fs_path"], row.get("size"))
        return self._readers.submit(read_remote, remote, self._options.limits)

    def _start(
        self, row: Mapping[str, Any], read: Future[bytes] | None
    ) -> Future[HashOutcome] | HashOutcome | str:
        """The file's hashing under way, its outcome already (a failed read), or why it is
        skipped."""
        path: str = row["path"]
        if row.get("error") is not None:  # listing said why: nothing to decode
            return hash_file(WalkEntry(path, row["error"]), self._job)
        if read is None:  # a local file
            entry = classify_file(path) if row.get("unread") else WalkEntry(path)
            if entry.skipped is not None:
                return entry.skipped
            return self._pool.submit((entry, self._job))
        try:
            data = read.result()
        except ImageError as exc:
            return failed_outcome(path, exc)
        if row.get("unread"):
            skipped = content_skip(path, data[:SNIFF_BYTES])
            if skipped is not None:
                return skipped
        return self._pool.submit((data, self._job))

    def _record(
        self, path: str, work: Future[HashOutcome] | HashOutcome | str
    ) -> dict[str, Any] | None:
        if isinstance(work, str):
            if not self._keep_skipped:
                return None
            return {"path": path, "status": SKIPPED, "matches": "[]", "error": work}
        outcome = work if isinstance(work, HashOutcome) else work.result()
        with single_threaded_searches():  # the hashing processes have this actor's cores
            result = self._matcher.verdict(outcome, self._options)
        return scan_record(path, result, self._with_hashes, "flat")

    def __del__(self) -> None:
        pool = getattr(self, "_pool", None)
        if pool is not None:
            pool.close()
