"""A bank directory: one log per bank (``NAME.log``), read by anyone, written by one writer.

:class:`BankDirectory` reads every log's new lines into :class:`~hashmatch.banks.state.BankState`s
(any number of readers, in any processes). :class:`BankWriter` appends: it holds the
directory's writer lock (``.writer.lock``, ``flock``) for as long as it lives, so a second
writer (another ``hashmatch serve --bank-writer``, a ``hashmatch bank add`` while a server
writes) is refused with the holder named; the server processes of the one writing instance
share their supervisor's lock and take turns through ``.append.lock``. Each append bumps
``.changes`` (a byte, not synced), so readers on the same file system notice it on their next
lookup with one ``stat``; polling is the backstop.
"""

from __future__ import annotations

import errno
import fcntl
import os
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hashmatch.banks.log import (
    LOG_SUFFIX,
    LogProblem,
    LogRead,
    append_lines,
    read_tail,
    repair_tail,
)
from hashmatch.banks.records import (
    BANK_NAME,
    ENABLED,
    MAX_NOTE,
    NO_SIGNALS,
    BankRecord,
    check_bank_name,
    check_disable_until,
    checked_signal_sets,
    encode_line,
    validated_signals,
)
from hashmatch.banks.state import BankEntry, BankState, ExclusionKey
from hashmatch.errors import BankError, BankLockedError
from hashmatch.index.artifact import BANKS

__all__ = ["BankDirectory", "BankWriter", "Change", "NewContent", "default_bank_directory"]

WRITER_LOCK = ".writer.lock"
APPEND_LOCK = ".append.lock"
CHANGES = ".changes"
_CHANGES_LIMIT = 1 << 16

Change = tuple[str, str, Any]
"""``(bank, kind, what)``: kind ``entry`` (a content id), ``exclusion`` (its key) or ``bank``."""


def default_bank_directory(index: str | Path) -> Path:
    """Where an index's banks live unless a directory is given: ``<index>/banks``."""
    return Path(index) / BANKS


@dataclass(frozen=True)
class NewContent:
    """One content to add: its signals (``{algorithm: hex}``) and what HMA keeps with it."""

    signals: dict[str, str]
    note: str | None = None
    metadata: dict[str, Any] | None = None
    uri: str | None = None
    disable_until_ts: int = ENABLED


