"""Finding letterbox and padding borders, so the picture inside can be hashed on its own.

Padding defeats perceptual hashes: a 5% black border already moves PDQ by 50-60 bits. A
border is a run of near-uniform rows or columns at an edge, all close to one colour; the
content box is what is left. Matching hashes both the whole image and the content box and
accepts either, so an image without borders loses nothing.
"""

from __future__ import annotations

import numpy as np

__all__ = ["MIN_BORDER_FRACTION", "content_box"]

MIN_BORDER_FRACTION = 0.02
"""Borders thinner than this fraction of the side are ignored (JPEG edge noise)."""
_MIN_CONTENT_FRACTION = 0.3
_SPREAD = 10.0
"""A border line's pixels may differ from its colour by this much (compression noise)."""
_COLOUR_TOLERANCE = 12.0


def _luminance(lines: np.ndarray) -> np.ndarray:
    """Rows of float luminance, from rows of grey or RGB pixels."""
    values = lines.astype(np.float32)
    if values.ndim == 3 and values.shape[2] == 3:
        return values @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
    return values.reshape(values.shape[0], values.shape[1])


def _border_depth(lines: np.ndarray) -> int:
    """How many leading lines (rows of ``lines``) are uniform and of the outermost's colour.

    Only the first lines are examined, a growing prefix at a time, and only they are converted
    to luminance: a border is thin, and most images have none, so this usually looks at one
    line rather than the whole picture.
    """
    reference: float | None = None
    depth, step = 0, 4
    limit = int(len(lines) * (1 - _MIN_CONTENT_FRACTION))
    while depth < limit:
        block = _luminance(lines[depth : min(depth + step, limit)])
        means = block.mean(axis=1)
        spread = np.abs(block - means[:, None]).mean(axis=1) * 3  # ~ a 95th percentile
        if reference is None:
            if spread[0] > _SPREAD:
                return 0  # the outermost line is not uniform: no border (the usual case)
            reference = float(np.median(block[0]))
        flat = (spread <= _SPREAD) & (np.abs(means - reference) <= _COLOUR_TOLERANCE)
        if not flat.all():
            return depth + int(np.argmin(flat))
        depth += len(block)
        step *= 2
    return depth


def content_box(pixels: np.ndarray) -> tuple[int, int, int, int] | None:
    """``(top, bottom, left, right)`` of the content inside uniform borders, or None.

    None when there is no border of at least :data:`MIN_BORDER_FRACTION` of a side, or when
    what remains would be too small to be the picture rather than a flat image.
    """
    height, width = pixels.shape[:2]
    if height < 16 or width < 16:
        return None
    columns = pixels.swapaxes(0, 1)
    top = _border_depth(pixels)
    bottom = _border_depth(pixels[::-1])
    left = _border_depth(columns)
    right = _border_depth(columns[::-1])
    sides = (top / height, bottom / height, left / width, right / width)
    if max(sides) < MIN_BORDER_FRACTION:
        return None
    box = (top, height - bottom, left, width - right)
    if (box[1] - box[0]) < _MIN_CONTENT_FRACTION * height:
        return None
    if (box[3] - box[2]) < _MIN_CONTENT_FRACTION * width:
        return None
    return box
