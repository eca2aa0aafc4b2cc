"""Exact search: every searcher returns exactly what a brute-force scan returns."""

from __future__ import annotations

import numpy as np
import pytest

from hashmatch.fixtures.hashlists import flip_bits, random_codes
from hashmatch.index.artifact import row_keys
from hashmatch.index.mih import MihLayout, MultiIndex, _split, choose_layout
from hashmatch.index.search import ExactSearcher, FlatSearcher, MultiIndexSearcher


def _brute_force(codes: np.ndarray, queries: np.ndarray, radius: int) -> set[tuple[int, int, int]]:
    found = set()
    for q, query in enumerate(queries):
        distances = np.unpackbits(codes ^ query, axis=1).sum(axis=1)
        for row in np.flatnonzero(distances <= radius):
            found.add((q, int(row), int(distances[row])))
    return found


def _planted(codes: np.ndarray, max_distance: int, seed: int) -> tuple[np.ndarray, list[int]]:
    """One query per distance 0..max_distance, each planted at that distance from a code."""
    rng = np.random.default_rng(seed)
    rows = rng.choice(len(codes), size=max_distance + 1, replace=False)
    queries = np.stack([flip_bits(codes[row], d, rng) for d, row in enumerate(rows)])
    return queries, rows.tolist()


def _as_set(hits) -> set[tuple[int, int, int]]:
    owners, rows, distances = hits
    return set(zip(owners.tolist(), rows.tolist(), distances.tolist(), strict=True))


LAYOUTS_256 = [(16, 1), (11, 2), (12, 2), (13, 2)]


@pytest.mark.parametrize(("substrings", "flips"), LAYOUTS_256)
def test_multi_index_is_exact_for_pdq_radius_31(substrings: int, flips: int) -> None:
    codes = random_codes(20_000, seed=substrings)
    layout = MihLayout(256, _split(256, substrings), flips)
    assert layout.radius >= 31
    index = MultiIndex.build(codes, layout)
    queries, rows = _planted(codes, 40, seed=flips)
    hits = _as_set(index.search(queries, 31))
    assert hits == _brute_force(codes, queries, 31)
    found_rows = {(q, row) for q, row, _ in hits}
    for distance, row in enumerate(rows):  # planted at every distance 0..40
        assert ((distance, row) in found_rows) == (distance <= 31)


@pytest.mark.parametrize(("substrings", "lighter"), [(11, 1), (12, 4), (16, 0)])
def test_multi_index_with_lighter_substrings_is_exact_at_its_radius(
    substrings: int, lighter: int
) -> None:
    # the longest substrings probed with one flip fewer: sum(flips + 1) is still 32 > 31
    flips = 2 if substrings < 16 else 1
    layout = MihLayout(256, _split(256, substrings), flips, lighter)
    assert layout.radius == 31
    assert layout.probes < MihLayout(256, _split(256, substrings), flips).probes or not lighter
    codes = random_codes(20_000, seed=substrings + 50)
    index = MultiIndex.build(codes, layout)
    queries, rows = _planted(codes, 40, seed=lighter)
    hits = _as_set(index.search(queries, 31))
    assert hits == _brute_force(codes, queries, 31)
    assert {(distance, row) for distance, row in enumerate(rows) if distance <= 31} <= {
        (q, row) for q, row, _ in hits
    }
    one_more = MihLayout(256, _split(256, substrings), flips, lighter + 1)
    assert one_more.radius == 30  # one flip fewer would no longer cover 31


def test_multi_index_reports_each_neighbour_once_with_its_distance() -> None:
    codes = random_codes(5_000, seed=9)
    index = MultiIndex.build(codes, MihLayout(256, _split(256, 11), 2))
    owners, rows, distances = index.search(codes[:50], 0)
    assert owners.tolist() == list(range(50)) and rows.tolist() == list(range(50))
    assert not distances.any()


@pytest.mark.parametrize("radius", [0, 5, 10])
def test_multi_index_is_exact_for_64_bit_hashes(radius: int) -> None:
    codes = random_codes(30_000, bits=64, seed=radius)
    layout = choose_layout(10_000_000, 64, 10)  # the layout a large 64-bit index would use
    assert layout is not None and layout.radius >= 10
    index = MultiIndex.build(codes, layout)
    queries, _ = _planted(codes, 16, seed=radius)
    assert _as_set(index.search(queries, radius)) == _brute_force(codes, queries, radius)


