"""Reading hash list files into batches of raw rows: the syntax layer, no validation.

Formats: CSV with a header (long: a hash column and an algorithm column; or wide: one column
per algorithm, as ``hashmatch hash --format csv`` writes), ``ALGORITHM HASH [ID [LABEL]]``
lines (python-threatexchange's local format), plain hex per line, and JSONL with the CSV's
keys. UTF-8 with or without BOM (or UTF-16/32 with one), any line ending; blank lines and ``#``
comments are skipped in the line formats. Lines longer than :data:`MAX_LINE_CHARS` are
reported, never loaded.

Files are read in blocks and split into columns with C-level string operations, so a
ten-million-line list is read in seconds; rows come out in :class:`RowBatch` columns.
"""

from __future__ import annotations

import csv
import itertools
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

from hashmatch.errors import HashListError
from hashmatch.lists.columns import canonical_algorithm, canonical_column
from hashmatch.lists.quoted import split_quoted_records
from hashmatch.registry import algorithm_names

__all__ = [
    "LIST_FORMATS",
    "MAX_LINE_CHARS",
    "BATCH_ROWS",
    "RowBatch",
    "detect_format",
    "open_text",
    "read_batches",
]

LIST_FORMATS = ("csv", "lines", "hex", "jsonl")
MAX_LINE_CHARS = 1 << 20
BATCH_ROWS = 50_000
_BLOCK_CHARS = 1 << 22
_SNIFF_LINES = 20


@dataclass
class RowBatch:
    """Up to :data:`BATCH_ROWS` rows as parallel columns (``hash`` is ``""`` when missing)."""

    lines: list[int] = field(default_factory=list)
    algorithms: list[str | None] = field(default_factory=list)
    hashes: list[str] = field(default_factory=list)
    entry_ids: list[str | None] = field(default_factory=list)
    labels: list[str | None] = field(default_factory=list)
    lists: list[str | None] = field(default_factory=list)
    extras: list[dict[str, str] | None] = field(default_factory=list)
    problems: list[tuple[int, str, str]] = field(default_factory=list)
    """Syntax problems found while reading, as (line, kind, reason)."""
    rows: int = 0
    """Data rows read, including those with problems and skipped ones."""
    skipped: int = 0
    """Well-formed rows without a hash (failed ``hashmatch hash`` records)."""

    def add(
        self,
        line: int,
        algorithm: str | None,
        value: str,
        entry_id: str | None = None,
        label: str | None = None,
        list_name: str | None = None,
        extra: dict[str, str] | None = None,
    ) -> None:
        self.lines.append(line)
        self.algorithms.append(algorithm)
        self.hashes.append(value)
        self.entry_ids.append(entry_id)
        self.labels.append(label)
        self.lists.append(list_name)
        self.extras.append(extra)

    def reject(self, line: int, kind: str, reason: str) -> None:
        """Record a problem: ``kind`` is its category for counts (``malformed line``...)."""
        self.problems.append((line, kind, reason))

    def __len__(self) -> int:
        return len(self.lines)


_BOM_ENCODINGS = (
    (b"\xff\xfe\x00\x00", "utf-32"),
    (b"\x00\x00\xfe\xff", "utf-32"),
    (b"\xff\xfe", "utf-16"),
    (b"\xfe\xff", "utf-16"),
)
"""Byte order marks of the encodings spreadsheets export as "Unicode text", longest first."""


def open_text(path: Path) -> TextIO:
    """UTF-8 (BOM dropped), or UTF-16/32 when a BOM says so (a UTF-16 export read as UTF-8
    would be all NULs); undecodable bytes become U+FFFD rather than stopping the read."""
    with open(path, "rb") as file:
        head = file.read(4)
    encoding = next((name for bom, name in _BOM_ENCODINGS if head.startswith(bom)), "utf-8-sig")
    return open(path, encoding=encoding, errors="replace")


def detect_format(path: Path) -> str:
    """Guess a list's format from its name, else from its first data line."""
    suffix = path.suffix.lower()
    if suffix in (".jsonl", ".ndjson"):
        return "jsonl"
    if suffix in (".csv", ".tsv"):
        return "csv"
    with open_text(path) as file:
        for _ in range(_SNIFF_LINES):
            text = file.readline(MAX_LINE_CHARS)
            if not text:
                break
            stripped = text.strip()
            if not stripped or stripped.startswith("#"):
                continue
            if stripped.startswith("{"):
                return "jsonl"
            if "," in stripped:
                return "csv"
            return "lines" if len(stripped.split()) >= 2 else "hex"
    return "hex"


