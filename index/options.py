"""``MatchOptions``: every matching switch, declared once.

The library (``Matcher.match``, ``match_many``, ``verdict``), the CLI, evaluation, and the
service and cluster layers all take one of these; a new switch is one field here plus what
reads it. Values are checked when the options are made, so a wrong one raises
:class:`~hashmatch.OptionError` (or ``UnknownAlgorithmError``) before any image is touched.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypedDict

from hashmatch.batch import HashJob
from hashmatch.errors import OptionError
from hashmatch.loading import DEFAULT_LIMITS, ImageLimits
from hashmatch.registry import DEFAULT_ALGORITHMS, checked_thresholds, resolve_algorithms

if TYPE_CHECKING:
    from typing_extensions import Unpack

__all__ = ["MatchOptions", "MatchSwitches", "match_options"]


@dataclass(frozen=True, kw_only=True)
class MatchOptions:
    """How to match an image; the defaults are the library's (``hashmatch scan`` turns
    ``recover`` on and sets a 30 s ``time_limit``)."""

    algorithms: Sequence[str] | None = None
    """What to hash and search (names, or one comma-separated string; kept as a tuple of
    canonical names); None: every algorithm the index holds (less md5/sha256 for a PIL
    image, which has no file bytes)."""
    thresholds: Mapping[str, int] = field(default_factory=dict)
    """Per-algorithm distances overriding the index's and its lists' for this call."""
    dihedral: bool = True
    """Also match rotations and flips (PDQ's dihedral variants)."""
    trim_borders: bool = True
    """Also match the picture inside letterbox or padding borders."""
    recover: bool = False
    """Also match with a small crop (to about 7%) or tilt (2-5 degrees) undone."""
    exact: bool = False
    """Hash full-resolution pixels instead of the fast reduced decode."""
    limits: ImageLimits = DEFAULT_LIMITS
    time_limit: float | None = None
    """Seconds one image may take to decode and hash before it becomes a ``timeout``
    error (where a timer can run: worker processes and a program's main thread)."""

    def __post_init__(self) -> None:
        if self.algorithms is not None:
            names = tuple(a.name for a in resolve_algorithms(self.algorithms))
            object.__setattr__(self, "algorithms", names)  # canonical, in a frozen value
        object.__setattr__(self, "thresholds", checked_thresholds(self.thresholds))
        for name in ("dihedral", "trim_borders", "recover", "exact"):
            if not isinstance(getattr(self, name), bool):
                raise OptionError(f"{name} must be True or False, got {getattr(self, name)!r}")
        # the limits and the time limit are checked where the job is made, in one place
        self.hash_job(self.algorithms or DEFAULT_ALGORITHMS)

    def hash_job(self, algorithms: Iterable[str]) -> HashJob:
        """What a worker computes for one image under these options."""
        return HashJob(
            algorithms=tuple(algorithms),
            exact=self.exact,
            dihedral=self.dihedral,
            limits=self.limits,
            trim_borders=self.trim_borders,
            recover=self.recover,
            time_limit=self.time_limit,
        )

    def with_switches(self, **switches: Unpack[MatchSwitches]) -> MatchOptions:
        """These options with some switches changed (checked like new ones)."""
        return match_options(self, switches)


class MatchSwitches(TypedDict, total=False):
    """The fields of :class:`MatchOptions` as keyword arguments (the library's shim)."""

    algorithms: Sequence[str] | None
    thresholds: Mapping[str, int] | None
    dihedral: bool
    trim_borders: bool
    recover: bool
    exact: bool
    limits: ImageLimits
    time_limit: float | None


_SWITCHES = frozenset(MatchSwitches.__annotations__)


def match_options(options: MatchOptions | None, switches: Mapping[str, Any]) -> MatchOptions:
    """``options`` (or the defaults) with the keyword ``switches`` a call was given; an
    unknown switch raises OptionError naming it (a typo must not be silently ignored)."""
    base = options if options is not None else _DEFAULTS
    if not isinstance(base, MatchOptions):
        raise OptionError(f"options must be MatchOptions, got {type(base).__name__}")
    if not switches:
        return base
    unknown = set(switches) - _SWITCHES
    if unknown:
        raise OptionError(
            f"unknown matching option {sorted(unknown)[0]!r}"
            f" (known: {', '.join(sorted(_SWITCHES))})"
        )
    values = dict(switches)
    if values.get("thresholds", {}) is None:
        values["thresholds"] = {}
    return dataclasses.replace(base, **values)


_DEFAULTS = MatchOptions()
