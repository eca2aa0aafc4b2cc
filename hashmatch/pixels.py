"""Turning an image of any Pillow mode into 8-bit RGB, the same way every time.

Transparent pixels are composited onto :data:`TRANSPARENT_BACKGROUND`, so a PNG with alpha
hashes like its copy flattened onto white (what most tools that strip alpha produce).
High-bit-depth and float images are scaled from the range their data evidently uses.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

__all__ = ["TRANSPARENT_BACKGROUND", "to_grey", "to_rgb"]

TRANSPARENT_BACKGROUND: tuple[int, int, int] = (255, 255, 255)

_DIRECT_TO_RGB = {"RGB", "1", "L", "CMYK", "YCbCr", "LAB", "HSV", "RGBX", "P"}
_ALPHA_MODES = {"RGBA", "RGBa", "LA", "La", "PA"}
_NUMERIC_MODES = {"I", "F"}


def to_rgb(image: Image.Image) -> Image.Image:
    """Return ``image`` as mode ``RGB`` (a new image unless it already is plain RGB)."""
    mode = image.mode
    if mode in _ALPHA_MODES or (mode in _DIRECT_TO_RGB and _has_transparency(image)):
        return _flatten_alpha(image)
    if mode == "RGB":
        return image
    if mode in _DIRECT_TO_RGB:
        return image.convert("RGB")
    if mode in _NUMERIC_MODES or mode.startswith("I;16"):
        return Image.fromarray(_scale_to_uint8(np.asarray(image)), "L").convert("RGB")
    return image.convert("RGB")


def to_grey(image: Image.Image) -> Image.Image:
    """Return ``image`` as mode ``L``: Rec. 601 luminance, after the same alpha flattening.

    Every built-in perceptual hash looks only at luminance, so the fast path decodes this.
    """
    mode = image.mode
    if mode == "L" and not _has_transparency(image):
        return image
    if mode in _NUMERIC_MODES or mode.startswith("I;16"):
        return Image.fromarray(_scale_to_uint8(np.asarray(image)), "L")
    if mode in ("RGB", "1", "YCbCr", "P", "CMYK") and not _has_transparency(image):
        return image.convert("L")
    return to_rgb(image).convert("L")


def _has_transparency(image: Image.Image) -> bool:
    if "transparency" in image.info:
        return True
    return image.mode == "P" and image.palette is not None and image.palette.mode == "RGBA"


def _flatten_alpha(image: Image.Image) -> Image.Image:
    if image.mode == "La":
        rgba = image.convert("LA").convert("RGBA")
    elif image.mode == "RGBa":
        rgba = image.convert("RGBA")
    else:
        rgba = image.convert("RGBA")
    background = Image.new("RGBA", rgba.size, (*TRANSPARENT_BACKGROUND, 255))
    return Image.alpha_composite(background, rgba).convert("RGB")


def _scale_to_uint8(values: np.ndarray) -> np.ndarray:
    """Map integer or float samples to 0-255 by the range the data uses.

    0-255 stays as is, 0-65535 (16-bit scans and PNGs) divides by 257, floats in 0-1 scale by
    255; anything else is stretched from its minimum to its maximum. NaN/inf become 0.
    """
    data = np.nan_to_num(values.astype(np.float64), nan=0.0, posinf=0.0, neginf=0.0)
    if data.size == 0:
        return np.zeros(values.shape, dtype=np.uint8)
    low, high = float(data.min()), float(data.max())
    if values.dtype.kind == "f" and low >= 0.0 and high <= 1.0:
        data = data * 255.0
    elif low >= 0.0 and high <= 255.0:
        pass
    elif low >= 0.0 and high <= 65535.0:
        data = data / 257.0
    else:
        data = (data - low) * (255.0 / (high - low))
    return np.clip(np.rint(data), 0, 255).astype(np.uint8)