class BankDirectory:
    """Every bank of a directory as its logs say, read forward on :meth:`refresh`."""

    def __init__(
        self, path: str | Path, on_changes: Callable[[list[Change]], None] | None = None
    ) -> None:
        self.path = Path(path)
        self.on_changes = on_changes
        """Called with every refresh's changes, under this directory's lock (the overlay)."""
        self.banks: dict[str, BankState] = {}
        self.problems: list[LogProblem] = []
        """The latest unreadable lines (at most 100), oldest first."""
        self.problem_count = 0
        self._positions: dict[str, LogRead] = {}
        self._hint: tuple[int, int, int] | None = None
        self._changes_path = os.fspath(self.path / CHANGES)
        """A string: a lookup stats it, and a Path's joins cost more than the stat."""
        self._max_id = 0
        self._lock = threading.RLock()

    def refresh(self) -> list[Change]:
        """Read what every log gained since the last call; returns what changed."""
        with self._lock:
            self._hint = self._changes_hint()
            changes: list[Change] = []
            for path in sorted(self.path.glob(f"*{LOG_SUFFIX}")):
                name = path.name[: -len(LOG_SUFFIX)]
                if not BANK_NAME.fullmatch(name):
                    continue
                position = self._positions.setdefault(name, LogRead(path))
                read_tail(position)
                if position.problems:
                    self.problem_count += len(position.problems)
                    self.problems = (self.problems + position.problems)[-100:]
                changes.extend(self._fold(name, position.records))
            if changes and self.on_changes is not None:
                self.on_changes(changes)
            return changes

    def fold_written(self, name: str, records: list[BankRecord], written: int) -> list[Change]:
        """Fold in records this process has just appended (``written`` bytes, right after
        what the last refresh read, with the append lock and this directory's lock held since
        that refresh): the same as reading them back, without decoding and checking them
        again."""
        with self._lock:
            position = self._positions.setdefault(name, LogRead(self.path / f"{name}{LOG_SUFFIX}"))
            position.offset += written
            position.line += len(records)
            changes = self._fold(name, records)
            if changes and self.on_changes is not None:
                self.on_changes(changes)
            return changes

    def _fold(self, name: str, records: list[BankRecord]) -> list[Change]:
        if not records:
            return []
        state = self.banks.setdefault(name, BankState(name))
        changes: list[Change] = []
        for kind, what in state.apply(records):
            changes.append((name, kind, what))
            if kind == "entry":
                self._max_id = max(self._max_id, what)
        return changes

    def locked(self) -> threading.RLock:
        """Held while the states change: what reads them whole (a new overlay) takes it."""
        return self._lock

    def changed_since_refresh(self) -> bool:
        """Whether a writer has appended since the last :meth:`refresh` (one ``stat``)."""
        return self._changes_hint() != self._hint

    def _changes_hint(self) -> tuple[int, int, int]:
        try:
            status = os.stat(self._changes_path)
        except OSError:
            return (0, 0, 0)
        return (status.st_ino, status.st_size, status.st_mtime_ns)

    def bank(self, name: str) -> BankState:
        """The existing bank ``name``; BankError 404 otherwise."""
        state = self.banks.get(name)
        if state is None or not state.exists:
            raise BankError(f"bank '{name}' not found", 404)
        return state

    def existing(self) -> list[BankState]:
        return [state for _, state in sorted(self.banks.items()) if state.exists]

    def content(self, name: str, content: int) -> BankEntry:
        entry = self.bank(name).entries.get(content)
        if entry is None or entry.deleted:
            raise BankError(f"content '{content}' not found", 404)
        return entry

    def max_id(self) -> int:
        """The largest content id of any bank, ever (ids are never reused)."""
        return self._max_id


