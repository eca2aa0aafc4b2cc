"""Validating raw rows in chunks: algorithm names, hex, length, and degenerate hashes.

Work is vectorised per chunk and per algorithm (one ``bytes.fromhex`` and one bit count for
thousands of rows), so a ten-million-line list validates in seconds. Degenerate hashes have
broken real builds: all zeros or all ones match blank images, and a PDQ hash whose bit count is
far from the 128 its median threshold produces did not come from PDQ.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import numpy as np

from hashmatch.lists.columns import UNSUPPORTED_SIGNALS, canonical_algorithm
from hashmatch.lists.readers import RawRow
from hashmatch.registry import algorithm_names, get_algorithm

__all__ = ["PDQ_BIT_COUNT_RANGE", "ValidChunk", "validate_rows"]

PDQ_BIT_COUNT_RANGE = (64, 192)
"""PDQ hashes with fewer or more bits set are rejected as not produced by PDQ."""

_HEX_CHARS = frozenset("0123456789abcdefABCDEF")
_NON_HEX = re.compile(r"[^0-9a-fA-F]")


@dataclass
class ValidChunk:
    """The valid rows of one chunk, by algorithm: codes (n x bytes, uint8) and their rows."""

    codes: dict[str, np.ndarray] = field(default_factory=dict)
    rows: dict[str, list[RawRow]] = field(default_factory=dict)

    def __len__(self) -> int:
        return sum(len(rows) for rows in self.rows.values())


def validate_rows(
    rows: list[RawRow], default_algorithm: str | None
) -> tuple[ValidChunk, list[tuple[int, str]]]:
    """Split ``rows`` into valid hashes and ``(line, reason)`` problems."""
    problems: list[tuple[int, str]] = []
    groups: dict[str, list[RawRow]] = {}
    known = set(algorithm_names())
    for row in rows:
        if row.problem is not None:
            problems.append((row.line, row.problem))
            continue
        name = canonical_algorithm(row.algorithm) if row.algorithm else default_algorithm
        if name is None:
            problems.append((row.line, "no algorithm: give --algorithm or an algorithm column"))
        elif name not in known:
            why = UNSUPPORTED_SIGNALS.get(name)
            detail = f" ({why})" if why else ""
            problems.append((row.line, f"unknown algorithm {row.algorithm!r}{detail}"))
        else:
            groups.setdefault(name, []).append(row)
    chunk = ValidChunk()
    for name, group in groups.items():
        codes, kept = _decode_group(name, group, problems)
        if kept:
            chunk.codes[name] = codes
            chunk.rows[name] = kept
    problems.sort()
    return chunk, problems


def _decode_group(
    name: str, rows: list[RawRow], problems: list[tuple[int, str]]
) -> tuple[np.ndarray, list[RawRow]]:
    bits = get_algorithm(name).bits
    digits = bits // 4
    sized: list[RawRow] = []
    for row in rows:
        text = row.hash.strip() if row.hash else ""
        row.hash = text
        if len(text) != digits:
            problems.append((row.line, f"{name} hash must be {digits} hex digits, got {len(text)}"))
        else:
            sized.append(row)
    joined = "".join(row.hash for row in sized)  # type: ignore[misc]
    if not set(joined) <= _HEX_CHARS:
        hex_rows = []
        for row in sized:
            bad = _NON_HEX.search(row.hash or "")
            if bad:
                problems.append((row.line, f"{name} hash has a non-hex character {bad.group()!r}"))
            else:
                hex_rows.append(row)
        sized = hex_rows
        joined = "".join(row.hash for row in sized)  # type: ignore[misc]
    codes = np.frombuffer(bytes.fromhex(joined), dtype=np.uint8).reshape(len(sized), bits // 8)
    counts = np.bitwise_count(codes).sum(axis=1, dtype=np.int64)
    bad_mask = (counts == 0) | (counts == bits)
    if name == "pdq":
        low, high = PDQ_BIT_COUNT_RANGE
        bad_mask |= (counts < low) | (counts > high)
    if not bad_mask.any():
        return codes, sized
    for index in np.flatnonzero(bad_mask):
        problems.append((sized[index].line, _degenerate_reason(name, int(counts[index]), bits)))
    keep = ~bad_mask
    return codes[keep], [row for row, ok in zip(sized, keep, strict=True) if ok]


def _degenerate_reason(name: str, count: int, bits: int) -> str:
    if count == 0:
        return f"degenerate {name} hash: all zeros"
    if count == bits:
        return f"degenerate {name} hash: all ones"
    low, high = PDQ_BIT_COUNT_RANGE
    return (
        f"degenerate {name} hash: {count} of {bits} bits set, outside {low}..{high}"
        " (not produced by PDQ's median threshold)"
    )
