"""Reading hash list files, line by line, into raw rows: the syntax layer, no validation.

Formats: CSV with a header (long: a hash column and an algorithm column; or wide: one column
per algorithm, as ``hashmatch hash --format csv`` writes), ``ALGORITHM HASH [ID [LABEL]]``
lines (python-threatexchange's local format), plain hex per line, and JSONL with the CSV's
keys. UTF-8 with or without BOM, any line ending; blank lines and ``#`` comments are skipped
in the line formats. Lines longer than :data:`MAX_LINE_CHARS` are reported, never loaded.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from hashmatch.errors import HashListError
from hashmatch.lists.columns import canonical_algorithm, canonical_column
from hashmatch.registry import algorithm_names

__all__ = ["LIST_FORMATS", "MAX_LINE_CHARS", "RawRow", "detect_format", "read_rows"]

LIST_FORMATS = ("csv", "lines", "hex", "jsonl")
MAX_LINE_CHARS = 1 << 20
_OVERLONG = "\x00overlong\x00"
_SNIFF_LINES = 20


@dataclass(slots=True)
class RawRow:
    """One hash as written in the file, before validation."""

    line: int
    algorithm: str | None
    hash: str | None
    entry_id: str | None = None
    label: str | None = None
    list_name: str | None = None
    extra: dict[str, str] | None = None
    problem: str | None = None
    """A syntax problem found while reading; the row is then invalid."""
    skipped: str | None = None
    """Why a well-formed row carries no hash (a failed ``hashmatch hash`` record)."""


def open_text(path: Path) -> TextIO:
    """UTF-8 (BOM dropped); undecodable bytes become U+FFFD rather than stopping the read."""
    return open(path, encoding="utf-8-sig", errors="replace", newline="")


def detect_format(path: Path) -> str:
    """Guess a list's format from its name, else from its first data line."""
    suffix = path.suffix.lower()
    if suffix in (".jsonl", ".ndjson"):
        return "jsonl"
    if suffix in (".csv", ".tsv"):
        return "csv"
    with open_text(path) as file:
        for _, text in _bounded_lines(file, limit=_SNIFF_LINES):
            stripped = text.strip()
            if not stripped or stripped.startswith("#") or stripped == _OVERLONG:
                continue
            if stripped.startswith("{"):
                return "jsonl"
            if "," in stripped:
                return "csv"
            return "lines" if len(stripped.split()) >= 2 else "hex"
    return "hex"


def read_rows(path: Path, list_format: str, *, wide_id_column: str = "path") -> Iterator[RawRow]:
    """The rows of ``path`` in ``list_format``; raises :class:`HashListError` for a bad header."""
    if list_format not in LIST_FORMATS:
        raise HashListError(str(path), None, f"unknown list format {list_format!r}")
    with open_text(path) as file:
        if list_format == "csv":
            yield from _csv_rows(path, file, wide_id_column)
        elif list_format == "jsonl":
            yield from _jsonl_rows(file)
        else:
            yield from _token_rows(file, list_format)


def _bounded_lines(file: TextIO, limit: int | None = None) -> Iterator[tuple[int, str]]:
    """(line number, text) with line endings removed; overlong lines come back as a marker."""
    number = 0
    while limit is None or number < limit:
        text = file.readline(MAX_LINE_CHARS)
        if not text:
            return
        number += 1
        if len(text) >= MAX_LINE_CHARS and not text.endswith("\n"):
            while text and not text.endswith("\n"):  # drain the rest of the giant line
                text = file.readline(MAX_LINE_CHARS)
            yield number, _OVERLONG
            continue
        yield number, text.rstrip("\r\n")


def _overlong(line: int) -> RawRow:
    return RawRow(line, None, None, problem=f"line longer than {MAX_LINE_CHARS} characters")


def _token_rows(file: TextIO, list_format: str) -> Iterator[RawRow]:
    for number, text in _bounded_lines(file):
        if text == _OVERLONG:
            yield _overlong(number)
            continue
        stripped = text.strip()
        if not stripped or stripped.startswith("#"):
            continue
        tokens = stripped.split()
        if list_format == "hex":
            if len(tokens) != 1:
                yield RawRow(number, None, None, problem="expected one hex hash per line")
            else:
                yield RawRow(number, None, tokens[0])
            continue
        if len(tokens) < 2:
            yield RawRow(number, None, None, problem="expected ALGORITHM HASH")
            continue
        entry_id = tokens[2] if len(tokens) > 2 else None
        label = " ".join(tokens[3:]) or None
        yield RawRow(number, tokens[0], tokens[1], entry_id, label)


