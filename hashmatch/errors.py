"""The exception hierarchy: one root, one subclass per kind of failure.

Callers catch :class:`HashmatchError` to survive anything this library can raise for bad input,
and the subclasses to react to a specific cause. Every message names the input it is about.
"""

from __future__ import annotations

__all__ = [
    "HashFormatError",
    "HashmatchError",
    "ImageDecodeError",
    "ImageError",
    "ImageReadError",
    "ImageTooLargeError",
    "UnknownAlgorithmError",
    "UnsupportedImageError",
]


class HashmatchError(Exception):
    """Root of every error hashmatch raises on purpose."""


class ImageError(HashmatchError):
    """An image could not be turned into pixels; ``source`` names the input."""

    kind = "image"
    """A short, stable label for reports: ``read``, ``decode``, ``too_large``, ``unsupported``."""

    def __init__(self, source: str, reason: str) -> None:
        super().__init__(f"{source}: {reason}")
        self.source = source
        self.reason = reason


class ImageReadError(ImageError):
    """The input could not be read at all (missing file, no permission, a directory...)."""

    kind = "read"


class ImageDecodeError(ImageError):
    """The bytes claim to be an image but do not decode: truncated, corrupt, garbage."""

    kind = "decode"


class ImageTooLargeError(ImageError):
    """The input exceeds a configured limit (bytes or pixels); refused before decoding."""

    kind = "too_large"


class UnsupportedImageError(ImageError):
    """The input is not an image format we can decode (text, PDF, SVG, unknown bytes...)."""

    kind = "unsupported"


class UnknownAlgorithmError(HashmatchError, ValueError):
    """An algorithm name that is not registered."""


class HashFormatError(HashmatchError, ValueError):
    """A hash value that does not parse: wrong length, non-hex characters."""
