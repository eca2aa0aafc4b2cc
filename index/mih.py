"""Exact Hamming range search by multi-index hashing, in numpy.

Each code is cut into ``m`` substrings. If two codes are within distance ``r`` and
``(f + 1) * m > r``, at least one substring differs in at most ``f`` bits (pigeonhole), so
probing every substring's table with all keys within ``f`` bit flips of the query's substring
finds every neighbour; candidates are then checked with the full distance. Nothing within the
radius can be missed, which is what this domain needs.

A table is a counting sort of the codes by substring key: ``offsets[key]`` .. ``offsets[key+1]``
index into ``ids``. All substrings' tables are concatenated, so a batch of queries (and their
dihedral variants) is answered with a handful of vectorised numpy operations.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

__all__ = ["MihLayout", "MultiIndex", "choose_layout", "hamming_distances"]

_QUERIES_PER_PASS = 128
_MAX_SUBSTRING_BITS = 26
"""Tables of 2**26 offsets (256 MiB) are the most we allow for one substring."""


@dataclass(frozen=True)
class MihLayout:
    """Substrings as ``(first bit, bit count)`` and the flips probed per substring."""

    bits: int
    substrings: tuple[tuple[int, int], ...]
    flips: int

    @property
    def radius(self) -> int:
        """The largest radius this layout answers exactly: ``(flips + 1) * m - 1``."""
        return (self.flips + 1) * len(self.substrings) - 1

    @property
    def probes(self) -> int:
        return sum(_probe_count(length, self.flips) for _, length in self.substrings)

    def to_json(self) -> dict[str, object]:
        return {"substrings": [list(s) for s in self.substrings], "flips": self.flips}

    @classmethod
    def from_json(cls, bits: int, data: dict[str, object]) -> MihLayout:
        substrings = tuple((int(a), int(b)) for a, b in data["substrings"])  # type: ignore[union-attr]
        return cls(bits, substrings, int(data["flips"]))  # type: ignore[call-overload]


def _probe_count(length: int, flips: int) -> int:
    return sum(math.comb(length, k) for k in range(flips + 1))


def _split(bits: int, count: int) -> tuple[tuple[int, int], ...]:
    """``count`` contiguous substrings whose lengths differ by at most one bit."""
    base, longer = divmod(bits, count)
    lengths = [base + 1] * longer + [base] * (count - longer)
    starts = itertools.accumulate([0, *lengths[:-1]])
    return tuple(zip(starts, lengths, strict=True))


# Cost model, in units of one random table read (about 0.1 us here), fitted to bench/index.py:
# a probe reads the offset table once; a candidate reads the id table and its code; every
# offset entry per code costs a little memory; a search
# call has a fixed numpy overhead; faiss's flat scan costs a little per code and per byte.
_MEMORY_WEIGHT = 8.0
_MIH_CALL_COST = 1300.0
_FLAT_COST_PER_CODE = 0.006
_FLAT_COST_PER_CODE_BYTE = 0.0003


def _layout_cost(layout: MihLayout, count: int) -> float:
    candidates = sum(_probe_count(n, layout.flips) * count / 2**n for _, n in layout.substrings)
    candidate_cost = 2.0  # the id table and the code: two random reads
    entries_per_code = sum(2**n for _, n in layout.substrings) / max(count, 1)
    memory = entries_per_code * _MEMORY_WEIGHT
    return _MIH_CALL_COST + layout.probes + candidates * candidate_cost + memory


def choose_layout(count: int, bits: int, radius: int, *, force: bool = False) -> MihLayout | None:
    """The cheapest exact layout for ``count`` codes, or None when a flat scan is cheaper
    (unless ``force``: then the cheapest layout regardless)."""
    best: tuple[float, MihLayout] | None = None
    for flips in range(0, 4):
        minimum = radius // (flips + 1) + 1
        for substrings in range(minimum, minimum + 8):
            length = math.ceil(bits / substrings)
            if length > _MAX_SUBSTRING_BITS or length < 4:
                continue
            layout = MihLayout(bits, _split(bits, substrings), flips)
            cost = _layout_cost(layout, count)
            if best is None or cost < best[0]:
                best = (cost, layout)
    flat_cost = count * (_FLAT_COST_PER_CODE + bits / 8 * _FLAT_COST_PER_CODE_BYTE)
    if best is None or (best[0] >= flat_cost and not force):
        return None
    return best[1]


@lru_cache(maxsize=64)
def _flip_masks(length: int, flips: int) -> np.ndarray:
    """Every ``length``-bit mask with at most ``flips`` bits set."""
    masks = [0]
    for k in range(1, flips + 1):
        for positions in itertools.combinations(range(length), k):
            masks.append(sum(1 << p for p in positions))
    return np.array(masks, dtype=np.int64)


def substring_keys(codes: np.ndarray, start: int, length: int) -> np.ndarray:
    """The ``length``-bit integer at bit ``start`` (most significant first) of every code."""
    first, shift = divmod(start, 8)
    span = (shift + length + 7) // 8
    word = np.zeros(len(codes), dtype=np.int64)
    for offset in range(span):
        column = first + offset
        byte = codes[:, column].astype(np.int64) if column < codes.shape[1] else 0
        word = (word << 8) | byte
    return (word >> (span * 8 - shift - length)) & ((1 << length) - 1)


def as_words(codes: np.ndarray) -> np.ndarray:
    """Codes as rows of 64-bit words (rows of bytes when their length is not a multiple of 8)."""
    return codes.view(np.uint64) if codes.shape[1] % 8 == 0 else codes


def hamming_distances(
    words: np.ndarray, rows: np.ndarray, queries: np.ndarray, owners: np.ndarray | None
) -> np.ndarray:
    """Distance from ``words[rows]`` to ``queries[owners]`` (or to the single query)."""
    gathered = np.take(words, rows, axis=0)  # much faster than fancy indexing on 2-D arrays
    targets = as_words(queries)
    other = targets[0] if owners is None else np.take(targets, owners, axis=0)
    counts = np.bitwise_count(gathered ^ other)
    total = counts[:, 0].astype(np.int64)
    for column in range(1, counts.shape[1]):  # column sums beat .sum(axis=1) on narrow rows
        total += counts[:, column]
    return total


class MultiIndex:
    """The tables of one layout over a fixed array of codes."""

    def __init__(
        self, codes: np.ndarray, layout: MihLayout, offsets: np.ndarray, ids: np.ndarray
    ) -> None:
        self.codes = codes
        self._words = as_words(codes)
        self.layout = layout
        self.offsets = offsets
        """All substrings' bucket starts, concatenated; values index :attr:`ids`."""
        self.ids = ids
        """Code numbers sorted by substring key, substring after substring."""
        # Probe plan: for every substring, each flip mask and the table base it lands in.
        masks, owners, bases, position = [], [], [], 0
        key_weights = np.zeros((layout.bits, len(layout.substrings)))
        for number, (start, length) in enumerate(layout.substrings):
            flip_masks = _flip_masks(length, layout.flips)
            masks.append(flip_masks)
            owners.append(np.full(len(flip_masks), number))
            bases.append(np.full(len(flip_masks), position))
            position += (1 << length) + 1
            key_weights[start : start + length, number] = 2.0 ** np.arange(length - 1, -1, -1)
        self._probe_masks = np.concatenate(masks)
        self._probe_substring = np.concatenate(owners)
        self._probe_base = np.concatenate(bases).astype(np.int64)
        self._key_weights = key_weights

    @classmethod
    def build(cls, codes: np.ndarray, layout: MihLayout) -> MultiIndex:
        count = len(codes)
        offsets_parts, ids_parts = [], []
        numbers = np.arange(count, dtype=np.uint64)
        for number, (start, length) in enumerate(layout.substrings):
            keys = substring_keys(codes, start, length)
            # Sorting (key << 32 | code number) is several times faster than an argsort.
            composite = (keys.astype(np.uint64) << np.uint64(32)) | numbers
            composite.sort()
            order = composite.astype(np.uint32)  # the low 32 bits: code numbers by key
            del composite
            counts = np.bincount(keys, minlength=1 << length)
            offsets = np.empty((1 << length) + 1, dtype=np.uint32)
            offsets[0] = 0
            np.cumsum(counts, out=offsets[1:])
            offsets += np.uint32(number * count)
            offsets_parts.append(offsets)
            ids_parts.append(order)
        return cls(codes, layout, np.concatenate(offsets_parts), np.concatenate(ids_parts))

    def search(self, queries: np.ndarray, radius: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """All ``(query row, code number, distance)`` with distance <= ``radius``, each once."""
        if radius > self.layout.radius:
            raise ValueError(f"radius {radius} exceeds this layout's {self.layout.radius}")
        # Substring keys of the queries in one exact float matmul (keys < 2**53).
        bits = np.unpackbits(queries, axis=1).astype(np.float64)
        keys = (bits @ self._key_weights).astype(np.int64)  # (queries, substrings)
        probes = (keys[:, self._probe_substring] ^ self._probe_masks) + self._probe_base
        probes = probes.ravel()
        starts = self.offsets[probes].astype(np.int64)
        lengths = self.offsets[probes + 1].astype(np.int64) - starts
        total = int(lengths.sum())
        if total == 0:
            empty = np.empty(0, dtype=np.int64)
            return empty, empty, empty
        ends = np.cumsum(lengths)
        positions = np.repeat(starts - (ends - lengths), lengths) + np.arange(total)
        candidates = self.ids[positions].astype(np.int64)
        per_query = len(probes) // len(queries)
        if len(queries) == 1:
            distances = hamming_distances(self._words, candidates, queries, None)
            owners = np.zeros(total, dtype=np.int64)
        else:
            owners = np.repeat(np.arange(len(probes)) // per_query, lengths)
            distances = hamming_distances(self._words, candidates, queries, owners)
        keep = distances <= radius
        owners, candidates, distances = owners[keep], candidates[keep], distances[keep]
        # A neighbour can surface through several substrings: report it once.
        _, first = np.unique(owners * len(self.codes) + candidates, return_index=True)
        return owners[first], candidates[first], distances[first]
