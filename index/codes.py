"""Stored codes: one row per distinct hash, however many list entries share it.

Lists repeat hashes (the same image on several lists, or twice on one); the index stores each
distinct code once, in row-key order, with the entries of each code as a CSR pair
(``entry_offsets``, ``entry_rows``), so a search finds a code once and reports all its entries.
"""

from __future__ import annotations

import numpy as np

from hashmatch.index.artifact import row_keys

__all__ = ["merge_duplicates"]


def merge_duplicates(
    codes: np.ndarray, rowids: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Unique codes in row-key order, their keys, and each code's entries (CSR)."""
    if len(codes) == 0:
        empty = np.zeros(0, dtype=np.int64)
        return codes, np.zeros(0, dtype=np.uint64), np.zeros(1, dtype=np.int64), empty
    keys = row_keys(codes)
    order = np.argsort(keys, kind="stable")
    codes, keys, rowids = codes[order], keys[order], rowids[order]
    same_key = keys[1:] == keys[:-1]
    if same_key.any():
        codes, keys, rowids = _separate_collisions(codes, keys, rowids, same_key)
        same_key = (keys[1:] == keys[:-1]) & np.all(codes[1:] == codes[:-1], axis=1)
    starts = np.concatenate([[0], np.flatnonzero(~same_key) + 1])
    offsets = np.concatenate([starts, [len(codes)]]).astype(np.int64)
    return codes[starts], keys[starts], offsets, rowids


def _separate_collisions(
    codes: np.ndarray, keys: np.ndarray, rowids: np.ndarray, same_key: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Within runs of equal keys, order rows by their bytes so identical codes are adjacent.

    Equal keys almost always mean identical codes; distinct codes sharing a key (a 2**-64
    event) must still stay distinct entries.
    """
    different = ~np.all(codes[1:] == codes[:-1], axis=1) & same_key
    if not different.any():
        return codes, keys, rowids
    order = np.lexsort([*codes.T[::-1], keys])
    return codes[order], keys[order], rowids[order]