class BankWriter:
    """Appends to a bank directory's logs; the only process that may (see the module's notes).

    ``shared_lock``: this process belongs to an instance whose supervisor holds the writer
    lock (a ``hashmatch serve --bank-writer`` server process)."""

    def __init__(
        self,
        path: str | Path,
        *,
        directory: BankDirectory | None = None,
        shared_lock: bool = False,
    ) -> None:
        self.path = Path(path)
        self.path.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.directory = directory or BankDirectory(self.path)
        self._writer_lock = None if shared_lock else acquire_writer_lock(self.path)
        self._append_descriptor = os.open(self.path / APPEND_LOCK, os.O_RDWR | os.O_CREAT, 0o600)
        self._thread_lock = threading.Lock()

    def close(self) -> None:
        os.close(self._append_descriptor)
        if self._writer_lock is not None:
            os.close(self._writer_lock)
            self._writer_lock = None

    def __enter__(self) -> BankWriter:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- banks ------------------------------------------------------------------------------

    def create_bank(self, name: str, ratio: float = 1.0, by: str | None = None) -> BankState:
        check_bank_name(name)
        ratio = _ratio(ratio)

        def make(
            state: BankState | None, ids: Callable[[], int]
        ) -> list[tuple[str, dict[str, Any]]]:
            if state is not None and state.exists:
                raise BankError("Bank already exists", 403)
            return [("create", {"ratio": ratio})]

        self._commit(name, make, by)
        return self.directory.bank(name)

    def update_bank(self, name: str, ratio: float, by: str | None = None) -> BankState:
        ratio = _ratio(ratio)

        def make(
            state: BankState | None, ids: Callable[[], int]
        ) -> list[tuple[str, dict[str, Any]]]:
            _existing(name, state)
            return [("update", {"ratio": ratio})]

        self._commit(name, make, by)
        return self.directory.bank(name)

    def drop_bank(self, name: str, by: str | None = None) -> bool:
        """Delete a bank and its contents; False if there was none (not an error, as in HMA)."""
        dropped = False

        def make(
            state: BankState | None, ids: Callable[[], int]
        ) -> list[tuple[str, dict[str, Any]]]:
            nonlocal dropped
            dropped = state is not None and state.exists
            return [("drop", {})] if dropped else []

        self._commit(name, make, by)
        return dropped

    # -- contents ---------------------------------------------------------------------------

    def add(
        self, name: str, contents: Iterable[NewContent], by: str | None = None
    ) -> list[BankEntry]:
        """Add contents (each checked first: one bad hash adds nothing); returns them with
        their new ids, durable when this returns."""
        items = _checked_contents(list(contents))
        new_ids: list[int] = []

        def make(
            state: BankState | None, ids: Callable[[], int]
        ) -> list[tuple[str, dict[str, Any]]]:
            _existing(name, state)
            operations = []
            for item in items:
                content = ids()
                new_ids.append(content)
                fields: dict[str, Any] = {"id": content, "signals": item.signals}
                for key in ("note", "metadata", "uri"):
                    if getattr(item, key) is not None:
                        fields[key] = getattr(item, key)
                if item.disable_until_ts != ENABLED:
                    fields["disable_until_ts"] = item.disable_until_ts
                operations.append(("add", fields))
            return operations

        self._commit(name, make, by)
        bank = self.directory.bank(name)
        return [bank.entries[content] for content in new_ids]

    def set_disabled_until(
        self, name: str, content: int, disable_until_ts: int, by: str | None = None
    ) -> BankEntry:
        value = check_disable_until(disable_until_ts, time.time())

        def make(
            state: BankState | None, ids: Callable[[], int]
        ) -> list[tuple[str, dict[str, Any]]]:
            self.directory.content(name, content)
            return [("set", {"id": content, "disable_until_ts": value})]

        self._commit(name, make, by)
        return self.directory.content(name, content)

    def delete(self, name: str, content: int, by: str | None = None) -> int:
        """Delete one content; the rows deleted (0 or 1, as HMA answers)."""
        deleted = 0

        def make(
            state: BankState | None, ids: Callable[[], int]
        ) -> list[tuple[str, dict[str, Any]]]:
            nonlocal deleted
            _existing(name, state)
            entry = state.entries.get(content) if state is not None else None
            deleted = int(entry is not None and not entry.deleted)
            return [("delete", {"id": content})] if deleted else []

        self._commit(name, make, by)
        return deleted

    # -- exclusions -------------------------------------------------------------------------

    def exclude(
        self, name: str, keys: Iterable[ExclusionKey], by: str | None = None, *, undo: bool = False
    ) -> list[ExclusionKey]:
        """Record hashes or list entries as confirmed false positives (``undo``: no longer);
        returns the keys, hashes normalised."""
        checked = [_checked_exclusion(key) for key in keys]
        if not checked:
            raise BankError("no exclusions given")

        def make(
            state: BankState | None, ids: Callable[[], int]
        ) -> list[tuple[str, dict[str, Any]]]:
            _existing(name, state)
            op = "include" if undo else "exclude"
            return [
                (op, {"algorithm": a, "hash": b} if kind == "hash" else {"list": a, "entry": b})
                for kind, a, b in checked
            ]

        self._commit(name, make, by)
        return checked

    # -- the append -------------------------------------------------------------------------

    def _commit(
        self,
        name: str,
        make: Callable[[BankState | None, Callable[[], int]], list[tuple[str, dict[str, Any]]]],
        by: str | None,
    ) -> list[BankRecord]:
        """Catch up, let ``make`` decide the records on the state as it is, append them
        durably, fold them in: all under the append lock, so checks and ids see every
        earlier record of every process."""
        # the directory's lock too: a refresh by another thread (a follower's poll) between
        # the append and its fold would read the lines and then see them counted twice
        with self._thread_lock, self.directory.locked():
            fcntl.flock(self._append_descriptor, fcntl.LOCK_EX)
            try:
                self.directory.refresh()
                state = self.directory.banks.get(name)
                next_id = [self.directory.max_id()]

                def allocate() -> int:
                    next_id[0] += 1
                    return next_id[0]

                operations = make(state, allocate)
                if not operations:
                    return []
                now = time.time()
                first = (state.last_seq if state is not None else 0) + 1
                records = [
                    BankRecord(op, first + number, now, by, fields)
                    for number, (op, fields) in enumerate(operations)
                ]
                path = self.path / f"{name}{LOG_SUFFIX}"
                _end_with_newline(path)
                data = b"".join(encode_line(r) for r in records)
                append_lines(path, data)
                self._bump_changes()
                # in, and in a follower's overlay, before the call returns
                self.directory.fold_written(name, records, len(data))
            finally:
                fcntl.flock(self._append_descriptor, fcntl.LOCK_UN)
        return records

    def _bump_changes(self) -> None:
        path = self.path / CHANGES
        descriptor = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            if os.fstat(descriptor).st_size >= _CHANGES_LIMIT:
                os.ftruncate(descriptor, 0)
            os.write(descriptor, b".")
        finally:
            os.close(descriptor)


