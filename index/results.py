"""What matching returns: one :class:`Match` per list entry found, one :class:`MatchResult` per
image. Plain values, built by :mod:`hashmatch.index.verdict` and read by every interface."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, get_args

from hashmatch.hashes import Hash
from hashmatch.hashing import HashResult

__all__ = ["Match", "MatchResult", "MatchStatus"]

MatchStatus = Literal["match", "no_match", "low_quality", "error"]


@dataclass(frozen=True)
class Match:
    """One list entry within threshold of a query hash."""

    algorithm: str
    distance: int
    hash: str
    """The stored hash that matched, as hex."""
    list: str
    entry_id: str | None
    label: str | None
    variant: str | None = None
    """What matched, when not the image as it is: a rotation/flip (``rotate90``...), the
    picture inside a border (``trimmed``, ``trimmed+rotate90``), a crop or tilt undone
    (``uncrop_5pct``, ``tilt_+2deg``...)."""
    metadata: dict[str, str] = field(default_factory=dict, compare=False, hash=False)

    def to_json(self) -> dict[str, Any]:
        return {
            "algorithm": self.algorithm,
            "distance": self.distance,
            "hash": self.hash,
            "list": self.list,
            "entry_id": self.entry_id,
            "label": self.label,
            "variant": self.variant,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Match:
        """The inverse of :meth:`to_json` (what the service sends back to a client)."""
        return cls(
            algorithm=str(data["algorithm"]),
            distance=int(data["distance"]),
            hash=str(data["hash"]),
            list=str(data["list"]),
            entry_id=_optional_str(data.get("entry_id")),
            label=_optional_str(data.get("label")),
            variant=_optional_str(data.get("variant")),
        )


@dataclass(frozen=True)
class MatchResult:
    """The verdict for one image."""

    status: MatchStatus
    """``match``, ``no_match``, ``low_quality`` (PDQ quality < 50, nothing else matched) or
    ``error`` (the image could not be read or decoded)."""
    matches: list[Match] = field(default_factory=list)
    hashes: dict[str, Hash] = field(default_factory=dict)
    quality: int | None = None
    """PDQ quality 0-100 when PDQ was computed."""
    error_kind: str | None = None
    """With status ``error``: ``read``, ``decode``, ``too_large``, ``unsupported``,
    ``timeout``, ``crashed``, ``error`` or ``internal`` (see
    :class:`~hashmatch.batch.HashOutcome`)."""
    error_message: str | None = None
    width: int | None = None
    height: int | None = None
    index_version: str | None = None
    source: str | int | None = None
    """What was matched, as given to :meth:`Matcher.match_many` (a path, or the position of
    bytes/file/PIL sources); None from :meth:`Matcher.match`."""
    exception: BaseException | None = field(default=None, compare=False, repr=False)
    """The exception behind an ``error``, where one was raised (in this process or a worker)."""
    hash_result: HashResult | None = field(default=None, compare=False, repr=False)
    """Everything hashing computed for the image (its variants, the picture inside its
    border, the recovered edits), for callers that measure distances, like ``eval``."""

    def to_json(self, *, with_hashes: bool = False) -> dict[str, Any]:
        """The result as the service answers it: every field but the exception and the raw
        hash result; the hashes as hex only when asked for."""
        data: dict[str, Any] = {
            "status": self.status,
            "matches": [match.to_json() for match in self.matches],
            "quality": self.quality,
            "width": self.width,
            "height": self.height,
            "index_version": self.index_version,
            "error": None
            if self.error_kind is None
            else {"kind": self.error_kind, "message": self.error_message},
        }
        if with_hashes:
            data["hashes"] = {name: value.hex for name, value in self.hashes.items()}
        return data

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> MatchResult:
        """The inverse of :meth:`to_json`; a status this version does not know raises
        ValueError (a client must not guess what an unknown verdict means)."""
        status = data["status"]
        if status not in _STATUSES:
            raise ValueError(f"unknown match status {status!r}")
        error = data.get("error") or {}
        hashes = {
            name: Hash.from_hex(name, text)
            for name, text in (data.get("hashes") or {}).items()
            if text
        }
        return cls(
            status=status,
            matches=[Match.from_json(item) for item in data.get("matches") or []],
            hashes=hashes,
            quality=data.get("quality"),
            error_kind=error.get("kind"),
            error_message=error.get("message"),
            width=data.get("width"),
            height=data.get("height"),
            index_version=data.get("index_version"),
        )

    @property
    def matched(self) -> bool:
        return self.status == "match"

    @property
    def error(self) -> str | None:
        """``kind: message`` (``decode: image file is truncated``), as records print it."""
        return None if self.error_kind is None else f"{self.error_kind}: {self.error_message}"


_STATUSES = frozenset(get_args(MatchStatus))


def _optional_str(value: object) -> str | None:
    return None if value is None else str(value)