def _jsonl_rows(file: TextIO) -> Iterator[RawRow]:
    for number, text in _bounded_lines(file):
        if text == _OVERLONG:
            yield _overlong(number)
            continue
        stripped = text.strip()
        if not stripped or stripped.startswith("#"):
            continue
        try:
            record = json.loads(stripped)
        except json.JSONDecodeError as exc:
            yield RawRow(number, None, None, problem=f"invalid JSON: {exc.msg}")
            continue
        if not isinstance(record, dict):
            yield RawRow(number, None, None, problem="expected a JSON object")
            continue
        yield _row_from_mapping(number, {str(k): _text(v) for k, v in record.items()})


def _text(value: object) -> str | None:
    if value is None:
        return None
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        return ",".join(str(item) for item in value)
    return json.dumps(value) if isinstance(value, dict) else str(value)


def _row_from_mapping(number: int, record: dict[str, str | None]) -> RawRow:
    fields: dict[str, str | None] = {}
    extra: dict[str, str] = {}
    for key, value in record.items():
        field = canonical_column(key)
        if field is not None:
            fields[field] = value.strip() if isinstance(value, str) else value
        elif value not in (None, ""):
            extra[key] = value  # type: ignore[assignment]
    return RawRow(
        number,
        fields.get("algorithm") or None,
        fields.get("hash") or None,
        fields.get("id") or None,
        fields.get("label") or None,
        fields.get("list") or None,
        extra or None,
        problem=None if fields.get("hash") else "missing hash",
    )


def _csv_lines(file: TextIO, overlong: list[int]) -> Iterator[str]:
    for number, text in _bounded_lines(file):
        if text == _OVERLONG:
            overlong.append(number)
            yield ""
        else:
            yield text


def _csv_rows(path: Path, file: TextIO, wide_id_column: str) -> Iterator[RawRow]:
    overlong: list[int] = []
    delimiter = "\t" if path.suffix.lower() == ".tsv" else ","
    reader = csv.reader(_csv_lines(file, overlong), delimiter=delimiter)
    header = _read_header(path, reader)
    fields = [canonical_column(name) for name in header]
    known = set(algorithm_names())
    wide = [
        (i, canonical_algorithm(name))
        for i, name in enumerate(header)
        if canonical_algorithm(name) in known and fields[i] is None
    ]
    if "hash" not in fields and not wide:
        raise HashListError(
            str(path),
            reader.line_num,
            "CSV header has no hash column (hash, signal_str, indicator) and no algorithm"
            f" columns ({', '.join(sorted(known))}): {','.join(header)[:200]}",
        )
    wide_columns = {i for i, _ in wide}
    id_index = next((i for i, name in enumerate(header) if name.strip() == wide_id_column), None)
    error_index = next((i for i, name in enumerate(header) if name.strip() == "error"), None)
    while True:
        try:
            cells = next(reader)
        except StopIteration:
            break
        except csv.Error as exc:
            yield RawRow(reader.line_num, None, None, problem=f"malformed CSV: {exc}")
            continue
        number = reader.line_num
        if overlong and overlong[-1] == number:
            yield _overlong(number)
            continue
        if not cells or (len(cells) == 1 and not cells[0].strip()):
            continue
        if len(cells) != len(header):
            yield RawRow(
                number,
                None,
                None,
                problem=f"expected {len(header)} fields, got {len(cells)}",
            )
            continue
        if not wide:
            yield _row_from_mapping(number, dict(zip(header, cells, strict=True)))
            continue
        yield from _wide_rows(number, header, cells, wide, wide_columns, id_index, error_index)


def _read_header(path: Path, reader: Iterator[list[str]]) -> list[str]:
    for cells in reader:
        if cells and any(cell.strip() for cell in cells):
            return [cell.strip().lstrip("\ufeff") for cell in cells]
    raise HashListError(str(path), None, "empty CSV: no header line")


def _wide_rows(
    number: int,
    header: list[str],
    cells: list[str],
    wide: list[tuple[int, str]],
    wide_columns: set[int],
    id_index: int | None,
    error_index: int | None,
) -> Iterator[RawRow]:
    """One row per algorithm column of a ``hashmatch hash`` CSV line."""
    entry_id = cells[id_index].strip() or None if id_index is not None else None
    extra = {
        header[i]: cell
        for i, cell in enumerate(cells)
        if i not in wide_columns and i != id_index and i != error_index and cell.strip()
    }
    hashes = [(algorithm, cells[i].strip()) for i, algorithm in wide if cells[i].strip()]
    if not hashes:
        reason = cells[error_index].strip() if error_index is not None else ""
        yield RawRow(number, None, None, entry_id, skipped=reason or "no hash in this row")
        return
    for algorithm, value in hashes:
        yield RawRow(number, algorithm, value, entry_id, None, None, extra or None)
