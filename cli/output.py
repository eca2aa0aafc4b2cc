"""One output helper for every command: jsonl, csv or a table, to stdout or a file.

jsonl and csv stream (one line per record as it is written, flushed), so a long run keeps what
it wrote if killed. CSV cells that a spreadsheet would run as a formula are prefixed with
``'``; table cells are plain text (no rich markup, control characters shown escaped).
Non-UTF-8 file names survive: in jsonl as ``\\udcXX`` escapes that decode back to the same
name, in csv as their original bytes.
"""

from __future__ import annotations

import csv
import io
import json
import sys
from collections.abc import Sequence
from enum import Enum
from typing import Any, Literal, Protocol, TextIO

from rich.console import Console
from rich.table import Table
from rich.text import Text

__all__ = [
    "OutputFormat",
    "RecordWriter",
    "choose_format",
    "open_writer",
    "print_error",
    "stderr_console",
]

_FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")


class OutputFormat(str, Enum):
    """Every command's ``--format``: ``jsonl`` (a JSON object per line, streamed), ``csv``,
    ``json`` (one JSON document: the records as an array, streamed), ``table`` (for people)."""

    jsonl = "jsonl"
    csv = "csv"
    json = "json"
    table = "table"


class RecordWriter(Protocol):
    def write(self, record: dict[str, Any]) -> None: ...

    def close(self) -> None: ...


def choose_format(requested: OutputFormat | None, path: str | None) -> OutputFormat:
    """The requested format, else a table for a person at a terminal, jsonl for a pipe."""
    if requested is not None:
        return requested
    return OutputFormat.table if sys.stdout.isatty() and path is None else OutputFormat.jsonl


def stderr_console() -> Console:
    """For messages on stderr; never wraps, so a long path or error stays one greppable line."""
    return Console(stderr=True, highlight=False, soft_wrap=True)


def print_error(message: object) -> None:
    """``error: MESSAGE`` on stderr, the one way every command reports a failure: the prefix
    styled on a terminal, the message shown as it is (paths and list lines are not markup)."""
    stderr_console().print(Text.assemble(("error:", "bold red"), " ", _inert_text(str(message))))


def open_writer(
    output_format: OutputFormat,
    columns: Sequence[str],
    path: str | None = None,
    *,
    append: bool = False,
    table_title: str | None = None,
) -> RecordWriter:
    """A writer for ``output_format`` to ``path`` (stdout when None or ``-``)."""
    stream = _open_stream(path, append, newline="" if output_format == OutputFormat.csv else None)
    if output_format == OutputFormat.jsonl:
        return _JsonlWriter(stream)
    if output_format == OutputFormat.json:
        return _JsonArrayWriter(stream)
    if output_format == OutputFormat.csv:
        return _CsvWriter(stream, columns, write_header=not (append and stream.tell() > 0))
    return _TableWriter(stream, columns, table_title)


def _open_stream(path: str | None, append: bool, newline: str | None) -> TextIO:
    if path is None or path == "-":
        if newline == "" and isinstance(sys.stdout, io.TextIOWrapper):
            sys.stdout.reconfigure(newline="")
        return sys.stdout
    mode: Literal["a", "w"] = "a" if append else "w"
    return open(path, mode, encoding="utf-8", errors="surrogateescape", newline=newline)


def _escape_cell(value: Any) -> Any:
    if isinstance(value, str) and value.startswith(_FORMULA_PREFIXES):
        return "'" + value
    return value


class _JsonlWriter:
    def __init__(self, stream: TextIO) -> None:
        self._stream = stream

    def write(self, record: dict[str, Any]) -> None:
        line = json.dumps(record, ensure_ascii=False)
        self._stream.write(line.encode("utf-8", "backslashreplace").decode("utf-8") + "\n")
        self._stream.flush()

    def close(self) -> None:
        if self._stream is not sys.stdout:
            self._stream.close()


class _JsonArrayWriter(_JsonlWriter):
    """The records as one JSON array, written as they come (valid once closed)."""

    def __init__(self, stream: TextIO) -> None:
        super().__init__(stream)
        self._first = True
        self._stream.write("[")

    def write(self, record: dict[str, Any]) -> None:
        self._stream.write("\n" if self._first else ",\n")
        self._first = False
        line = json.dumps(record, ensure_ascii=False)
        self._stream.write(line.encode("utf-8", "backslashreplace").decode("utf-8"))
        self._stream.flush()

    def close(self) -> None:
        self._stream.write("\n]\n" if not self._first else "]\n")
        self._stream.flush()
        super().close()


class _CsvWriter:
    def __init__(self, stream: TextIO, columns: Sequence[str], write_header: bool) -> None:
        self._stream = stream
        self._writer = csv.DictWriter(stream, fieldnames=list(columns), extrasaction="ignore")
        if write_header:
            self._writer.writeheader()

    def write(self, record: dict[str, Any]) -> None:
        row = {}
        for key, value in record.items():
            if isinstance(value, (list, dict)):
                value = json.dumps(value, ensure_ascii=False)
            row[key] = _escape_cell(value)
        self._writer.writerow(row)
        self._stream.flush()

    def close(self) -> None:
        if self._stream is not sys.stdout:
            self._stream.close()


class _TableWriter:
    """For people: collects the rows and prints one table at the end."""

    def __init__(self, stream: TextIO, columns: Sequence[str], title: str | None) -> None:
        self._stream = stream
        self._columns = list(columns)
        self._rows: list[list[Text]] = []
        self._title = title

    def write(self, record: dict[str, Any]) -> None:
        self._rows.append([_cell_text(record.get(column)) for column in self._columns])

    def close(self) -> None:
        title = None if self._title is None else _inert_text(self._title)
        table = Table(title=title, show_lines=False)
        for column in self._columns:
            table.add_column(column, overflow="fold")
        for row in self._rows:
            table.add_row(*row)
        Console(file=self._stream, highlight=False, soft_wrap=False).print(table)
        if self._stream is not sys.stdout:
            self._stream.close()


def _cell_text(value: Any) -> Text:
    if value is None:
        return Text("")
    if isinstance(value, (list, dict)):
        return _inert_text(json.dumps(value, ensure_ascii=False))
    return _inert_text(str(value).encode("utf-8", "replace").decode("utf-8"))


_CONTROL_ESCAPES = {c: f"\\x{c:02x}" for c in (*range(0x20), *range(0x7F, 0xA0)) if c != 0x0A}


def _inert_text(text: str) -> Text:
    """Labels, ids and paths come from lists and disks: shown as typed, never as rich markup
    (``[/]`` crashed the table) or terminal escapes (``\\x1b[2J`` would clear the screen)."""
    return Text(text.translate(_CONTROL_ESCAPES))
