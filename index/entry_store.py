"""The list entries of a version, in SQLite: the schema, the build's writer, every read query.

Codes live in numpy arrays; everything a match reports about an entry (its list, id, label,
metadata) lives here, one row per entry, the row id being what the code tables point to. A
build writes the rows from a forked process while it parses (:class:`EntryWriter`); a loaded
version reads them through one shared read-only connection (:class:`EntryStore`). Nothing else
in hashmatch writes SQL.
"""

from __future__ import annotations

import json
import multiprocessing
import multiprocessing.dummy
import os
import queue
import sqlite3
import threading
import weakref
from contextlib import closing, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hashmatch.errors import IndexBuildError, IndexIntegrityError

__all__ = [
    "ENTRY_LOOKUP",
    "SCHEMA",
    "EntryRecord",
    "EntryStore",
    "EntryWriter",
    "Record",
    "add_entry_lookup",
    "store_problems",
]

SCHEMA = """
CREATE TABLE entries (
    rowid INTEGER PRIMARY KEY,
    algorithm TEXT NOT NULL,
    list TEXT NOT NULL,
    entry_id TEXT,
    label TEXT,
    metadata TEXT,
    source_line INTEGER
);
"""
ENTRY_LOOKUP = "entries_by_entry_id"
"""The index that finds an entry's rows of one algorithm by list and id (for confirmation)."""

Record = tuple[int, str, str, str | None, str | None, str | None, int]
"""One row as the writer takes it: rowid, algorithm, list, entry id, label, metadata JSON,
line in the source list."""


@dataclass(frozen=True)
class EntryRecord:
    rowid: int
    list: str
    entry_id: str | None
    label: str | None
    metadata: dict[str, str]


def add_entry_lookup(path: Path) -> None:
    """Index the entries by (entry id, list, algorithm), once all rows are written."""
    with closing(sqlite3.connect(path)) as connection:
        connection.execute(f"CREATE INDEX {ENTRY_LOOKUP} ON entries (entry_id, list, algorithm)")
        connection.commit()


class EntryStore:
    """A version's entries, read-only; one connection for the version's lifetime, shared by
    threads in turn (a lookup's queries take microseconds)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        uri = path.resolve().as_uri() + "?mode=ro&immutable=1"
        try:
            # opened now: the open file keeps the entries readable even after newer builds
            # delete this version's directory
            self._database = sqlite3.connect(uri, uri=True, check_same_thread=False)
        except sqlite3.Error as exc:
            raise IndexIntegrityError(f"{path}: {exc}") from None
        # Python's sqlite3.Connection sits in a reference cycle with its statement cache, so
        # dropping it leaves the file open until the cycle collector runs (in a long-lived
        # process, possibly much later): close it as soon as this store is unreferenced.
        weakref.finalize(self, self._database.close)
        self._lock = threading.Lock()
        self._query("SELECT count(*) FROM entries WHERE rowid = 1", [])
        query = "SELECT 1 FROM sqlite_master WHERE type = 'index' AND name = ?"
        self.has_entry_lookup = bool(self._query(query, [ENTRY_LOOKUP]))
        """False for versions built with one perceptual algorithm or by an older hashmatch."""

    def entries(self, rowids: list[int]) -> dict[int, EntryRecord]:
        """The list entries with these row ids."""
        found: dict[int, EntryRecord] = {}
        for start in range(0, len(rowids), 900):  # SQLite's bound-parameter limit
            batch = rowids[start : start + 900]
            marks = ",".join("?" * len(batch))
            query = (
                "SELECT rowid, list, entry_id, label, metadata FROM entries"
                f" WHERE rowid IN ({marks})"
            )
            for rowid, list_name, entry_id, label, metadata in self._query(query, batch):
                found[rowid] = EntryRecord(
                    rowid, list_name, entry_id, label, json.loads(metadata) if metadata else {}
                )
        return found

    def rows_of_entry(self, algorithm: str, list_name: str, entry_id: str) -> list[int] | None:
        """The entry rows of ``algorithm`` for one list entry; None when this version has no
        lookup by entry."""
        if not self.has_entry_lookup:
            return None
        query = "SELECT rowid FROM entries WHERE entry_id = ? AND list = ? AND algorithm = ?"
        return [row for (row,) in self._query(query, [entry_id, list_name, algorithm])]

    def _query(self, query: str, parameters: list[Any]) -> list[tuple[Any, ...]]:
        try:
            with self._lock:
                return self._database.execute(query, parameters).fetchall()
        except sqlite3.Error as exc:
            raise IndexIntegrityError(f"{self.path}: {exc}") from None


def store_problems(path: Path) -> list[str]:
    """What is wrong with an entry store (SQLite's own check and a read of every row)."""
    uri = path.resolve().as_uri() + "?mode=ro&immutable=1"
    try:
        with closing(sqlite3.connect(uri, uri=True)) as connection:
            result = connection.execute("PRAGMA quick_check").fetchone()[0]
            connection.execute("SELECT count(*) FROM entries").fetchone()
    except sqlite3.Error as exc:
        return [f"{path.name}: {exc}"]
    return [] if result == "ok" else [f"{path.name}: {result}"]


class EntryWriter:
    """Inserts entry rows beside the parsing, so SQLite's work (about a third of an ingest)
    overlaps with it: in a forked process when this process has no other threads (forking
    then is safe, and nothing is re-imported), else in a thread."""

    def __init__(self, path: Path) -> None:
        forkable = (
            threading.active_count() == 1 and "fork" in multiprocessing.get_all_start_methods()
        )
        context: Any = multiprocessing.get_context("fork") if forkable else multiprocessing.dummy
        self._queue = context.Queue(maxsize=4)
        self._results = context.Queue()
        self._process = context.Process(
            target=_write_entries, args=(str(path), self._queue, self._results, os.getpid())
        )
        self._process.daemon = True
        self._process.start()
        self._path = path
        self._closed = False
        self._error: str | None = None

    def put(self, records: list[Record]) -> None:
        if not self._process.is_alive():
            self.close()
        self._queue.put(records)

    def __enter__(self) -> EntryWriter:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, *_: object) -> None:
        try:
            self.close()
        except IndexBuildError:
            if exc_type is None:  # do not hide the error that stopped the build
                raise

    def close(self) -> None:
        """Finish writing (idempotent); raises if writing failed."""
        if not self._closed:
            self._closed = True
            if self._process.is_alive():
                self._queue.put(None)
            self._process.join()
            self._error = None if self._results.empty() else self._results.get()
            if self._error is None and self._process.exitcode != 0:
                self._error = f"the writer process exited with code {self._process.exitcode}"
        if self._error is not None:
            raise IndexBuildError(f"{self._path}: writing entries failed: {self._error}")


