"""Exclusion lists: hashes and entry ids confirmed as false positives, dropped at build time.

One item per line, ``#`` comments allowed: ``ALGORITHM HASH`` (or ``ALGORITHM:HASH``) excludes
that hash, a bare hex hash excludes it for every algorithm of that length, and ``id:ENTRY_ID``
excludes the entries with that id (the hash stays if other entries carry it).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from hashmatch.errors import HashListError
from hashmatch.lists.columns import canonical_algorithm
from hashmatch.lists.readers import open_text
from hashmatch.registry import algorithm_names, get_algorithm

__all__ = ["Exclusions", "read_exclusions"]


@dataclass
class Exclusions:
    hashes: dict[str, set[bytes]] = field(default_factory=dict)
    """Excluded codes by algorithm."""
    entry_ids: set[str] = field(default_factory=set)
    """Entry ids excluded from every list."""
    list_entries: set[tuple[str, str]] = field(default_factory=set)
    """``(list, entry id)`` pairs excluded from that list only (a bank's exclusions)."""

    def __bool__(self) -> bool:
        return bool(self.entry_ids) or bool(self.list_entries) or any(self.hashes.values())

    def merge(self, other: Exclusions) -> None:
        for algorithm, codes in other.hashes.items():
            self.hashes.setdefault(algorithm, set()).update(codes)
        self.entry_ids |= other.entry_ids
        self.list_entries |= other.list_entries


def read_exclusions(path: str | Path) -> Exclusions:
    """Parse an exclusion file; any unreadable line is an error (exclusions must be exact)."""
    path = Path(path)
    if not path.is_file():
        raise HashListError(str(path), None, "no such file")
    exclusions = Exclusions()
    with open_text(path) as file:
        for number, raw in enumerate(file, start=1):
            text = raw.strip()
            if not text or text.startswith("#"):
                continue
            if text.lower().startswith("id:"):
                exclusions.entry_ids.add(text[3:].strip())
                continue
            try:
                _add_hash(exclusions, text)
            except ValueError as exc:
                raise HashListError(str(path), number, str(exc)) from None
    return exclusions


def _add_hash(exclusions: Exclusions, text: str) -> None:
    tokens = text.replace(":", " ", 1).split() if ":" in text else text.split()
    if len(tokens) == 2:
        algorithm = canonical_algorithm(tokens[0])
        if algorithm not in algorithm_names():
            raise ValueError(f"unknown algorithm {tokens[0]!r}")
        candidates = [algorithm]
        value = tokens[1]
    elif len(tokens) == 1:
        value = tokens[0]
        candidates = [a for a in algorithm_names() if get_algorithm(a).bits // 4 == len(value)]
        if not candidates:
            raise ValueError(f"{value!r} is no hash length we know; use id:{value} for an id")
    else:
        raise ValueError("expected ALGORITHM HASH, HASH or id:ENTRY_ID")
    for algorithm in candidates:
        digits = get_algorithm(algorithm).bits // 4
        try:
            code = bytes.fromhex(value)
        except ValueError:
            raise ValueError(f"not a hex hash: {value!r}") from None
        if len(value) != digits:
            raise ValueError(f"{algorithm} hash must be {digits} hex digits, got {len(value)}")
        exclusions.hashes.setdefault(algorithm, set()).add(code)
