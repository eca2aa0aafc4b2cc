"""Validating batches of raw rows: algorithm names, hex, length, and degenerate hashes.

Work is vectorised per batch and per algorithm (one ``bytes.fromhex`` and one bit count for
thousands of rows), so a ten-million-line list validates in seconds. Degenerate hashes have
broken real builds: all zeros or all ones match blank images, and a PDQ hash whose bit count is
far from the 128 its median threshold produces did not come from PDQ.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import numpy as np

from hashmatch.lists.columns import UNSUPPORTED_SIGNALS, canonical_algorithm
from hashmatch.lists.readers import RowBatch
from hashmatch.registry import algorithm_names, get_algorithm

__all__ = ["ValidChunk", "validate_batch"]

_HEX_CHARS = frozenset("0123456789abcdefABCDEF")
_NON_HEX = re.compile(r"[^0-9a-fA-F]")


@dataclass
class ValidChunk:
    """The valid rows of one batch by algorithm: codes (n x bytes, uint8) and row positions."""

    batch: RowBatch
    codes: dict[str, np.ndarray] = field(default_factory=dict)
    positions: dict[str, list[int]] = field(default_factory=dict)
    """Indexes into :attr:`batch`'s columns, aligned with :attr:`codes`."""

    def column(self, algorithm: str, name: str) -> list:
        """One of the batch's columns (``lines``, ``entry_ids``...) for this algorithm's rows."""
        values = getattr(self.batch, name)
        return [values[i] for i in self.positions[algorithm]]

    def __len__(self) -> int:
        return sum(len(p) for p in self.positions.values())


def validate_batch(
    batch: RowBatch, default_algorithm: str | None
) -> tuple[ValidChunk, list[tuple[int, str, str]]]:
    """Split ``batch`` into valid hashes and ``(line, kind, reason)`` problems, by line."""
    problems = list(batch.problems)
    names, unknown = _resolve_names(batch, default_algorithm)
    if len(names) == 1:
        groups = {next(iter(names.values())): list(range(len(batch)))}
    else:
        groups = {}
        for index, raw in enumerate(batch.algorithms):
            groups.setdefault(names[raw], []).append(index)
    chunk = ValidChunk(batch)
    for name, positions in groups.items():
        if name is None:
            problems.extend(
                (
                    batch.lines[i],
                    "no algorithm",
                    "no algorithm: give --algorithm or an algorithm column",
                )
                for i in positions
            )
        elif name is _UNKNOWN:
            reasons, algorithms, lines = unknown, batch.algorithms, batch.lines
            problems.extend(
                (lines[i], "unknown algorithm", reasons[algorithms[i]]) for i in positions
            )
        else:
            codes, kept = _decode(name, batch, positions, problems)
            if kept:
                chunk.codes[name] = codes
                chunk.positions[name] = kept
    problems.sort()
    return chunk, problems


_UNKNOWN = "<unknown>"
"""The one group every unknown algorithm name falls into: a garbage list has a different
"name" on each line, and a group each made such a list several times slower to reject."""


def _resolve_names(
    batch: RowBatch, default_algorithm: str | None
) -> tuple[dict[str | None, str | None], dict[str | None, str]]:
    """Each raw algorithm name's group (our name, None, or :data:`_UNKNOWN`), and the
    rejection reason of each unknown one."""
    known = set(algorithm_names())
    names: dict[str | None, str | None] = {}
    unknown: dict[str | None, str] = {}
    for raw in set(batch.algorithms):
        name = canonical_algorithm(raw) if raw else default_algorithm
        if name is None or name in known:
            names[raw] = name
            continue
        names[raw] = _UNKNOWN
        why = UNSUPPORTED_SIGNALS.get(name)
        unknown[raw] = f"unknown algorithm {raw!r}" + (f" ({why})" if why else "")
    return names, unknown


def _decode(
    name: str, batch: RowBatch, positions: list[int], problems: list[tuple[int, str, str]]
) -> tuple[np.ndarray, list[int]]:
    spec = get_algorithm(name)
    bits = spec.bits
    digits = bits // 4
    hashes, lines = batch.hashes, batch.lines
    sized = [i for i in positions if len(hashes[i]) == digits]
    if len(sized) != len(positions):
        ok = set(sized)
        problems.extend(
            (
                lines[i],
                "wrong length",
                f"{name} hash must be {digits} hex digits, got {len(hashes[i])}",
            )
            for i in positions
            if i not in ok
        )
    joined = "".join([hashes[i] for i in sized])
    if not set(joined) <= _HEX_CHARS:
        clean = []
        for i in sized:
            bad = _NON_HEX.search(hashes[i])
            if bad:
                reason = f"{name} hash has a non-hex character {bad.group()!r}"
                problems.append((lines[i], "non-hex character", reason))
            else:
                clean.append(i)
        sized = clean
        joined = "".join([hashes[i] for i in sized])
    codes = np.frombuffer(bytes.fromhex(joined), dtype=np.uint8).reshape(len(sized), bits // 8)
    counts = np.bitwise_count(codes).sum(axis=1, dtype=np.int64)
    bad_mask = (counts == 0) | (counts == bits)
    if spec.bit_count_range is not None:
        low, high = spec.bit_count_range
        bad_mask |= (counts < low) | (counts > high)
    if not bad_mask.any():
        return codes, sized
    for index in np.flatnonzero(bad_mask):
        reason = _degenerate_reason(name, int(counts[index]), bits)
        problems.append((lines[sized[index]], "degenerate hash", reason))
    keep = ~bad_mask
    return codes[keep], [i for i, ok in zip(sized, keep.tolist(), strict=True) if ok]


def _degenerate_reason(name: str, count: int, bits: int) -> str:
    if count == 0:
        return f"degenerate {name} hash: all zeros"
    if count == bits:
        return f"degenerate {name} hash: all ones"
    low, high = get_algorithm(name).bit_count_range or (0, bits)
    return (
        f"degenerate {name} hash: {count} of {bits} bits set, outside {low}..{high}"
        f" (not produced by {name.upper()}'s median threshold)"
    )
