"""How the fast path's working pixels map back to the original image's pixels.

The fast decode shrinks an image by an integer box factor (JPEG DCT scaling, then Pillow's
``reduce``): each working pixel is the mean of a ``box x box`` block of original pixels, the
last block along an axis possibly partial. Hashes that filter at a size tied to the original
resolution (PDQ) use this to apply their full-resolution filter to the working pixels, which
keeps fast hashes within a bit or two of full-resolution ones.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
from PIL import Image

__all__ = ["AxisBoxes", "orient_axes"]


@dataclass(frozen=True)
class AxisBoxes:
    """One axis of a box-reduced image: original length, box size, and direction."""

    length: int
    """Pixels along this axis in the original image."""
    box: int = 1
    """Original pixels per working pixel; 1 means the working pixels are the original ones."""
    reversed: bool = False
    """True when an orientation fix flipped this axis, so the partial box comes first."""

    @property
    def working_length(self) -> int:
        return -(-self.length // self.box)

    def bounds(self) -> np.ndarray:
        """Original-pixel boundaries of the working pixels (``working_length + 1`` values)."""
        edges = np.minimum(np.arange(self.working_length + 1) * self.box, self.length)
        return self.length - edges[::-1] if self.reversed else edges

    def flipped(self) -> AxisBoxes:
        return replace(self, reversed=not self.reversed)


def orient_axes(
    rows: AxisBoxes, cols: AxisBoxes, method: Image.Transpose | None
) -> tuple[AxisBoxes, AxisBoxes]:
    """The (rows, cols) boxes after ``image.transpose(method)``."""
    transpose = Image.Transpose
    if method is None:
        return rows, cols
    if method == transpose.FLIP_LEFT_RIGHT:
        return rows, cols.flipped()
    if method == transpose.FLIP_TOP_BOTTOM:
        return rows.flipped(), cols
    if method == transpose.ROTATE_180:
        return rows.flipped(), cols.flipped()
    if method == transpose.TRANSPOSE:
        return cols, rows
    if method == transpose.TRANSVERSE:
        return cols.flipped(), rows.flipped()
    if method == transpose.ROTATE_90:  # counter-clockwise
        return cols.flipped(), rows
    if method == transpose.ROTATE_270:  # clockwise
        return cols, rows.flipped()
    raise ValueError(f"unsupported transpose {method!r}")
