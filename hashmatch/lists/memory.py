"""Hash lists a program already holds in memory, read under the same rules as list files.

A build from ``hashmatch.EntryList`` (hashes of images just hashed, rows from a database, a
moderators' bank) goes through the same validation as a file: wrong lengths, non-hex digits,
unknown algorithms and degenerate hashes are rejected with their position in the iterable as
the line, and the same ``max_invalid`` policy applies. The checksum recorded for the list is
taken over a canonical text of its entries, so the same entries give the same checksum.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Iterator

from hashmatch.hashes import Hash
from hashmatch.lists.reader import DEFAULT_MAX_INVALID, ListEntry, ListReading
from hashmatch.lists.readers import BATCH_ROWS, RowBatch

__all__ = ["ENTRIES_FORMAT", "EntryLike", "EntryListReader"]

ENTRIES_FORMAT = "entries"
"""The ``format`` a build report gives a list read from memory."""

EntryLike = (
    ListEntry
    | tuple[str, Hash | str]
    | tuple[str, Hash | str, str | None]
    | tuple[str, Hash | str, str | None, str | None]
    | tuple[str, Hash | str, str | None, str | None, str | None]
)
"""A :class:`ListEntry`, or ``(algorithm, hash, list, entry id, label)`` with the trailing
fields optional; the hash a :class:`Hash` or hex, ``list`` None for the list's own name."""


class EntryListReader(ListReading):
    """Reads ``entries`` (iterated once) as the list ``list_name``."""

    def __init__(
        self,
        entries: Iterable[EntryLike],
        *,
        list_name: str = "entries",
        algorithm: str | None = None,
        strict: bool = False,
        max_invalid: float | str = DEFAULT_MAX_INVALID,
    ) -> None:
        super().__init__(
            f"<{list_name}>",
            list_name,
            ENTRIES_FORMAT,
            algorithm=algorithm,
            strict=strict,
            max_invalid=max_invalid,
        )
        self._entries = entries
        self._checksum = hashlib.sha256()

    def _batches(self) -> Iterator[RowBatch]:
        batch = RowBatch()
        for line, item in enumerate(self._entries, start=1):
            batch.rows += 1
            fields = _fields(item)
            if isinstance(fields, str):
                batch.reject(line, "malformed entry", fields)
            else:
                algorithm, value, list_name, entry_id, label, extra = fields
                batch.add(line, algorithm, value, entry_id, label, list_name, extra)
                self._checksum.update(_canonical(fields))
            if batch.rows >= BATCH_ROWS:
                yield batch
                batch = RowBatch()
        if batch.rows:
            yield batch

    def _digest(self) -> str:
        return self._checksum.hexdigest()


_Fields = tuple[str | None, str, str | None, str | None, str | None, dict[str, str] | None]


def _fields(item: object) -> _Fields | str:
    """An entry's columns, or what is wrong with its shape (never quoting the hash)."""
    extra: dict[str, str] | None = None
    if isinstance(item, ListEntry):
        algorithm: object = item.algorithm
        value: object = item.hash
        rest: list[object] = [item.list, item.entry_id, item.label]
        extra = dict(item.metadata) or None
    elif isinstance(item, tuple) and 2 <= len(item) <= 5:
        algorithm, value, *rest = item
        rest += [None] * (3 - len(rest))
    else:
        shape = f" of {len(item)}" if isinstance(item, tuple) else ""
        return (
            "expected a ListEntry or (algorithm, hash, list, id, label),"
            f" got {type(item).__name__}{shape}"
        )
    if algorithm is not None and not isinstance(algorithm, str):
        return f"the algorithm must be a name, got {type(algorithm).__name__}"
    if isinstance(value, Hash):
        if algorithm is not None and value.algorithm != algorithm.strip().lower():
            return f"a {value.algorithm} hash given as {algorithm}"
        value = value.hex
    if not isinstance(value, str):
        return f"the hash must be a Hash or hex text, got {type(value).__name__}"
    texts: list[str | None] = []
    for name, field in zip(("list", "id", "label"), rest, strict=True):
        if field is not None and not isinstance(field, str):
            return f"the {name} must be text, got {type(field).__name__}"
        texts.append(field)
    return algorithm, value.strip(), texts[0], texts[1], texts[2], extra


def _canonical(fields: _Fields) -> bytes:
    algorithm, value, list_name, entry_id, label, extra = fields
    columns = [algorithm or "", value.lower(), list_name or "", entry_id or "", label or ""]
    if extra:
        columns.append(json.dumps(extra, sort_keys=True, ensure_ascii=False))
    text = "\t".join(_escaped(column) for column in columns)
    return (text + "\n").encode("utf-8", "surrogatepass")


def _escaped(column: str) -> str:
    return column.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n")