def test_multi_index_is_exact_with_tables_narrower_than_a_bitmap_word() -> None:
    # 4-bit substrings: 16 buckets, padded to one 64-bit occupancy word per table
    codes = random_codes(3_000, bits=64, seed=12)
    layout = MihLayout(64, _split(64, 16), 0)
    index = MultiIndex.build(codes, layout)
    assert index.buckets.shape == (16, 2)
    queries, _ = _planted(codes, 15, seed=12)
    assert _as_set(index.search(queries, 15)) == _brute_force(codes, queries, 15)


def test_multi_index_batches_in_passes_like_one_query_at_a_time() -> None:
    codes = random_codes(20_000, seed=13)
    index = MultiIndex.build(codes, MihLayout(256, _split(256, 11), 2))
    queries, _ = _planted(codes, 40, seed=13)
    queries = np.vstack([queries, random_codes(60, seed=14)])  # more than one pass
    one_by_one = {
        (q, row, distance)
        for q, query in enumerate(queries)
        for _, row, distance in _as_set(index.search(query[None], 31))
    }
    assert _as_set(index.search(queries, 31)) == one_by_one == _brute_force(codes, queries, 31)


def test_multi_index_over_no_codes_finds_nothing() -> None:
    codes = random_codes(0, seed=1)
    index = MultiIndex.build(codes, MihLayout(256, _split(256, 11), 2))
    owners, rows, distances = index.search(random_codes(3, seed=2), 31)
    assert len(owners) == len(rows) == len(distances) == 0


def test_multi_index_refuses_a_radius_beyond_its_design() -> None:
    codes = random_codes(100, seed=1)
    index = MultiIndex.build(codes, MihLayout(256, _split(256, 16), 1))
    with pytest.raises(ValueError, match="exceeds this layout's 31"):
        index.search(codes[:1], 40)


def test_searcher_falls_back_to_flat_beyond_the_design_radius() -> None:
    codes = random_codes(8_000, seed=4)
    searcher = MultiIndexSearcher(MultiIndex.build(codes, MihLayout(256, _split(256, 16), 1)))
    queries, _ = _planted(codes, 45, seed=4)
    assert _as_set(searcher.search(queries, 40)) == _brute_force(codes, queries, 40)


@pytest.mark.parametrize("radius", [0, 10, 31, 40])
def test_flat_search_is_exact(radius: int) -> None:
    codes = random_codes(10_000, seed=radius)
    queries, _ = _planted(codes, 40, seed=radius + 1)
    assert _as_set(FlatSearcher(codes).search(queries, radius)) == _brute_force(
        codes, queries, radius
    )


def test_exact_searcher_finds_identical_codes_only() -> None:
    codes = random_codes(1_000, bits=128, seed=5)
    keys = row_keys(codes)
    order = np.argsort(keys)
    searcher = ExactSearcher(codes[order], keys[order])
    queries = np.vstack([codes[[3, 500]], flip_bits(codes[7], 1, np.random.default_rng(0))[None]])
    owners, rows, distances = searcher.search(queries, 0)
    assert owners.tolist() == [0, 1]
    assert np.array_equal(codes[order][rows], codes[[3, 500]])
    assert not distances.any()


def test_layout_choice_follows_index_size() -> None:
    assert choose_layout(1_000, 256, 31) is None  # a flat scan is cheaper
    large = choose_layout(10_000_000, 256, 31)
    assert large is not None and (large.flips, len(large.substrings)) == (2, 11)
    assert all(
        layout.radius >= 31
        for layout in (choose_layout(n, 256, 31) for n in (10**5, 10**6, 10**7))
        if layout
    )


def test_row_keys_are_stable_format_constants() -> None:
    # Keys are part of the on-disk format: a change here would break existing indexes.
    codes = np.arange(64, dtype=np.uint8).reshape(2, 32)
    assert row_keys(codes).tolist() == [int(k) for k in row_keys(codes.copy())]
    assert row_keys(np.zeros((1, 32), np.uint8))[0] == 0
    assert len(set(row_keys(random_codes(10_000, seed=2)).tolist())) == 10_000