def read_batches(path: Path, list_format: str) -> Iterator[RowBatch]:
    """The rows of ``path`` in batches; raises :class:`HashListError` for a bad header."""
    if list_format not in LIST_FORMATS:
        raise HashListError(str(path), None, f"unknown list format {list_format!r}")
    with open_text(path) as file:
        blocks = _line_blocks(file)
        if list_format == "csv":
            yield from _csv_batches(path, blocks)
        elif list_format == "jsonl":
            yield from _jsonl_batches(blocks)
        else:
            yield from _token_batches(blocks, list_format)


@dataclass
class _Block:
    first: int
    """Line number of ``lines[0]``."""
    lines: list[str]
    overlong: list[int]
    """Line numbers (within this block's range) of lines too long to load."""


def _line_blocks(file: TextIO) -> Iterator[_Block]:
    """Lines in blocks of about 4 MiB, with bounded memory even for a giant line."""
    number = 1
    pending = ""
    skipping = False
    while True:
        text = file.read(_BLOCK_CHARS)
        if not text:
            if pending and not skipping:
                yield _Block(number, [pending], [])
            return
        overlong: list[int] = []
        if skipping:
            end = text.find("\n")
            if end < 0:
                continue
            text = text[end + 1 :]
            skipping = False
            number += 1
        lines = (pending + text).split("\n")
        pending = lines.pop()
        if len(pending) > MAX_LINE_CHARS:
            overlong.append(number + len(lines))
            lines.append("")
            pending = ""
            skipping = True
        for index, line in enumerate(lines):
            if len(line) > MAX_LINE_CHARS:
                overlong.append(number + index)
                lines[index] = ""
        yield from _bounded_blocks(number, lines, overlong)
        # An unfinished overlong line is counted once its end is found (see above).
        number += len(lines) - (1 if skipping else 0)


def _bounded_blocks(first: int, lines: list[str], overlong: list[int]) -> Iterator[_Block]:
    """The lines in blocks of at most :data:`BATCH_ROWS`: 4 MiB of two-byte lines is two
    million rows, and a batch that size of junk took 900 MB to read and reject."""
    if len(lines) <= BATCH_ROWS:
        yield _Block(first, lines, overlong)
        return
    for start in range(0, len(lines), BATCH_ROWS):
        part = lines[start : start + BATCH_ROWS]
        begin, end = first + start, first + start + len(part)
        yield _Block(begin, part, [n for n in overlong if begin <= n < end])


def _reject_overlong(batch: RowBatch, number: int) -> None:
    batch.rows += 1
    batch.reject(number, "line too long", f"line longer than {MAX_LINE_CHARS} characters")


def _loaded_lines(block: _Block, batch: RowBatch) -> Iterator[tuple[int, str]]:
    """(line number, text) of a block's lines, recording overlong ones as problems."""
    overlong = set(block.overlong)
    for offset, text in enumerate(block.lines):
        number = block.first + offset
        if number in overlong:
            _reject_overlong(batch, number)
        else:
            yield number, text


def _token_batches(blocks: Iterable[_Block], list_format: str) -> Iterator[RowBatch]:
    batch = RowBatch()
    for block in blocks:
        for number, text in _loaded_lines(block, batch):
            tokens = text.split()
            if not tokens or tokens[0].startswith("#"):
                continue
            batch.rows += 1
            if list_format == "hex":
                if len(tokens) != 1:
                    batch.reject(number, "malformed line", "expected one hex hash per line")
                else:
                    batch.add(number, None, tokens[0])
            elif len(tokens) < 2:
                batch.reject(number, "malformed line", "expected ALGORITHM HASH")
            else:
                entry_id = tokens[2] if len(tokens) > 2 else None
                label = " ".join(tokens[3:]) or None
                batch.add(number, tokens[0], tokens[1], entry_id, label)
        if batch.rows >= BATCH_ROWS:  # rows, not entries: rejected rows take memory too
            yield batch
            batch = RowBatch()
    if batch.rows:
        yield batch