def _write_entries(path: str, records_queue: Any, results: Any, builder: int) -> None:
    """The writer process: one transaction, then a result (None, or the error text).

    If the builder dies (killed mid-build) the writer notices it was orphaned and exits
    rather than waiting forever on a queue nobody will fill.
    """
    received_end = False
    try:
        database = sqlite3.connect(path, isolation_level=None)
        database.executescript("PRAGMA journal_mode=OFF; PRAGMA synchronous=OFF;" + SCHEMA)
        database.execute("BEGIN")
        while (records := _next_records(records_queue, builder)) is not None:
            _insert_entries(database, records)
        received_end = True
        database.execute("COMMIT")  # most pages reach the file here: a full disk fails here
        database.close()
    except _BuilderGone:
        return
    except BaseException as exc:
        results.put(f"{type(exc).__name__}: {exc}")
        if not received_end:  # drain so the builder never blocks on a full queue
            with suppress(_BuilderGone):
                while _next_records(records_queue, builder) is not None:
                    pass


class _BuilderGone(Exception):
    """The builder died: nobody will send the end of the records or read the result."""


def _next_records(records_queue: Any, builder: int) -> list[Record] | None:
    """The next batch of records (None: the end), for as long as the builder lives.

    ``builder`` is the builder's pid taken before the fork: a builder killed before this
    process ran would otherwise go unnoticed (its parent would already be init).
    """
    while True:
        try:
            return records_queue.get(timeout=1.0)
        except queue.Empty:
            if os.getpid() != builder and os.getppid() != builder:
                raise _BuilderGone from None


_ROWS_PER_INSERT = 100
_INSERT_MANY = "INSERT INTO entries VALUES " + ",".join(
    ["(?, ?, ?, ?, ?, ?, ?)"] * _ROWS_PER_INSERT
)


def _insert_entries(database: sqlite3.Connection, records: list[Record]) -> None:
    """Insert with 100 rows per statement: about twice as fast as one row per statement."""
    whole = len(records) - len(records) % _ROWS_PER_INSERT
    if whole:
        flat = [value for record in records[:whole] for value in record]
        step = _ROWS_PER_INSERT * 7
        database.executemany(_INSERT_MANY, (flat[i : i + step] for i in range(0, len(flat), step)))
    if whole < len(records):
        database.executemany("INSERT INTO entries VALUES (?, ?, ?, ?, ?, ?, ?)", records[whole:])
