"""The :class:`Hash` value: an algorithm name and its bits, with hex round-tripping and distance.

Bits are stored as big-endian bytes: the first hex digit holds the first four bits. For PDQ this
is Meta's own hex layout (our hex equals ``pdq-photo-hasher``'s for the same bits); for the
imagehash algorithms it is ``str(imagehash.ImageHash)``.
"""

from __future__ import annotations

import string
from dataclasses import dataclass

import numpy as np

from hashmatch.errors import HashFormatError
from hashmatch.registry import get_algorithm

__all__ = ["Hash"]

_HEX_DIGITS = frozenset(string.hexdigits)


@dataclass(frozen=True, slots=True)
class Hash:
    """An immutable hash value. ``a.distance(b)`` (or ``a - b``) is the Hamming distance."""

    algorithm: str
    value: bytes

    def __post_init__(self) -> None:
        bits = get_algorithm(self.algorithm).bits
        if not isinstance(self.value, bytes):
            raise HashFormatError(
                f"{self.algorithm} hash value must be bytes, got {type(self.value).__name__}"
            )
        if len(self.value) * 8 != bits:
            raise HashFormatError(
                f"{self.algorithm} hash must be {bits} bits, got {len(self.value) * 8}"
            )

    @classmethod
    def from_hex(cls, algorithm: str, text: str) -> Hash:
        """Parse hex (either case, surrounding whitespace ignored); errors say what is wrong,
        never quoting the hash itself (hashes are sensitive and errors get logged)."""
        expected = get_algorithm(algorithm).bits // 4
        if not isinstance(text, str):
            raise HashFormatError(
                f"{algorithm} hash must be a hex string, got {type(text).__name__}"
            )
        digits = text.strip()
        bad = next((c for c in digits if c not in _HEX_DIGITS), None)
        if bad is not None:
            raise HashFormatError(
                f"{algorithm} hash has a non-hex character {bad!r} "
                f"at position {digits.index(bad) + 1}"
            )
        if len(digits) != expected:
            raise HashFormatError(
                f"{algorithm} hash must be {expected} hex digits, got {len(digits)}"
            )
        return cls(algorithm, bytes.fromhex(digits))

    @classmethod
    def from_bits(cls, algorithm: str, bits: np.ndarray) -> Hash:
        """Build from a flat boolean array, first element = most significant bit."""
        return cls(algorithm, np.packbits(np.asarray(bits, dtype=bool).ravel()).tobytes())

    @property
    def hex(self) -> str:
        return self.value.hex()

    @property
    def bits(self) -> np.ndarray:
        """The bits as a boolean array, most significant first."""
        return np.unpackbits(np.frombuffer(self.value, dtype=np.uint8)).astype(bool)

    @property
    def bit_count(self) -> int:
        """How many bits are set (PDQ hashes of real images sit near half)."""
        return int.from_bytes(self.value, "big").bit_count()

    def distance(self, other: Hash) -> int:
        """Hamming distance; comparing different algorithms is a bug, so it raises."""
        if not isinstance(other, Hash):
            return NotImplemented
        if other.algorithm != self.algorithm:
            raise HashFormatError(
                f"cannot compare a {self.algorithm} hash with a {other.algorithm} hash"
            )
        a = int.from_bytes(self.value, "big")
        b = int.from_bytes(other.value, "big")
        return (a ^ b).bit_count()

    __sub__ = distance

    def __str__(self) -> str:
        return f"{self.algorithm}:{self.hex}"

    def __repr__(self) -> str:
        return f"Hash({self.algorithm!r}, {self.hex!r})"
