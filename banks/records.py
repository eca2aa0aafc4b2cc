"""A bank log's records: what each operation says, its line on disk, and its checks.

A line is the record as compact JSON, a tab, and the CRC-32 of the JSON's bytes in hex::

    {"at":1796156512.25,"by":"alice","id":17,"op":"add","seq":4,"signals":{"pdq":"d03b..."}}\t5f1c0a2e

A line whose checksum does not match (a torn or damaged write), that is not JSON, or whose
record fails its checks is reported with its line number and skipped; the rest of the log
still reads. Hashes are checked as a list line's are (:func:`~hashmatch.lists.validate_batch`:
length, hex, degenerate codes), so a bank never holds what a list file could not.
"""

from __future__ import annotations

import json
import re
import zlib
from dataclasses import dataclass
from typing import Any

from hashmatch.errors import BankError
from hashmatch.lists.readers import RowBatch
from hashmatch.lists.validate import validate_batch

__all__ = [
    "BANK_NAME",
    "ENABLED",
    "DISABLED",
    "MAX_NOTE",
    "OPERATIONS",
    "BankRecord",
    "check_bank_name",
    "check_disable_until",
    "checked_records",
    "checked_signal_sets",
    "decode_line",
    "encode_line",
    "validated_signals",
]

BANK_NAME = re.compile(r"[A-Z_][A-Z0-9_]{0,99}")
"""HMA's bank names (``UPPER_WITH_UNDERSCORE``), at most 100 characters: also a file name."""

DISABLED = 0
ENABLED = 1
"""HMA's ``disable_until_ts``: 0 disabled, 1 enabled, any later Unix time enabled from then."""

MAX_DISABLE_SECONDS = 5 * 365 * 24 * 3600
"""HMA refuses a ``disable_until_ts`` five years or more in the future."""

MAX_NOTE = 4096
"""Longest note (and metadata, as JSON) a record carries: a log is not a document store."""

OPERATIONS = ("create", "update", "drop", "add", "set", "delete", "exclude", "include")
"""``create``/``update``/``drop`` a bank; ``add`` a content (its signals), ``set`` its
``disable_until_ts``, ``delete`` it; ``exclude``/``include`` a hash or a list entry as a
confirmed false positive (or no longer)."""


@dataclass(frozen=True)
class BankRecord:
    """One checked record: its operation, sequence number in its bank, time, actor and the
    operation's own fields (``fields``)."""

    op: str
    seq: int
    at: float
    by: str | None
    fields: dict[str, Any]

    def to_json(self) -> dict[str, Any]:
        return {"op": self.op, "seq": self.seq, "at": self.at, "by": self.by, **self.fields}


def check_bank_name(name: object) -> str:
    if not isinstance(name, str) or not BANK_NAME.fullmatch(name):
        raise BankError("Bank names must be UPPER_WITH_UNDERSCORE")
    return name


def check_disable_until(value: object, now: float) -> int:
    """HMA's rules for ``disable_until_ts``: a whole number, 0, 1, or a time under five years
    from now."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise BankError("disable_until_ts must be a non-negative integer")
    if value > now + MAX_DISABLE_SECONDS:
        raise BankError("disable_until_ts must be less than 5 years in the future")
    return value


def validated_signals(signals: object, where: str = "signals") -> dict[str, str]:
    """``{algorithm: hex}`` checked as list lines are; lowercase hex; BankError naming the
    problem."""
    checked = checked_signal_sets([signals])[0]
    if isinstance(checked, str):
        raise BankError(checked if checked == NO_SIGNALS else f"{where}: {checked}")
    return checked


NO_SIGNALS = "No signals given"


def checked_signal_sets(sets: list[object]) -> list[dict[str, str] | str]:
    """Each ``{algorithm: hex}`` of ``sets`` checked, all in one validation batch (a bulk
    add of thousands costs one vectorised pass, not one each): the normalised mapping, or
    the first problem's reason."""
    results: list[dict[str, str] | str] = [{} for _ in sets]
    batch = RowBatch()
    owners: list[tuple[int, str]] = []
    for number, signals in enumerate(sets):
        if not isinstance(signals, dict) or not signals:
            results[number] = NO_SIGNALS
            continue
        for algorithm, value in signals.items():
            if not isinstance(algorithm, str) or not isinstance(value, str):
                results[number] = "expected a hex string per signal type"
                break
            owners.append((number, algorithm))
            batch.add(len(owners), algorithm, value.strip())
    chunk, problems = validate_batch(batch, None)
    for line, _, reason in problems:
        number = owners[line - 1][0]
        if not isinstance(results[number], str):
            results[number] = reason
    for algorithm, codes in chunk.codes.items():
        for position, code in zip(chunk.positions[algorithm], codes, strict=True):
            number = owners[position][0]
            held = results[number]
            if isinstance(held, dict):
                held[algorithm] = code.tobytes().hex()
    return results