def _jsonl_batches(blocks: Iterable[_Block]) -> Iterator[RowBatch]:
    batch = RowBatch()
    for block in blocks:
        for number, text in _loaded_lines(block, batch):
            stripped = text.strip()
            if not stripped or stripped.startswith("#"):
                continue
            batch.rows += 1
            try:
                record = json.loads(stripped)
            except json.JSONDecodeError as exc:
                batch.reject(number, "invalid JSON", f"invalid JSON: {exc.msg}")
                continue
            if not isinstance(record, dict):
                batch.reject(number, "invalid JSON", "expected a JSON object")
                continue
            _add_mapping(batch, number, {str(k): _text(v) for k, v in record.items()})
        if batch.rows >= BATCH_ROWS:  # rows, not entries: rejected rows take memory too
            yield batch
            batch = RowBatch()
    if batch.rows:
        yield batch


def _text(value: object) -> str | None:
    if value is None:
        return None
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        return ",".join(str(item) for item in value)
    return json.dumps(value) if isinstance(value, dict) else str(value)


def _add_mapping(batch: RowBatch, number: int, record: dict[str, str | None]) -> None:
    fields: dict[str, str | None] = {}
    extra: dict[str, str] = {}
    for key, value in record.items():
        name = canonical_column(key)
        if name is not None:
            fields[name] = value.strip() if isinstance(value, str) else value
        elif value not in (None, ""):
            extra[key] = value
    value = fields.get("hash") or ""
    if not value:
        batch.reject(number, "missing hash", "missing hash")
        return
    batch.add(
        number,
        fields.get("algorithm") or None,
        value,
        fields.get("id") or None,
        fields.get("label") or None,
        fields.get("list") or None,
        extra or None,
    )


def _csv_batches(path: Path, blocks: Iterator[_Block]) -> Iterator[RowBatch]:
    delimiter = "\t" if path.suffix.lower() == ".tsv" else ","
    header, header_line, block = _read_header(path, blocks, delimiter)
    layout = _CsvLayout(path, header, header_line)
    batch = RowBatch()
    quoted = False
    carried: _Block | None = None
    for current in _prepend(block, blocks):
        if carried is not None:  # a quoted record open at the end of the previous block
            current = _Block(carried.first, carried.lines + current.lines, current.overlong)
        quoted = quoted or '"' in "".join(current.lines)
        overlong = set(current.overlong)
        if quoted:  # from the first quote on, the csv module parses (quotes, embedded commas)
            carried = _quoted_rows(current, overlong, delimiter, layout, batch, final=False)
        else:
            layout.add_rows(batch, *_split_rows(current, overlong, delimiter, batch))
        if batch.rows >= BATCH_ROWS:  # rows, not entries: rejected rows take memory too
            yield batch
            batch = RowBatch()
    if carried is not None:
        _quoted_rows(carried, set(), delimiter, layout, batch, final=True)
    if batch.rows:
        yield batch


def _prepend(first: _Block | None, rest: Iterator[_Block]) -> Iterator[_Block]:
    if first is not None:
        yield first
    yield from rest


def _split_rows(
    block: _Block, overlong: set[int], delimiter: str, batch: RowBatch
) -> tuple[list[int], list[list[str]]]:
    """Unquoted CSV: a plain split per line (several times faster than the csv module)."""
    numbers = list(range(block.first, block.first + len(block.lines)))
    if not overlong:
        return numbers, [text.split(delimiter) for text in block.lines]
    for number in sorted(overlong):
        _reject_overlong(batch, number)
    kept = [i for i, n in enumerate(numbers) if n not in overlong]
    return [numbers[i] for i in kept], [block.lines[i].split(delimiter) for i in kept]


def _quoted_rows(
    block: _Block,
    overlong: set[int],
    delimiter: str,
    layout: _CsvLayout,
    batch: RowBatch,
    *,
    final: bool,
) -> _Block | None:
    """Add the block's records to ``batch``; returns the lines of a record left open."""
    found = split_quoted_records(
        block.lines, block.first, overlong, layout.width, delimiter, final=final
    )
    for number in found.overlong:
        _reject_overlong(batch, number)
    for number, kind, reason in found.problems:
        batch.rows += 1
        batch.reject(number, kind, reason)
    layout.add_rows(batch, found.numbers, found.rows)
    if found.carry is None:
        return None
    return _Block(block.first + found.carry, block.lines[found.carry :], [])


def _read_header(
    path: Path, blocks: Iterator[_Block], delimiter: str
) -> tuple[list[str], int, _Block | None]:
    for block in blocks:
        for offset, text in enumerate(block.lines):
            if text.strip():
                cells = next(csv.reader([text], delimiter=delimiter))
                header = [cell.strip().lstrip("\ufeff") for cell in cells]
                rest = _Block(block.first + offset + 1, block.lines[offset + 1 :], block.overlong)
                return header, block.first + offset, rest
    raise HashListError(str(path), None, "empty CSV: no header line")


