"""The matching rules, in one place: which hashes an image is searched by, and its verdict.

* :func:`image_queries` is the single walk over what one image is searched by: its hash per
  algorithm, its dihedral variants, the recovered crops and tilts, and the picture inside its
  border (with that picture's variants), each named by the variant a match reports.
* :func:`search` runs those queries against one loaded version and turns hits into
  :class:`~hashmatch.index.results.Match` objects, within each entry's list threshold.
* :func:`verdict` applies the rules on top: matches of an algorithm whose quality floor the
  image is under are dropped (``low_quality`` when nothing else matched), and weaker hashes'
  matches need the confirming algorithm's (PDQ's) agreement on the same entry.

Algorithms' roles (quality floor, confirming others, dihedral variants) are fields of
:class:`~hashmatch.registry.Algorithm`; nothing here names an algorithm.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from hashmatch.batch import HashOutcome
from hashmatch.errors import HashFormatError
from hashmatch.hashes import Hash
from hashmatch.hashing import HashResult
from hashmatch.index.loaded import LoadedIndex
from hashmatch.index.overlay import OverlayView
from hashmatch.index.results import Match, MatchResult, MatchStatus
from hashmatch.index.search import SearchHits
from hashmatch.registry import get_algorithm

__all__ = [
    "HashInput",
    "Query",
    "image_queries",
    "low_quality_algorithms",
    "nearest_distances",
    "nearest_hits",
    "query_rows",
    "query_codes",
    "search",
    "verdict",
]

HashInput = Mapping[str, "Hash | str | Sequence[Hash | str]"]
"""Hashes a caller already has: algorithm name -> a Hash, a hex string, or several."""

Query = tuple[str | None, Hash]
"""One hash to search for, and the variant a match on it reports (None: the image)."""

_TRIMMED = "trimmed"


def image_queries(hashes: HashInput | HashResult, dihedral: bool) -> dict[str, list[Query]]:
    """Every hash to search for this image, by algorithm, the image's own first.

    For a :class:`HashResult`: its hashes, then (with ``dihedral``) their variants, the
    recovered edits, and the trimmed picture's hashes and variants (``trimmed``,
    ``trimmed+rotate90``). Raises a HashmatchError subclass for a malformed mapping, never
    quoting a hash.
    """
    queries = _parsed_queries(hashes)
    if isinstance(hashes, HashResult):
        _add_derived(queries, hashes, dihedral)
        if hashes.trimmed is not None:
            inner = _parsed_queries(hashes.trimmed)
            _add_derived(inner, hashes.trimmed, dihedral)
            for algorithm, items in inner.items():
                queries.setdefault(algorithm, []).extend(
                    (_TRIMMED if variant is None else f"{_TRIMMED}+{variant}", value)
                    for variant, value in items
                )
    return queries


def _add_derived(queries: dict[str, list[Query]], result: HashResult, dihedral: bool) -> None:
    for algorithm, variants in result.variants.items() if dihedral else ():
        queries.setdefault(algorithm, []).extend(variants.items())
    for algorithm, edits in result.recovered.items():
        queries.setdefault(algorithm, []).extend(edits.items())


def _parsed_queries(hashes: HashInput | HashResult) -> dict[str, list[Query]]:
    if not isinstance(hashes, Mapping):
        raise HashFormatError(
            "expected a mapping of algorithm names to hashes (hex strings or Hash values),"
            f" got {type(hashes).__name__}"
        )
    if not hashes:
        raise HashFormatError("no hashes given")
    queries: dict[str, list[Query]] = {}
    for name, value in hashes.items():
        algorithm = get_algorithm(name).name
        values = [value] if isinstance(value, (Hash, str)) else value
        if not isinstance(values, (list, tuple)):
            raise HashFormatError(
                f"{algorithm}: expected a hex string or a Hash, got {type(value).__name__}"
            )
        if not values:
            raise HashFormatError(f"no hash given for {algorithm}")
        queries.setdefault(algorithm, []).extend((None, _parsed(algorithm, v)) for v in values)
    return queries


def _parsed(algorithm: str, item: object) -> Hash:
    if isinstance(item, Hash):
        if item.algorithm != algorithm:
            raise HashFormatError(f"a {item.algorithm} hash given as {algorithm}")
        return item
    if isinstance(item, str):
        return Hash.from_hex(algorithm, item)
    raise HashFormatError(
        f"{algorithm}: expected a hex string or a Hash, got {type(item).__name__}"
    )


def query_codes(result: HashResult, algorithm: str, dihedral: bool = True) -> np.ndarray:
    """Every code of ``algorithm`` a verdict searches for this image, as rows of bytes."""
    hashes = [value for _, value in image_queries(result, dihedral).get(algorithm, [])]
    return np.frombuffer(b"".join(h.value for h in hashes), dtype=np.uint8).reshape(len(hashes), -1)


def nearest_distances(queries: np.ndarray, stored: np.ndarray) -> np.ndarray:
    """Per row of ``stored``, the Hamming distance to the nearest row of ``queries``."""
    return np.bitwise_count(queries[:, None, :] ^ stored[None, :, :]).sum(axis=2).min(axis=0)


def search(
    snapshot: LoadedIndex,
    queries: Mapping[str, list[Query]],
    thresholds: Mapping[str, int],
    overlay: OverlayView | None = None,
) -> list[Match]:
    """Every list entry within threshold of the queries, one match per entry (its nearest
    query), nearest first. ``thresholds`` (checked) override the index's and lists'. With
    an ``overlay``, the banks' added contents match too and what it hides does not."""
    matches: list[Match] = []
    for algorithm, items in queries.items():
        if algorithm in snapshot.algorithms:
            matches.extend(_search_algorithm(snapshot, algorithm, items, thresholds))
    if overlay is not None:
        matches = [m for m in matches if not overlay.hides(m)]
        matches.extend(
            m for m in overlay.search(snapshot, queries, thresholds) if not overlay.hides(m)
        )
    return sorted(matches, key=_nearest_first)


