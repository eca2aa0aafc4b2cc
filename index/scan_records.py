"""A scan's record of one file, in each of its shapes, defined once for every scan engine.

``nested`` is what jsonl and json print: ``matches`` a list of objects, ``hashes`` an object.
``flat`` is what csv prints and what a cluster scan's dataset rows hold: one scalar per column
(``matches`` as JSON text, a column per algorithm's hash), so Arrow stores it as it is and a
row converts back (:func:`nested_from_flat`) to exactly the nested record. ``table`` is for
people: the matches summarised in one cell.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from typing import Any, Literal

from hashmatch.index.results import MatchResult

__all__ = [
    "QUALITY_COLUMN",
    "RecordStyle",
    "nested_from_flat",
    "record_columns",
    "restyled",
    "scan_record",
]

RecordStyle = Literal["nested", "flat", "table"]

_CORE_COLUMNS = ("path", "status", "matches", "error")
QUALITY_COLUMN = "pdq_quality"


def record_columns(algorithms: Sequence[str], with_hashes: bool, style: RecordStyle) -> list[str]:
    """The record's keys in order (a csv header, a table's columns, a dataset's schema)."""
    columns = list(_CORE_COLUMNS)
    if with_hashes:
        columns += ["hashes"] if style == "nested" else list(algorithms)
        columns.append(QUALITY_COLUMN)
    return columns


def scan_record(
    path: str, result: MatchResult, with_hashes: bool, style: RecordStyle
) -> dict[str, Any]:
    """One file's record. Match objects leave out ``variant`` when it is the image itself."""
    record: dict[str, Any] = {
        "path": os.fspath(path),
        "status": result.status,
        "matches": [
            {key: value for key, value in m.to_json().items() if key != "variant" or value}
            for m in result.matches
        ],
        "error": result.error,
    }
    if with_hashes:
        record["hashes"] = {name: h.hex for name, h in result.hashes.items()}
        record[QUALITY_COLUMN] = result.quality
    return restyled(record, style)


def restyled(record: Mapping[str, Any], style: RecordStyle) -> dict[str, Any]:
    """A nested record in ``style``: flat (matches as JSON text) or for a table (matches
    summarised), a hash column per algorithm in both."""
    if style == "nested":
        return dict(record)
    out = {key: value for key, value in record.items() if key != "hashes"}
    matches = record["matches"]
    if style == "flat":
        out["matches"] = json.dumps(matches, ensure_ascii=False)
    else:
        out["matches"] = "; ".join(
            f"{m['list']}/{m['entry_id']} ({m['algorithm']} {m['distance']}"
            + (f", {m['variant']})" if m.get("variant") else ")")
            for m in matches
        )
    if "hashes" in record:
        out.update(record["hashes"])
        out[QUALITY_COLUMN] = out.pop(QUALITY_COLUMN)  # after the hashes, as the columns are
    return out


def nested_from_flat(
    row: Mapping[str, Any], algorithms: Sequence[str], with_hashes: bool
) -> dict[str, Any]:
    """The nested record a flat one was made from (a cluster scan's row → a jsonl line)."""
    record: dict[str, Any] = {
        "path": row["path"],
        "status": row["status"],
        "matches": json.loads(row["matches"]),
        "error": row["error"],
    }
    if with_hashes:
        record["hashes"] = {name: row[name] for name in algorithms if row.get(name) is not None}
        record[QUALITY_COLUMN] = row.get(QUALITY_COLUMN)
    return record
