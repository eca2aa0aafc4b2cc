"""HMA's integer ``bank_content_id`` for a list entry, stable across index rebuilds.

HMA clients store the content id a match names and act on it later (take down, review), so
the same (list, entry) must get the same number in every version of the index, and a number
must never be reused for another entry of the list.
"""

from __future__ import annotations

import hashlib
import re

__all__ = ["DERIVED_BASE", "MAX_CONTENT_ID", "bank_content_id"]

DERIVED_BASE = 2**52
"""Derived ids are ``DERIVED_BASE + n`` with ``n < 2**52``: above every numeric id used as
is, and below ``2**53``, the largest integer a JavaScript client reads exactly."""

MAX_CONTENT_ID = 2 * DERIVED_BASE - 1

_CANONICAL_DECIMAL = re.compile(r"[1-9][0-9]{0,15}")
"""A decimal integer written the one way (no sign, no leading zero, ASCII digits only)."""


def bank_content_id(list_name: str, entry_id: str | None, hash_hex: str) -> int:
    """The ``bank_content_id`` an HMA route reports for an entry of ``list_name``.

    An entry id that is a decimal integer in ``1..2**52-1``, written canonically (``"42"``,
    not ``"042"`` or ``"+42"``), is the content id itself, so ids from HMA exports keep their
    meaning. Any other id (and an entry without one, by its stored hash) is derived:
    ``2**52 + int(first 8 bytes of blake2b(f"{list}\\0{entry_id or hash_hex}")) % 2**52``,
    so a derived id never equals a numeric one and stays below ``2**53``.

    Two derived ids of one list can collide, with a probability of about ``n**2 / 2**53``
    for ``n`` derived ids (about one in 9,000 for a million). A response then carries both
    entries under the same id, nearest first; the ``/v1`` API always names entries by their
    own ids, unambiguously.
    """
    if entry_id is not None and _CANONICAL_DECIMAL.fullmatch(entry_id):
        number = int(entry_id)
        if number < DERIVED_BASE:
            return number
    key = f"{list_name}\0{entry_id or hash_hex}".encode()
    digest = hashlib.blake2b(key).digest()
    return DERIVED_BASE + int.from_bytes(digest[:8], "big") % DERIVED_BASE