class _CsvLayout:
    """How one CSV header maps onto our fields; turns split lines into batch rows."""

    def __init__(self, path: Path, header: list[str], header_line: int) -> None:
        self.width = len(header)
        fields = [canonical_column(name) for name in header]
        known = set(algorithm_names())
        self.wide = [
            (i, canonical_algorithm(name))
            for i, name in enumerate(header)
            if canonical_algorithm(name) in known and fields[i] is None
        ]
        if "hash" not in fields and not self.wide:
            raise HashListError(
                str(path),
                header_line,
                "CSV header has no hash column (hash, signal_str, indicator) and no algorithm"
                f" columns ({', '.join(sorted(known))}): {','.join(header)[:200]}",
            )
        position = {f: i for i, f in reversed(list(enumerate(fields))) if f}
        self.hash_at = position.get("hash")
        self.algorithm_at = position.get("algorithm")
        self.id_at = position.get("id")
        self.label_at = position.get("label")
        self.list_at = position.get("list")
        self.header = header
        wide_columns = {i for i, _ in self.wide}
        stripped = [name.strip() for name in header]
        self.path_at = stripped.index("path") if "path" in stripped else None
        self.error_at = stripped.index("error") if "error" in stripped else None
        excluded = {self.path_at, self.error_at} if self.wide else set()
        self.extras = [
            (i, name)
            for i, name in enumerate(header)
            if fields[i] is None and i not in wide_columns and i not in excluded
        ]

    def add_rows(self, batch: RowBatch, numbers: list[int], rows: list[list[str]]) -> None:
        """Append rows column by column (comprehensions, not a Python call per row)."""
        width = self.width
        if not all(len(c) == width for c in rows):  # rare: blank lines or wrong field counts
            kept_numbers, kept_rows = [], []
            for number, cells in zip(numbers, rows, strict=True):
                if len(cells) == 1 and not cells[0].strip():
                    continue
                if len(cells) != width:
                    batch.rows += 1
                    batch.reject(
                        number, "malformed line", f"expected {width} fields, got {len(cells)}"
                    )
                    continue
                kept_numbers.append(number)
                kept_rows.append(cells)
            numbers, rows = kept_numbers, kept_rows
        batch.rows += len(rows)
        if self.wide:
            for number, cells in zip(numbers, rows, strict=True):
                self._add_wide(batch, number, cells, self._extra(cells))
            return
        at = self.hash_at
        hashes = [c[at].strip() for c in rows]  # type: ignore[index]
        if not all(hashes):
            batch.problems.extend(
                (n, "missing hash", "missing hash")
                for n, h in zip(numbers, hashes, strict=True)
                if not h
            )
            keep = [i for i, h in enumerate(hashes) if h]
            numbers, rows, hashes = (
                [numbers[i] for i in keep],
                [rows[i] for i in keep],
                [hashes[i] for i in keep],
            )
        batch.lines.extend(numbers)
        batch.hashes.extend(hashes)
        for column, index in (
            (batch.algorithms, self.algorithm_at),
            (batch.entry_ids, self.id_at),
            (batch.labels, self.label_at),
            (batch.lists, self.list_at),
        ):
            if index is None:
                column.extend(itertools.repeat(None, len(rows)))
            else:
                column.extend([c[index].strip() or None for c in rows])
        if self.extras:
            batch.extras.extend([self._extra(c) for c in rows])
        else:
            batch.extras.extend(itertools.repeat(None, len(rows)))

    def _extra(self, cells: list[str]) -> dict[str, str] | None:
        return {name: cells[i] for i, name in self.extras if cells[i]} or None

    def _add_wide(
        self, batch: RowBatch, number: int, cells: list[str], extra: dict[str, str] | None
    ) -> None:
        """One row per algorithm column of a ``hashmatch hash`` CSV line."""
        entry_id = _cell(cells, self.id_at) or _cell(cells, self.path_at)
        hashes = [(algorithm, cells[i].strip()) for i, algorithm in self.wide if cells[i].strip()]
        if not hashes:
            batch.skipped += 1
            return
        for algorithm, value in hashes:
            batch.add(number, algorithm, value, entry_id, _cell(cells, self.label_at), None, extra)


def _cell(cells: list[str], index: int | None) -> str | None:
    if index is None:
        return None
    return cells[index].strip() or None