def _nearest_first(match: Match) -> tuple[int, str, str, str]:
    return (match.distance, match.algorithm, match.list, match.entry_id or "")


def _search_algorithm(
    snapshot: LoadedIndex,
    algorithm: str,
    items: list[Query],
    thresholds: Mapping[str, int],
) -> list[Match]:
    index = snapshot.algorithms[algorithm]
    override = thresholds.get(algorithm)
    radius = override if override is not None else index.design_radius
    best = nearest_hits(items, index.searcher.search(query_rows(items), radius))
    if not best:
        return []
    code_rows = np.array(sorted(best), dtype=np.int64)
    entry_groups = index.entries_of(code_rows)
    records = snapshot.entries([int(r) for group in entry_groups for r in group.tolist()])
    matches = []
    for row, group in zip(code_rows.tolist(), entry_groups, strict=True):
        distance, owner = best[row]
        stored = index.codes[row].tobytes().hex()
        for rowid in group.tolist():
            record = records.get(rowid)
            if record is None:
                continue
            limit = (
                override if override is not None else snapshot.threshold_for(algorithm, record.list)
            )
            if distance > limit:
                continue
            matches.append(
                Match(
                    algorithm,
                    distance,
                    stored,
                    record.list,
                    record.entry_id,
                    record.label,
                    items[owner][0],
                    record.metadata,
                )
            )
    return matches


def query_rows(items: list[Query]) -> np.ndarray:
    """The queries' codes as rows of bytes, for a searcher."""
    return np.frombuffer(b"".join(h.value for _, h in items), dtype=np.uint8).reshape(
        len(items), -1
    )


