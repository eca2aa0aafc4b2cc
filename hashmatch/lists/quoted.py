"""Quoted CSV records, which may span lines, cut out of a block of lines without losing any.

A quoted field may hold newlines (a label written over two lines), so one record can cover
several lines; that record is stored at the line it starts on, its newlines kept. An unbalanced
quote is the same syntax gone wrong: left to the csv module it swallows every following line
into one field, silently dropping the hashes on them. So a record that spans lines must end
within :data:`MAX_RECORD_LINES` lines, come out with the header's number of fields and run
over no line that is a whole row by itself; otherwise its first line is reported and parsing
resumes on the next line, so the good lines after a stray quote still load. A record still
open at the end of a block is carried over to the next block.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass, field

__all__ = ["MAX_RECORD_LINES", "QuotedRecords", "split_quoted_records"]

MAX_RECORD_LINES = 32
"""The most lines one quoted record may span; a quote open longer than that is unbalanced."""


@dataclass
class QuotedRecords:
    """What one block of lines held: rows by first line, problems, and an unfinished tail."""

    numbers: list[int] = field(default_factory=list)
    rows: list[list[str]] = field(default_factory=list)
    problems: list[tuple[int, str, str]] = field(default_factory=list)
    """(line, kind, reason) of lines that are no record."""
    overlong: list[int] = field(default_factory=list)
    """Line numbers of the lines too long to load that the block held."""
    carry: int | None = None
    """Index of the first line of a record still open at the end of a non-final block."""


class _LineFeed:
    """Lines for ``csv.reader``, ending the input where a record may not continue."""

    def __init__(self, lines: list[str], skipped: set[int]) -> None:
        self.lines = lines
        self.skipped = skipped
        self.next = 0
        self.record_start = 0
        self.stopped: str | None = None
        """Why the feed last ran dry: ``end``, ``skipped`` (an overlong line) or ``limit``."""

    def __iter__(self) -> _LineFeed:
        return self

    def __next__(self) -> str:
        index = self.next
        if index >= len(self.lines):
            self.stopped = "end"
        elif index in self.skipped:
            self.stopped = "skipped"
        elif index - self.record_start >= MAX_RECORD_LINES:
            self.stopped = "limit"
        else:
            self.next = index + 1
            return self.lines[index] + "\n"  # the newline a multi-line field keeps
        raise StopIteration


def split_quoted_records(
    lines: list[str],
    first: int,
    overlong: set[int],
    width: int,
    delimiter: str,
    *,
    final: bool,
) -> QuotedRecords:
    """Split ``lines`` (numbered from ``first``) into records of the csv module's syntax.

    ``overlong`` holds the numbers of lines not loaded (too long); ``width`` is the header's
    field count; ``final`` says no block follows, so an open record cannot be carried over.
    """
    found = QuotedRecords()
    feed = _LineFeed(lines, {number - first for number in overlong})
    reader = csv.reader(feed, delimiter=delimiter)
    while True:
        start = feed.record_start = feed.next
        feed.stopped = None
        try:
            cells = next(reader)
        except StopIteration:
            if feed.stopped != "skipped":
                return found
            found.overlong.append(first + start)
            feed.next += 1
            continue
        except csv.Error as exc:
            found.problems.append((first + start, "malformed CSV", f"malformed CSV: {exc}"))
            feed.next = start + 1
            reader = csv.reader(feed, delimiter=delimiter)
            continue
        continued = lines[start + 1 : feed.next]
        if feed.stopped is None and _is_one_record(continued, cells, width, delimiter):
            found.numbers.append(first + start)
            found.rows.append(cells or [""])
            continue
        if feed.stopped == "end" and not final:
            found.carry = start
            return found
        found.problems.append((first + start, "malformed CSV", _UNBALANCED.format(width)))
        feed.next = start + 1
        reader = csv.reader(feed, delimiter=delimiter)


_UNBALANCED = (
    f"malformed CSV: unbalanced quote (the quoted field opened here does not close into one"
    f" record of {{}} fields within {MAX_RECORD_LINES} lines)"
)


def _is_one_record(continued: list[str], cells: list[str], width: int, delimiter: str) -> bool:
    """True for a one-line record, or a multi-line one that is not a stray quote's swallow.

    A record spanning lines must have the header's field count, and none of the lines it
    continues onto may be a whole row of its own (those are the rows a stray quote eats).
    """
    if not continued:
        return True
    return len(cells) == width and all(text.count(delimiter) != width - 1 for text in continued)
