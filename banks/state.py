"""A bank's state, folded from its records: the bank's settings, its contents and their
history, its exclusions.

Everything that decides what matches is a function of (records up to a sequence number, a
time), so a rebuild and a server's overlay compute the same thing: :meth:`BankState.enabled_at`
answers for the log as it is now or as it was when a build read it
(:meth:`BankEntry.state_at`), which is how the overlay knows what a published version holds.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from hashmatch.banks.records import DISABLED, ENABLED, BankRecord

__all__ = ["DELETED", "BankEntry", "BankState", "ExclusionKey", "enabled_value"]

DELETED = -1
"""The ``disable_until_ts`` a deleted content's history ends with."""

ExclusionKey = tuple[str, str, str]
"""``("hash", algorithm, hex)`` or ``("entry", list, entry id)``."""


def enabled_value(disable_until_ts: int, now: float) -> bool:
    """Whether a content with this ``disable_until_ts`` matches at ``now``."""
    if disable_until_ts in (DISABLED, DELETED):
        return False
    return disable_until_ts == ENABLED or now >= disable_until_ts


@dataclass
class BankEntry:
    """One content of a bank: what was added (immutable) and each change of its state."""

    bank: str
    id: int
    signals: dict[str, str]
    added_seq: int
    added_at: float
    added_by: str | None
    note: str | None = None
    metadata: dict[str, Any] | None = None
    uri: str | None = None
    history: list[tuple[int, int]] = field(default_factory=list)
    """``(seq, disable_until_ts)`` in order; the add is the first, ``DELETED`` ends it."""

    @property
    def disable_until_ts(self) -> int:
        return self.history[-1][1]

    @property
    def deleted(self) -> bool:
        return self.disable_until_ts == DELETED

    def state_at(self, seq: int) -> int | None:
        """The ``disable_until_ts`` after record ``seq`` (None: not yet added)."""
        value = None
        for at, state in self.history:
            if at > seq:
                break
            value = state
        return value

    def enabled_through(self, seq: int, now: float) -> bool:
        """Whether this content matched in the log read through ``seq``, at time ``now``."""
        state = self.state_at(seq)
        return state is not None and enabled_value(state, now)

    def match_metadata(self) -> dict[str, str]:
        """The metadata its matches carry, as a list entry's: text values (and its URI)."""
        data = {
            key: value if isinstance(value, str) else json.dumps(value, sort_keys=True)
            for key, value in (self.metadata or {}).items()
        }
        if self.uri:
            data["uri"] = self.uri
        return data

    def to_json(self, include_signals: bool = True) -> dict[str, Any]:
        data: dict[str, Any] = {
            "id": self.id,
            "disable_until_ts": self.disable_until_ts,
            "added_at": self.added_at,
            "added_by": self.added_by,
            "note": self.note,
            "metadata": self.metadata,
            "uri": self.uri,
        }
        if include_signals:
            data["signals"] = dict(self.signals)
        return data


@dataclass
class BankState:
    """A bank as its log says it is, through :attr:`last_seq`."""

    name: str
    ratio: float = 1.0
    exists: bool = False
    created_at: float | None = None
    last_seq: int = 0
    last_at: float | None = None
    entries: dict[int, BankEntry] = field(default_factory=dict)
    exclusions: dict[ExclusionKey, list[tuple[int, bool]]] = field(default_factory=dict)
    """Per excluded hash or entry: ``(seq, excluded)`` in order."""
    live_entries: int = 0
    """Contents neither deleted nor dropped (enabled or disabled)."""

    def apply(self, records: Iterable[BankRecord]) -> list[tuple[str, Any]]:
        """Fold ``records`` in; returns what changed: ``("entry", id)``, ``("exclusion",
        key)`` or ``("bank", name)`` items. Records at or before :attr:`last_seq` (read
        twice) are ignored."""
        changed: list[tuple[str, Any]] = []
        for record in records:
            if record.seq <= self.last_seq:
                continue
            self.last_seq, self.last_at = record.seq, record.at
            changed.extend(self._apply(record))
        return changed

    def _apply(self, record: BankRecord) -> list[tuple[str, Any]]:
        op, fields = record.op, record.fields
        if op == "create":
            self.exists, self.ratio, self.created_at = True, float(fields["ratio"]), record.at
            return [("bank", self.name)]
        if op == "update":
            self.ratio = float(fields["ratio"])
            return [("bank", self.name)]
        if op == "drop":
            self.exists = False
            dropped: list[tuple[str, Any]] = []
            for entry in self.entries.values():
                if not entry.deleted:
                    entry.history.append((record.seq, DELETED))
                    dropped.append(("entry", entry.id))
            self.live_entries = 0
            for excluded in self.active_exclusions():  # a dropped bank's go with it
                self.exclusions[excluded].append((record.seq, False))
                dropped.append(("exclusion", excluded))
            return [("bank", self.name), *dropped]
        if op == "add":
            content = int(fields["id"])
            if content in self.entries or not self.exists:
                return []  # an id is never reused; nothing is added to a dropped bank
            self.entries[content] = BankEntry(
                self.name,
                content,
                dict(fields["signals"]),
                record.seq,
                record.at,
                record.by,
                fields.get("note"),
                fields.get("metadata"),
                fields.get("uri"),
                [(record.seq, int(fields.get("disable_until_ts", ENABLED)))],
            )
            self.live_entries += 1
            return [("entry", content)]
        if op in ("set", "delete"):
            changed = self.entries.get(int(fields["id"]))
            if changed is None or changed.deleted:
                return []
            state = DELETED if op == "delete" else int(fields["disable_until_ts"])
            changed.history.append((record.seq, state))
            if op == "delete":
                self.live_entries -= 1
            return [("entry", changed.id)]
        # exclude / include
        key: ExclusionKey = (
            ("hash", str(fields["algorithm"]), str(fields["hash"]))
            if "hash" in fields
            else ("entry", str(fields["list"]), str(fields["entry"]))
        )
        self.exclusions.setdefault(key, []).append((record.seq, op == "exclude"))
        return [("exclusion", key)]

    def excluded_through(self, key: ExclusionKey, seq: int) -> bool:
        value = False
        for at, excluded in self.exclusions.get(key, ()):
            if at > seq:
                break
            value = excluded
        return value

    def active_exclusions(self) -> list[ExclusionKey]:
        return [key for key, changes in self.exclusions.items() if changes[-1][1]]

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "matching_enabled_ratio": self.ratio,
            "contents": self.live_entries,
            "exclusions": len(self.active_exclusions()),
            "records": self.last_seq,
            "created_at": self.created_at,
            "last_record_at": self.last_at,
        }
