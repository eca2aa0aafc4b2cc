"""What a matcher asks of live additions to its published version (the banks' overlay).

The matcher searches its published :class:`~hashmatch.index.loaded.LoadedIndex` and, when it
follows banks, one :class:`OverlayView` taken with it: the contents added since that version
was built (searched exactly, within the same thresholds), and what must no longer match
(disabled or deleted contents, exclusions). The implementation is
:mod:`hashmatch.banks.overlay`; the index only knows these protocols, so it never imports
the banks.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Protocol

import numpy as np

if TYPE_CHECKING:
    from hashmatch.index.loaded import LoadedIndex
    from hashmatch.index.results import Match
    from hashmatch.index.verdict import Query

__all__ = ["LiveAdditions", "OverlayView"]


class OverlayView(Protocol):
    """One consistent moment of the overlay, for one published version."""

    def search(
        self,
        snapshot: LoadedIndex,
        queries: Mapping[str, list[Query]],
        thresholds: Mapping[str, int],
    ) -> list[Match]:
        """Matches among the added contents (each within its bank's threshold)."""
        ...

    def hides(self, match: Match) -> bool:
        """Whether a match must be dropped: its content disabled or deleted since the build,
        or excluded as a confirmed false positive (by its entry or its stored hash)."""
        ...

    def codes_of_entry(self, list_name: str, entry_id: str, algorithm: str) -> np.ndarray | None:
        """An added content's codes of ``algorithm`` (rows of bytes), None if it is not one
        (its confirming hash, for the verdict)."""
        ...


class LiveAdditions(Protocol):
    """What follows the banks: the overlay view that goes with a published version."""

    def view_for(self, snapshot: LoadedIndex) -> OverlayView: ...
