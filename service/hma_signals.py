"""HMA's vocabulary in our terms: signal types and algorithms, HMA's hash validation, and
matches in HMA's shape (per bank, one result per content).

A *bank* is a list; a *signal type* is an algorithm: ``pdq`` is ours, ``video_md5`` is our
``md5`` of the file bytes, and our other algorithms are signal types under their own names.
A ``bank_content_id`` comes from :mod:`~hashmatch.service.content_ids`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from hashmatch.index.results import Match
from hashmatch.registry import algorithm_names, get_algorithm
from hashmatch.service.content_ids import bank_content_id
from hashmatch.service.state import ServiceError

__all__ = [
    "HMA_SIGNAL_TYPES",
    "BankMatches",
    "InvalidSignal",
    "bank_filter",
    "by_bank",
    "known_algorithm",
    "per_content",
    "signal_algorithm",
    "signal_or_400",
    "status_names",
    "upload_signal_types",
    "validated_signal",
]

HMA_SIGNAL_TYPES = {"pdq": "pdq", "video_md5": "md5"}
"""HMA's signal types and our algorithm for each."""

_DEFAULT_TYPES = {"photo": ("pdq",), "video": ("video_md5",)}
"""What an upload of each content type is hashed with when ``types`` does not say."""

_LOWERCASE_ONLY = frozenset({"pdq"})
"""Signal types HMA takes only as lower-case hex (its PDQ); the others are lower-cased."""

BankMatches = dict[str, list[dict[str, Any]]]
"""``{"BANK": [{"bank_content_id": 1, "distance": "0"}, ...]}``."""


class InvalidSignal(ValueError):
    """A hash that is not valid for its signal type; the message is HMA's reason."""


def signal_algorithm(signal_type: str) -> str | None:
    """Our algorithm for an HMA signal type name (``video_md5`` is ``md5``), or None."""
    if signal_type in HMA_SIGNAL_TYPES:
        return HMA_SIGNAL_TYPES[signal_type]
    return signal_type if signal_type in algorithm_names() else None


def known_algorithm(signal_type: str) -> str:
    """:func:`signal_algorithm`, or HMA's 400 for a name it does not know."""
    algorithm = signal_algorithm(signal_type)
    if algorithm is None:
        raise ServiceError(400, f"No such SignalType '{signal_type}'")
    return algorithm


def validated_signal(algorithm: str, text: object) -> str:
    """``text`` as ``algorithm``'s hex, as HMA validates it: PDQ exactly 64 lower-case hex
    digits, the others lower-cased first; :class:`InvalidSignal` otherwise (the message
    never quotes the hash: hashes are sensitive and messages get logged)."""
    if not isinstance(text, str):
        raise InvalidSignal(f"invalid {algorithm.upper()} hash")
    digits = text if algorithm in _LOWERCASE_ONLY else text.strip().lower()
    width = get_algorithm(algorithm).bits // 4
    if re.fullmatch(f"[0-9a-f]{{{width}}}", digits) is None:
        raise InvalidSignal(f"invalid {algorithm.upper()} hash")
    return digits


def signal_or_400(algorithm: str, text: str) -> str:
    """:func:`validated_signal`, or HMA's 400 ``invalid signal: ...``."""
    try:
        return validated_signal(algorithm, text)
    except InvalidSignal as exc:
        raise ServiceError(400, f"invalid signal: {exc}") from None


def upload_signal_types(content_type: str, types: str | None) -> dict[str, str]:
    """Signal type -> algorithm to compute for an upload: the content type's default, or
    ``types`` (photos: any algorithm; videos: ``video_md5`` and the exact byte hashes), with
    HMA's 400s for a name it does not take."""
    if types is None:
        return {name: HMA_SIGNAL_TYPES[name] for name in _DEFAULT_TYPES[content_type]}
    accepted = {name: name for name in algorithm_names()}
    if content_type == "video":
        accepted = {n: n for n in accepted if not get_algorithm(n).needs_pixels}
        accepted["video_md5"] = HMA_SIGNAL_TYPES["video_md5"]
    chosen: dict[str, str] = {}
    for item in types.split(","):
        name = item.strip()
        if not name:
            continue
        if name not in accepted:
            raise ServiceError(400, f"signal type '{name}' doesn't exist or is disabled")
        chosen[name] = accepted[name]
    if not chosen:
        raise ServiceError(400, "empty signal type selection")
    return chosen


def status_names(algorithms: Iterable[str]) -> list[str]:
    """The signal types ``/m/index/status`` reports: HMA's two, then the index's others."""
    mapped = set(HMA_SIGNAL_TYPES.values())
    return [*HMA_SIGNAL_TYPES, *(name for name in algorithms if name not in mapped)]


def bank_filter(banks: str | None) -> set[str] | None:
    """A ``banks`` parameter (comma-separated) as names; None (every bank) when not given."""
    return {name.strip() for name in banks.split(",")} if banks else None


def per_content(matches: Iterable[Match], banks: set[str] | None) -> list[dict[str, Any]]:
    """One ``{"bank_content_id", "distance", "bank"}`` per (list, entry), its nearest match
    (``matches`` come nearest first), for the lists ``banks`` names (all when None).
    ``distance`` is a string, ``"-"`` for exact hashes, as HMA words it."""
    seen: set[tuple[str, str]] = set()
    found = []
    for match in matches:
        entry = (match.list, match.entry_id if match.entry_id is not None else match.hash)
        if entry in seen or (banks is not None and match.list not in banks):
            continue
        seen.add(entry)
        exact = not get_algorithm(match.algorithm).needs_pixels
        found.append(
            {
                "bank_content_id": bank_content_id(match.list, match.entry_id, match.hash),
                "distance": "-" if exact else str(match.distance),
                "bank": match.list,
            }
        )
    return found


def by_bank(matches: Iterable[Match], banks: set[str] | None) -> BankMatches:
    """:func:`per_content` grouped by bank, HMA's ``/m/lookup`` shape (``{}``: no match)."""
    grouped: BankMatches = {}
    for item in per_content(matches, banks):
        bank = item.pop("bank")
        grouped.setdefault(bank, []).append(item)
    return grouped