def nearest_hits(items: list[Query], hits: SearchHits) -> dict[int, tuple[int, int]]:
    """Per code row hit, its nearest query: ``row -> (distance, query number)``. On a tie
    the image's own hashes win over the trimmed picture's, and otherwise the first hit the
    searcher reports."""
    owners, rows, distances = hits
    inside = [variant is not None and variant.startswith(_TRIMMED) for variant, _ in items]
    best: dict[int, tuple[int, int]] = {}
    for owner, row, distance in zip(
        owners.tolist(), rows.tolist(), distances.tolist(), strict=True
    ):
        held = best.get(row)
        if (
            held is None
            or distance < held[0]
            or (distance == held[0] and inside[held[1]] and not inside[owner])
        ):
            best[row] = (distance, owner)
    return best


def low_quality_algorithms(result: HashResult) -> set[str]:
    """The algorithms whose matches this image is too uninformative for (PDQ below 50)."""
    if result.pdq_quality is None:
        return set()
    return {
        name
        for name in result.hashes
        if (floor := get_algorithm(name).quality_floor) is not None and result.pdq_quality < floor
    }


def verdict(
    snapshot: LoadedIndex,
    outcome: HashOutcome,
    thresholds: Mapping[str, int],
    dihedral: bool,
    source: str | int | None = None,
    overlay: OverlayView | None = None,
) -> MatchResult:
    """Status and matches for one hashed image, every lookup on the one version given (and
    the overlay view taken with it)."""
    result = outcome.result
    if result is None:
        return MatchResult(
            "error",
            error_kind=outcome.error_kind,
            error_message=outcome.error_message,
            index_version=snapshot.version,
            source=source,
            exception=outcome.exception,
        )
    matches = search(snapshot, image_queries(result, dihedral), thresholds, overlay)
    matches = _confirmed(snapshot, result, matches, dihedral, overlay)
    untrusted = low_quality_algorithms(result)
    if untrusted:
        matches = [m for m in matches if m.algorithm not in untrusted]
    status: MatchStatus = "match" if matches else "low_quality" if untrusted else "no_match"
    return MatchResult(
        status,
        matches,
        dict(result.hashes),
        result.pdq_quality,
        width=result.width,
        height=result.height,
        index_version=snapshot.version,
        source=source,
        hash_result=result,
    )


def _confirmed(
    snapshot: LoadedIndex,
    result: HashResult,
    matches: list[Match],
    dihedral: bool,
    overlay: OverlayView | None = None,
) -> list[Match]:
    """``matches`` without the weaker hashes' ones that the confirming algorithm's hash of
    the same entry contradicts (entries without that hash keep their matches)."""
    for confirming in (get_algorithm(name) for name in result.hashes):
        if confirming.confirms_within is None:
            continue
        query: np.ndarray | None = None
        kept: list[Match] = []
        for match in matches:
            weak = get_algorithm(match.algorithm)
            vouched = weak.needs_pixels and weak.confirms_within is None
            stored = (
                _confirming_codes(snapshot, overlay, confirming.name, match)
                if vouched and match.entry_id is not None
                else None
            )
            if stored is None or not len(stored):  # nothing to confirm it with
                kept.append(match)
                continue
            if query is None:
                query = query_codes(result, confirming.name, dihedral)
            if int(nearest_distances(query, stored).min()) <= confirming.confirms_within:
                kept.append(match)
        matches = kept
    return matches


def _confirming_codes(
    snapshot: LoadedIndex, overlay: OverlayView | None, algorithm: str, match: Match
) -> np.ndarray | None:
    """The confirming algorithm's stored codes of the match's entry: a bank's added content
    first, else the published entry's."""
    assert match.entry_id is not None
    if overlay is not None:
        added = overlay.codes_of_entry(match.list, match.entry_id, algorithm)
        if added is not None:
            return added
    if algorithm not in snapshot.algorithms:
        return None
    rows = snapshot.rows_of_entry(algorithm, match.list, match.entry_id)
    return snapshot.algorithms[algorithm].codes_of_entries(rows) if rows else None