def acquire_writer_lock(path: Path) -> int:
    """Take ``path``'s writer lock for this process's life (and its children's, when they
    inherit the descriptor); BankLockedError naming the holder if another process has it."""
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    lock_path = path / WRITER_LOCK
    descriptor = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        os.close(descriptor)
        if exc.errno not in (errno.EAGAIN, errno.EACCES):
            raise
        try:
            holder = lock_path.read_text(encoding="utf-8", errors="replace").strip() or "unknown"
        except OSError:
            holder = "unknown"
        raise BankLockedError(
            f"{path}: another process writes these banks ({holder}); one writer at a time:"
            " send the change to it (its curation routes), or stop it first"
        ) from None
    os.ftruncate(descriptor, 0)
    os.write(
        descriptor,
        f"pid {os.getpid()}, since {time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())}".encode(),
    )
    return descriptor


def _end_with_newline(path: Path) -> None:
    """Cut a torn last line (a writer process killed mid-write) before appending after it."""
    try:
        with open(path, "rb") as file:
            size = file.seek(0, os.SEEK_END)
            if size == 0:
                return
            file.seek(size - 1)
            last = file.read(1)
    except FileNotFoundError:
        return
    if last != b"\n":
        repair_tail(path)


def _existing(name: str, state: BankState | None) -> BankState:
    if state is None or not state.exists:
        raise BankError(f"bank '{name}' not found", 404)
    return state


def _ratio(value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1:
        raise BankError("enabled_ratio must be a number between 0 and 1")
    return float(value)


def _checked_contents(contents: list[NewContent]) -> list[NewContent]:
    """Every content checked (signals in one validation batch); BankError naming the first
    bad one, so a bulk add is all or nothing."""
    if not contents:
        raise BankError(NO_SIGNALS)
    now = time.time()
    checked = []
    for number, (item, signals) in enumerate(
        zip(contents, checked_signal_sets([c.signals for c in contents]), strict=True)
    ):
        where = f"content {number + 1}" if len(contents) > 1 else "signals"
        if isinstance(signals, str):
            raise BankError(signals if signals == NO_SIGNALS else f"{where}: {signals}")
        for key in ("note", "uri"):
            value = getattr(item, key)
            if value is not None and (not isinstance(value, str) or len(value) > MAX_NOTE):
                raise BankError(f"{where}: {key} must be a string of at most {MAX_NOTE} characters")
        metadata = item.metadata
        if metadata is not None and (
            not isinstance(metadata, dict) or len(repr(metadata)) > MAX_NOTE
        ):
            raise BankError(f"{where}: metadata must be an object of at most {MAX_NOTE} characters")
        check_disable_until(item.disable_until_ts, now)
        checked.append(
            NewContent(signals, item.note, item.metadata, item.uri, item.disable_until_ts)
        )
    return checked


def _checked_exclusion(key: ExclusionKey) -> ExclusionKey:
    if not isinstance(key, tuple) or len(key) != 3:
        raise BankError("an exclusion is ('hash', algorithm, hex) or ('entry', list, entry id)")
    kind, first, second = key
    if kind == "hash":
        algorithm, value = next(iter(validated_signals({first: second}, "exclusion").items()))
        return ("hash", algorithm, value)
    if kind == "entry" and isinstance(first, str) and first and isinstance(second, str) and second:
        return ("entry", first, second)
    raise BankError("an exclusion is ('hash', algorithm, hex) or ('entry', list, entry id)")