def checked_records(records: list[BankRecord]) -> list[BankRecord | str]:
    """The records with their hashes checked (in one batch) and normalised, or why not."""
    sets: list[object] = []
    where: list[int] = []
    for number, record in enumerate(records):
        if record.op == "add":
            sets.append(record.fields.get("signals"))
            where.append(number)
        elif "hash" in record.fields:
            sets.append({record.fields.get("algorithm"): record.fields["hash"]})
            where.append(number)
    checked: list[BankRecord | str] = list(records)
    for number, result in zip(where, checked_signal_sets(sets), strict=True):
        record = records[number]
        if isinstance(result, str):
            checked[number] = result
        elif record.op == "add":
            record.fields["signals"] = result
        else:
            algorithm, value = next(iter(result.items()))
            record.fields["algorithm"], record.fields["hash"] = algorithm, value
    return checked


def encode_line(record: BankRecord) -> bytes:
    text = json.dumps(record.to_json(), separators=(",", ":"), sort_keys=True, ensure_ascii=True)
    data = text.encode("ascii")
    return data + b"\t" + f"{zlib.crc32(data):08x}".encode("ascii") + b"\n"


def decode_line(line: bytes) -> BankRecord:
    """The record of one complete line (without its newline); ValueError saying what is
    wrong. Its hashes are checked by :func:`checked_records`, many lines at once."""
    body, tab, checksum = line.rpartition(b"\t")
    if not tab:
        raise ValueError("no checksum (a torn or foreign line)")
    if checksum != f"{zlib.crc32(body):08x}".encode("ascii"):
        raise ValueError("checksum mismatch (a torn or damaged write)")
    try:
        data = json.loads(body)
    except ValueError:
        raise ValueError("not JSON") from None
    if not isinstance(data, dict):
        raise ValueError("not a JSON object")
    op, seq, at, by = (
        data.pop("op", None),
        data.pop("seq", None),
        data.pop("at", None),
        data.pop("by", None),
    )
    if op not in OPERATIONS:
        raise ValueError(f"unknown operation {op!r}")
    if isinstance(seq, bool) or not isinstance(seq, int) or seq < 1:
        raise ValueError("bad sequence number")
    if isinstance(at, bool) or not isinstance(at, (int, float)):
        raise ValueError("bad time")
    if by is not None and not isinstance(by, str):
        raise ValueError("bad actor")
    _check_fields(op, data)
    return BankRecord(op, seq, float(at), by, data)


def _check_fields(op: str, data: dict[str, Any]) -> None:
    try:
        if op in ("create", "update"):
            ratio = data.get("ratio")
            if (
                isinstance(ratio, bool)
                or not isinstance(ratio, (int, float))
                or not 0 <= ratio <= 1
            ):
                raise ValueError("ratio must be a number 0..1")
        if op in ("add", "set", "delete"):
            content = data.get("id")
            if isinstance(content, bool) or not isinstance(content, int) or content < 1:
                raise ValueError("bad content id")
        if op == "add":
            if not isinstance(data.get("signals"), dict):
                raise ValueError("no signals")
            for key in ("note", "uri"):
                if data.get(key) is not None and not isinstance(data[key], str):
                    raise ValueError(f"{key} must be a string")
            if data.get("metadata") is not None and not isinstance(data["metadata"], dict):
                raise ValueError("metadata must be an object")
        if op == "set":
            value = data.get("disable_until_ts")
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError("bad disable_until_ts")
        if op in ("exclude", "include"):
            hashed = isinstance(data.get("hash"), str) and isinstance(data.get("algorithm"), str)
            named = isinstance(data.get("list"), str) and isinstance(data.get("entry"), str)
            if not (hashed or named):
                raise ValueError(
                    "an exclusion names a hash (algorithm, hash) or an entry (list, entry)"
                )
    except BankError as exc:
        raise ValueError(str(exc)) from None
