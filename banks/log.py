"""One bank's append-only log file: durable appends, and reads that follow its tail.

An append writes whole lines with one ``write`` on an ``O_APPEND`` descriptor and fsyncs the
file before returning, so a record the caller was told about survives a crash or a power loss.
A reader only ever takes complete lines (ending in a newline): a line still being written is
left for the next read, and a line that fails its checksum is reported and skipped. A writer
that finds an unterminated last line (its predecessor died mid-write, before telling anyone)
cuts it off before appending.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

from hashmatch.banks.records import BankRecord, checked_records, decode_line

__all__ = ["LOG_SUFFIX", "LogProblem", "LogRead", "append_lines", "read_tail", "repair_tail"]

LOG_SUFFIX = ".log"

_log = logging.getLogger("hashmatch.banks")

_READ_CHUNK = 1 << 20


@dataclass(frozen=True)
class LogProblem:
    path: str
    line: int
    reason: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.reason}; record skipped"


@dataclass
class LogRead:
    """Where a reader is in one log, and what it has read since the last call."""

    path: Path
    offset: int = 0
    line: int = 0
    inode: int | None = None
    records: list[BankRecord] = field(default_factory=list)
    problems: list[LogProblem] = field(default_factory=list)


def read_tail(position: LogRead) -> LogRead:
    """Read the complete lines after ``position`` (updated in place and returned, with this
    read's ``records`` and ``problems``). A file replaced under the same name (another inode)
    is read again from its start."""
    position.records, position.problems = [], []
    try:
        with open(position.path, "rb") as file:
            inode = os.fstat(file.fileno()).st_ino
            if position.inode is not None and inode != position.inode:
                position.offset, position.line = 0, 0
            position.inode = inode
            file.seek(position.offset)
            pending = b""
            while True:
                data = file.read(_READ_CHUNK)
                if not data:
                    break
                pending += data
                end = pending.rfind(b"\n")
                if end < 0:
                    continue
                complete, pending = pending[: end + 1], pending[end + 1 :]
                position.offset += len(complete)
                _decode_lines(position, complete)
    except FileNotFoundError:
        position.offset, position.line, position.inode = 0, 0, None
    return position


def _decode_lines(position: LogRead, complete: bytes) -> None:
    decoded: list[BankRecord] = []
    lines: list[int] = []
    for raw in complete.split(b"\n")[:-1]:
        position.line += 1
        try:
            decoded.append(decode_line(raw))
            lines.append(position.line)
        except ValueError as exc:
            _problem(position, position.line, str(exc))
    for line, checked in zip(lines, checked_records(decoded), strict=True):
        if isinstance(checked, str):
            _problem(position, line, checked)
        else:
            position.records.append(checked)
    position.problems.sort(key=lambda problem: problem.line)


def _problem(position: LogRead, line: int, reason: str) -> None:
    problem = LogProblem(str(position.path), line, reason)
    position.problems.append(problem)
    _log.warning("%s", problem)


def repair_tail(path: Path) -> int:
    """Cut an unterminated last line off ``path`` (the writer's crash before its fsync
    returned); returns the bytes removed. Only the one writer may call this."""
    try:
        with open(path, "rb+") as file:
            size = file.seek(0, os.SEEK_END)
            if size == 0:
                return 0
            keep = size
            while keep > 0:
                step = min(_READ_CHUNK, keep)
                file.seek(keep - step)
                block = file.read(step)
                newline = block.rfind(b"\n")
                if newline >= 0:
                    keep = keep - step + newline + 1
                    break
                keep -= step
            if keep == size:
                return 0
            file.truncate(keep)
            file.flush()
            os.fsync(file.fileno())
            _log.warning("%s: cut off %d bytes of an unfinished record", path, size - keep)
            return size - keep
    except FileNotFoundError:
        return 0


def append_lines(path: Path, data: bytes) -> None:
    """Append ``data`` (whole lines) and fsync; a new file's directory entry is fsynced too."""
    created = not path.exists()
    descriptor = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        view = memoryview(data)
        while view:
            written = os.write(descriptor, view)
            view = view[written:]
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
    if created:
        directory = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(directory)
        finally:
            os.close(directory)
