"""What matching returns: one :class:`Match` per list entry found, one :class:`MatchResult` per
image. Plain values, built by :mod:`hashmatch.index.verdict` and read by every interface."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

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

    @property
    def matched(self) -> bool:
        return self.status == "match"

    @property
    def error(self) -> str | None:
        """``kind: message`` (``decode: image file is truncated``), as records print it."""
        return None if self.error_kind is None else f"{self.error_kind}: {self.error_message}"
