"""Exact Hamming range search by multi-index hashing, in numpy.

Each code is cut into ``m`` substrings. If two codes are within distance ``r`` and
``(f + 1) * m > r``, at least one substring differs in at most ``f`` bits (pigeonhole), so
probing every substring's table with all keys within ``f`` bit flips of the query's substring
finds every neighbour; candidates are then checked with the full distance. Nothing within the
radius can be missed, which is what this domain needs.

A table is a counting sort of the codes by substring key. Most buckets are empty (a 23-bit
table holds 8.4M buckets; a 1M-code index fills about one in nine), so a table is stored as an
occupancy bitmap, each 64-bit word paired with the count of occupied buckets before it, plus
one start per occupied bucket into ``ids``. A probe reads the small, cache-friendly bitmap
first and touches the large arrays only for buckets that hold codes: far fewer random memory
reads, and a fraction of the memory of one offset per bucket. All substrings' tables are
concatenated, so a batch of queries (and their dihedral variants) is answered with a handful of
vectorised numpy operations.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from hashmatch.once import shared_table

__all__ = ["MihLayout", "MultiIndex", "choose_layout", "hamming_distances"]

_QUERIES_PER_PASS = 16
"""Queries per vectorised pass: larger passes spill their temporaries out of the cache."""
_HALF = np.uint64(32)
_LOW_HALF = np.uint64(0xFFFFFFFF)
_MAX_SUBSTRING_BITS = 26
"""Tables of 2**26 offsets (256 MiB) are the most we allow for one substring."""


@dataclass(frozen=True)
class MihLayout:
    """Substrings as ``(first bit, bit count)`` and the flips probed per substring: ``flips``,
    except the first ``lighter`` substrings (the longest), probed with one flip fewer."""

    bits: int
    substrings: tuple[tuple[int, int], ...]
    flips: int
    lighter: int = 0

    def flips_of(self, number: int) -> int:
        return self.flips - 1 if number < self.lighter else self.flips

    @property
    def radius(self) -> int:
        """The largest radius this layout answers exactly. Two codes within it differ in at most
        ``f`` bits in some substring probed with ``f`` flips when the substrings' ``f + 1``
        add up to more than the distance (pigeonhole), so: ``sum(f + 1) - 1``."""
        return (self.flips + 1) * len(self.substrings) - self.lighter - 1

    @property
    def probes(self) -> int:
        return sum(
            _probe_count(length, self.flips_of(number))
            for number, (_, length) in enumerate(self.substrings)
        )

    def to_json(self) -> dict[str, object]:
        return {
            "substrings": [list(s) for s in self.substrings],
            "flips": self.flips,
            "lighter": self.lighter,
        }

    @classmethod
    def from_json(cls, bits: int, data: Mapping[str, Any]) -> MihLayout:
        """The layout a manifest records (values checked by the caller's integrity checks)."""
        substrings = tuple((int(a), int(b)) for a, b in data["substrings"])
        return cls(bits, substrings, int(data["flips"]), int(data.get("lighter", 0)))


def _probe_count(length: int, flips: int) -> int:
    return sum(math.comb(length, k) for k in range(flips + 1))


def _table_buckets(length: int) -> int:
    """Buckets in one substring's table: ``2**length``, at least one 64-bit bitmap word."""
    return max(1 << length, 64)


def _split(bits: int, count: int) -> tuple[tuple[int, int], ...]:
    """``count`` contiguous substrings whose lengths differ by at most one bit."""
    base, longer = divmod(bits, count)
    lengths = [base + 1] * longer + [base] * (count - longer)
    starts = itertools.accumulate([0, *lengths[:-1]])
    return tuple(zip(starts, lengths, strict=True))


# Cost model, in units of about 0.1 us here, fitted to single queries of random codes at 1e4..1e6
# (bench/index.py and the layouts around the chosen one): a search call has a fixed numpy
# overhead; every probe reads the bitmap, which costs less when it stays in the cache; a probe
# of an occupied bucket reads its start and its ids; a candidate reads its code, cheaply when the
# codes stay in the cache; every byte of table per code costs a little memory. faiss's flat scan
# costs a little per code and per byte of code.
_MIH_CALL_COST = 700.0
_PROBE_COST = {True: 0.3, False: 0.5}  # bitmap in cache or not
_OCCUPIED_PROBE_COST = 1.0
_CANDIDATE_COST = {True: 0.3, False: 1.0}  # codes in cache or not
_CACHED_BYTES = 8 * 2**20
_MEMORY_COST_PER_BYTE = 2.0
_FLAT_CALL_COST = 500.0
_FLAT_COST_PER_CODE = 0.006
_FLAT_COST_PER_CODE_BYTE = 0.0003


def _layout_cost(layout: MihLayout, count: int) -> float:
    probes = occupied = candidates = 0.0
    bitmap_bytes = table_bytes = 0.0
    for number, (_, length) in enumerate(layout.substrings):
        per_query = _probe_count(length, layout.flips_of(number))
        fill = count / 2**length
        probes += per_query
        occupied += per_query * -math.expm1(-fill)  # the chance a bucket holds a code
        candidates += per_query * fill
        bitmap_bytes += _table_buckets(length) / 8
        table_bytes += 2**length * -math.expm1(-fill) * 4 + count * 4  # starts and ids
    codes_cached = count * layout.bits / 8 <= _CACHED_BYTES
    memory = (bitmap_bytes * 2 + table_bytes) / max(count, 1) * _MEMORY_COST_PER_BYTE
    return (
        _MIH_CALL_COST
        + probes * _PROBE_COST[bitmap_bytes * 2 <= _CACHED_BYTES]
        + occupied * _OCCUPIED_PROBE_COST
        + candidates * _CANDIDATE_COST[codes_cached]
        + memory
    )


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
            # the longest substrings can take one flip fewer while the bound still holds
            lighter = min((flips + 1) * substrings - 1 - radius, substrings) if flips else 0
            layout = MihLayout(bits, _split(bits, substrings), flips, lighter)
            cost = _layout_cost(layout, count)
            if best is None or cost < best[0]:
                best = (cost, layout)
    flat_cost = _FLAT_CALL_COST + count * (
        _FLAT_COST_PER_CODE + bits / 8 * _FLAT_COST_PER_CODE_BYTE
    )
    if best is None or (best[0] >= flat_cost and not force):
        return None
    return best[1]


@shared_table(maxsize=64)
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
        self,
        codes: np.ndarray,
        layout: MihLayout,
        buckets: np.ndarray,
        starts: np.ndarray,
        ids: np.ndarray,
    ) -> None:
        self.codes = codes
        self._words = as_words(codes)
        self.layout = layout
        self.buckets = buckets
        """``(words, 2)`` uint64: 64 buckets' occupancy bits, and the occupied buckets before."""
        self.starts = starts = np.ascontiguousarray(starts, dtype="<u4")
        """Where each occupied bucket's ids begin in :attr:`ids`, then the end of the last."""
        self.ids = ids
        """Code numbers sorted by substring key, substring after substring."""
        self._bounds = np.ndarray((len(starts) - 1,), dtype="<u8", buffer=starts, strides=(4,))
        """Overlapping 64-bit views: ``starts[i] | starts[i + 1] << 32``."""
        expected_words = sum(_table_buckets(length) for _, length in layout.substrings) // 64
        if buckets.shape != (expected_words, 2) or len(ids) != len(codes) * len(layout.substrings):
            raise ValueError("multi-index tables do not fit their layout and codes")
        occupied = (
            int(buckets[-1, 1]) + int(np.bitwise_count(buckets[-1, 0])) if len(buckets) else 0
        )
        if len(starts) != occupied + 1 or int(starts[-1]) != len(ids):
            raise ValueError("multi-index bucket starts do not fit the bitmap and ids")
        # Probe plan for a pass of queries: probe i of query q is
        # (key[q, substring_i] + base_i) ^ mask_i, which equals (key ^ mask) + base because each
        # table's base is a multiple of its size (tables ordered longest first).
        masks, owners, bases, position = [], [], [], 0
        key_weights = np.zeros((layout.bits, len(layout.substrings)))
        for number, (start, length) in enumerate(layout.substrings):
            if position % _table_buckets(length):
                raise ValueError("multi-index substrings must be ordered longest first")
            flip_masks = _flip_masks(length, layout.flips_of(number))
            masks.append(flip_masks)
            owners.append(np.full(len(flip_masks), number))
            bases.append(position)
            position += _table_buckets(length)
            key_weights[start : start + length, number] = 2.0 ** np.arange(length - 1, -1, -1)
        self._key_weights = key_weights
        self._table_base = np.array(bases, dtype=np.int64)
        self._probes_per_query = sum(len(m) for m in masks)
        per_pass = np.arange(_QUERIES_PER_PASS)[:, None] * len(layout.substrings)
        self._pass_keys = (per_pass + np.concatenate(owners)[None, :]).ravel()
        self._pass_masks = np.tile(np.concatenate(masks), _QUERIES_PER_PASS)
        self._signed_buckets = buckets.view(np.int64)
        """The bitmap words as int64, so shifts need no casts (bit 63 tests the same)."""

    @classmethod
    def build(cls, codes: np.ndarray, layout: MihLayout) -> MultiIndex:
        count = len(codes)
        if count * len(layout.substrings) >= 2**32:
            raise ValueError(f"{count} codes are more than 32-bit table positions can address")
        bitmaps, starts_parts, ids_parts = [], [], []
        numbers = np.arange(count, dtype=np.uint64)
        for number, (start, length) in enumerate(layout.substrings):
            keys = substring_keys(codes, start, length)
            # Sorting (key << 32 | code number) is several times faster than an argsort.
            composite = (keys.astype(np.uint64) << np.uint64(32)) | numbers
            composite.sort()
            ids_parts.append(composite.astype(np.uint32))  # the low 32 bits: numbers by key
            del composite
            counts = np.bincount(keys, minlength=_table_buckets(length))
            occupied = counts > 0
            bitmaps.append(np.packbits(occupied, bitorder="little").view("<u8"))
            ends = np.cumsum(counts) + number * count
            starts_parts.append((ends - counts)[occupied].astype(np.uint32))
        bitmap = np.concatenate(bitmaps)
        ranks = np.zeros(len(bitmap), dtype=np.uint64)
        np.cumsum(np.bitwise_count(bitmap[:-1]), out=ranks[1:])
        buckets = np.stack([bitmap.astype(np.uint64), ranks], axis=1)
        end = np.array([count * len(layout.substrings)], dtype=np.uint32)
        return cls(
            codes, layout, buckets, np.concatenate([*starts_parts, end]), np.concatenate(ids_parts)
        )

    def search(self, queries: np.ndarray, radius: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """All ``(query row, code number, distance)`` with distance <= ``radius``, each once."""
        if radius > self.layout.radius:
            raise ValueError(f"radius {radius} exceeds this layout's {self.layout.radius}")
        if len(queries) <= _QUERIES_PER_PASS:
            return self._search_pass(queries, radius)
        # Passes keep the temporaries (a few thousand probes per query) in cache.
        owners, rows, distances = [], [], []
        for first in range(0, len(queries), _QUERIES_PER_PASS):
            found = self._search_pass(queries[first : first + _QUERIES_PER_PASS], radius)
            owners.append(found[0] + first)
            rows.append(found[1])
            distances.append(found[2])
        return np.concatenate(owners), np.concatenate(rows), np.concatenate(distances)

    def _search_pass(
        self, queries: np.ndarray, radius: int
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        # Substring keys of the queries in one exact float matmul (keys < 2**53).
        bits = np.unpackbits(queries, axis=1).astype(np.float64)
        keys = (bits @ self._key_weights).astype(np.int64) + self._table_base
        count = len(queries) * self._probes_per_query
        probes = np.take(keys.ravel(), self._pass_keys[:count]) ^ self._pass_masks[:count]
        words = np.take(self._signed_buckets, probes >> 6, axis=0)
        shifts = probes & 63
        occupancy = words[:, 0]
        hit = np.flatnonzero((occupancy >> shifts) & 1)
        # the rank of a bucket: occupied buckets before its word, plus those below it in the word
        below = occupancy[hit] & ((1 << shifts[hit]) - 1)  # never bit 63: counts as unsigned
        occupied = words[hit, 1] + np.bitwise_count(below)
        bounds = self._bounds[occupied]  # a bucket's start and the next one's, in one read
        starts = (bounds & _LOW_HALF).astype(np.int64)
        lengths = (bounds >> _HALF).astype(np.int64) - starts
        ends = np.cumsum(lengths)
        total = int(ends[-1]) if len(ends) else 0
        if total == 0:
            empty = np.empty(0, dtype=np.int64)
            return empty, empty, empty
        positions = np.repeat(starts - (ends - lengths), lengths) + np.arange(total)
        candidates = np.take(self.ids, positions).astype(np.int64)
        if len(queries) == 1:
            distances = hamming_distances(self._words, candidates, queries, None)
            owners = np.zeros(total, dtype=np.int64)
        else:
            owners = np.repeat(hit // self._probes_per_query, lengths)
            distances = hamming_distances(self._words, candidates, queries, owners)
        keep = distances <= radius
        owners, candidates, distances = owners[keep], candidates[keep], distances[keep]
        if len(owners) < 2:
            return owners, candidates, distances
        # A neighbour can surface through several substrings: report it once.
        _, first = np.unique(owners * len(self.codes) + candidates, return_index=True)
        return owners[first], candidates[first], distances[first]
