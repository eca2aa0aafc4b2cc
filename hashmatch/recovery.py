"""Query-side edits that undo a small crop or tilt, so the original's hash comes within reach.

A 5% crop moves PDQ by about 45 bits and a 5-degree tilt by about 80, far past the threshold
of 31. The list only holds the original's hash, so the repair has to happen on the query:
padding it back out by repeating its edge pixels restores the original's framing well enough
(a 5% crop padded back by 5%: median distance 16), and turning a tilted image back does the
same for rotations. Neither the crop nor the angle is known, so a few of each are tried; the
measurements behind the choice are in README ("Detection quality").

Each edit works on the decoded working pixels (no second decode) and keeps their mapping to
the original's pixels, so PDQ's filter sizes stay those of the full-resolution picture.
(Editing PDQ's 64x64 buffer instead is a hundred times cheaper but lost a third of the
recall on tilts.)
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from functools import partial

import numpy as np
from PIL import Image

from hashmatch.loading import LoadedImage, OpenedImage
from hashmatch.reduction import AxisBoxes

__all__ = ["RECOVERY_EDITS", "recovered_images"]

_UNCROPS = (0.025, 0.05)
"""Share of the padded picture the edge padding takes: undoes crops of about 1-7%."""
_TILTS = (-5.0, -3.5, -2.0, 2.0, 3.5, 5.0)
"""Degrees counter-clockwise (as PIL's ``rotate``) the query is turned back by."""

_EDIT_SIDE = 128
"""Edits work on the working pixels box-reduced to about this shorter side: 4-10 times
faster than at full working size, and recall within noise (README, "Detection quality")."""


_TILT_RESAMPLING = Image.Resampling.NEAREST
"""PDQ blurs before it samples, so nearest-pixel turning loses nothing measurable against
bilinear or bicubic here (42 photos: within one image either way) at a tenth of the cost."""


def _uncrop(loaded: LoadedImage, fraction: float) -> LoadedImage:
    pixels = loaded.array
    height, width = pixels.shape[:2]
    pad_rows = max(1, round(height * fraction / (1 - fraction) / 2))
    pad_cols = max(1, round(width * fraction / (1 - fraction) / 2))
    padded = np.pad(pixels, ((pad_rows, pad_rows), (pad_cols, pad_cols), (0, 0)), mode="edge")
    image = Image.fromarray(padded[:, :, 0] if padded.shape[2] == 1 else padded)
    rows, cols = _widen(loaded.rows, pad_rows), _widen(loaded.cols, pad_cols)
    return LoadedImage.mapped(image, loaded.format, rows, cols)


def _widen(axis: AxisBoxes | None, pad: int) -> AxisBoxes | None:
    """The axis with ``pad`` whole working pixels added at both ends."""
    return None if axis is None else replace(axis, length=axis.length + 2 * pad * axis.box)


def _tilt(loaded: LoadedImage, degrees: float) -> LoadedImage:
    turned = loaded.image.rotate(degrees, _TILT_RESAMPLING, expand=False, fillcolor=0)
    return replace(loaded, image=turned)


def _edits() -> dict[str, Callable[[LoadedImage], LoadedImage]]:
    edits: dict[str, Callable[[LoadedImage], LoadedImage]] = {}
    for fraction in _UNCROPS:
        edits[f"uncrop_{fraction * 100:g}pct"] = partial(_uncrop, fraction=fraction)
    for degrees in _TILTS:
        edits[f"tilt_{degrees:+g}deg"] = partial(_tilt, degrees=degrees)
    return edits


RECOVERY_EDITS: dict[str, Callable[[LoadedImage], LoadedImage]] = _edits()
"""Every edit by the name matches report as their ``variant``."""


def _reduced(loaded: LoadedImage) -> LoadedImage:
    """The working pixels box-reduced to about :data:`_EDIT_SIDE` on the shorter side."""
    factor = min(loaded.image.size) // _EDIT_SIDE
    if factor < 2:
        return loaded
    image = loaded.image.reduce(factor)
    rows = loaded.rows or AxisBoxes(loaded.image.height)
    cols = loaded.cols or AxisBoxes(loaded.image.width)
    return LoadedImage(
        image,
        loaded.width,
        loaded.height,
        loaded.format,
        replace(rows, box=rows.box * factor),
        replace(cols, box=cols.box * factor),
    )


def recovered_images(opened: OpenedImage) -> dict[str, OpenedImage]:
    """The opened image under every recovery edit, by edit name."""
    loaded = _reduced(opened.decoded())
    return {name: opened.derived(edit(loaded)) for name, edit in RECOVERY_EDITS.items()}
