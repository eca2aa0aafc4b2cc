"""Safe image loading: any supported input to the RGB pixels the hashes need.

``open_image`` reads the input (within :class:`ImageLimits`) and parses only the header, so
exact byte hashes never decode and oversized images are refused before a pixel is allocated.
``OpenedImage.decoded()`` then decodes once: first frame, EXIF orientation applied, any mode
flattened to RGB. The default fast path decodes JPEGs at a reduced DCT scale (Pillow's draft
mode) and box-reduces everything to a working size that keeps the hashes within a few bits of
full-resolution hashing (see ``bench/hashing.py``); ``exact=True`` keeps every pixel.
"""

from __future__ import annotations

import io
import os
import stat
from dataclasses import dataclass, field
from functools import cached_property
from typing import BinaryIO, Union

import numpy as np
from PIL import ExifTags, Image, UnidentifiedImageError

from hashmatch.borders import content_box
from hashmatch.errors import (
    ImageDecodeError,
    ImageReadError,
    ImageTooLargeError,
    OptionError,
    UnsupportedImageError,
)
from hashmatch.formats import (
    SNIFF_BYTES,
    decodable_formats,
    describe_non_image,
    sniff_image_format,
)
from hashmatch.pixels import to_grey, to_rgb
from hashmatch.reduction import AxisBoxes, orient_axes

__all__ = [
    "DEFAULT_LIMITS",
    "PYTHON_DECODER_MAX_PIXELS",
    "WORKING_SIZE",
    "ImageLimits",
    "ImageSource",
    "LoadedImage",
    "OpenedImage",
    "check_byte_size",
    "load_image",
    "open_image",
]

ImageSource = Union[str, "os.PathLike[str]", bytes, bytearray, memoryview, BinaryIO, Image.Image]
"""A path, encoded image bytes, a binary file object, or an already opened PIL image."""

WORKING_SIZE = 256
"""Fast path: the shorter side is reduced to between this and twice this before hashing."""

_ORIENTATION_TRANSPOSE = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}
_REDUCIBLE_MODES = {"RGB", "L", "CMYK", "YCbCr", "RGBX", "LAB", "HSV", "RGBa", "La", "I", "F"}
"""Modes whose box average is a meaningful pixel (not palette indices, not straight alpha)."""
_PREMULTIPLIED = {"RGBA": "RGBa", "LA": "La"}

PYTHON_DECODER_MAX_PIXELS = 2 * 1024 * 1024
"""Pixel limit for encodings Pillow decodes in pure Python (RLE-compressed BMP, plain PPM):
a hostile file makes them spend time per declared pixel, under a second at this size. Real
files of these legacy encodings are far smaller."""

try:  # HEIC/HEIF when the optional plugin is installed; AVIF is built into current Pillow.
    from pillow_heif import register_heif_opener

    register_heif_opener()
except ImportError:  # pragma: no cover - depends on the environment
    pass


@dataclass(frozen=True)
class ImageLimits:
    """Resource limits applied to every input; the defaults suit hostile uploads."""

    max_bytes: int = 256 * 1024 * 1024
    """Largest encoded input read, in bytes."""
    max_pixels: int = 128 * 1024 * 1024
    """Largest declared width x height decoded; checked from the header, before decoding."""
    max_side: int = 65_535
    """Longest width or height (JPEG's own maximum). Hashing costs grow with the longer side,
    not only the pixel count: a 64 KB PNG declaring 4194304x16 took PDQ 25 s and 5 GB."""

    def __post_init__(self) -> None:
        for name in ("max_bytes", "max_pixels", "max_side"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise OptionError(f"ImageLimits.{name} must be a whole number > 0, got {value!r}")


DEFAULT_LIMITS = ImageLimits()


@dataclass(frozen=True)
class LoadedImage:
    """Decoded RGB pixels, upright, with the size of the original image."""

    image: Image.Image
    """Mode RGB, or L when only luminance was asked for; on the fast path smaller than the
    original."""
    width: int
    height: int
    format: str | None
    rows: AxisBoxes | None = None
    """How working rows map to original rows; None when they are the original pixels."""
    cols: AxisBoxes | None = None

    @classmethod
    def mapped(
        cls,
        image: Image.Image,
        image_format: str | None,
        rows: AxisBoxes | None,
        cols: AxisBoxes | None,
    ) -> LoadedImage:
        """Working pixels whose rows and columns map onto an original as long as the axes say
        (as the pixels themselves where an axis is None): a crop or edit of decoded pixels."""
        width = cols.length if cols else image.width
        height = rows.length if rows else image.height
        return cls(image, width, height, image_format, rows, cols)

    @cached_property
    def array(self) -> np.ndarray:
        """The pixels as a read-only uint8 array, ``height x width x 3`` (or ``x 1`` for L)."""
        pixels = np.asarray(self.image)
        return pixels[:, :, None] if pixels.ndim == 2 else pixels


@dataclass
class OpenedImage:
    """An input whose header has been read; pixels are decoded on first use, once."""

    name: str
    data: bytes | None
    """The original encoded bytes (None for a PIL image given directly)."""
    width: int
    height: int
    format: str | None
    exact: bool
    """Decode every pixel instead of the fast reduced path."""
    grey: bool
    """The fast path may decode luminance only (every built-in perceptual hash needs no more);
    exact decoding is always RGB, the pixels Meta's reference hashes."""
    _image: Image.Image = field(repr=False)
    _loaded: LoadedImage | None = field(default=None, repr=False)

    def derived(self, loaded: LoadedImage) -> OpenedImage:
        """This input with other working pixels (a crop or edit of its own), already decoded."""
        return OpenedImage(
            self.name,
            None,
            loaded.width,
            loaded.height,
            self.format,
            self.exact,
            self.grey,
            loaded.image,
            loaded,
        )

    def decoded(self) -> LoadedImage:
        """The upright RGB pixels; raises an ImageError subclass if they do not decode."""
        if self._loaded is None:
            self._loaded = _decode(self)
        return self._loaded


def open_image(
    source: ImageSource,
    *,
    exact: bool = False,
    grey: bool = False,
    limits: ImageLimits = DEFAULT_LIMITS,
) -> OpenedImage:
    """Read ``source`` and parse its header; raises an :class:`~hashmatch.ImageError` subclass.

    ``exact`` makes the later decode keep the full resolution instead of the fast path;
    ``grey`` lets the fast path decode luminance only.
    """
    if not isinstance(limits, ImageLimits):
        raise OptionError(f"limits must be ImageLimits, got {type(limits).__name__}")
    if isinstance(source, Image.Image):
        return _open_pil(source, exact, grey and not exact, limits)
    name, data = _read_source(source, limits)
    try:
        image = Image.open(io.BytesIO(data), formats=decodable_formats())
    except UnidentifiedImageError:
        claimed = sniff_image_format(data[:SNIFF_BYTES])
        if claimed is not None:  # the signature says image: a broken file, not another format
            raise ImageDecodeError(name, f"broken {claimed} header") from None
        raise UnsupportedImageError(name, describe_non_image(data[:512])) from None
    except Image.DecompressionBombError as exc:
        raise ImageTooLargeError(name, f"decompression bomb refused by Pillow: {exc}") from None
    except Exception as exc:  # Pillow raises many types for broken headers.
        raise ImageDecodeError(name, f"broken image header ({_describe(exc)})") from None
    width, height = image.size
    _check_pixels(name, width, height, limits)
    _check_python_decoded(name, image)
    # PNG keeps EXIF after the pixels, so asking for it would decode; the decode reads it.
    if image.format != "PNG" and _orientation(image) in (5, 6, 7, 8):
        width, height = height, width
    return OpenedImage(name, data, width, height, image.format, exact, grey and not exact, image)


def trim_to_content(opened: OpenedImage) -> OpenedImage | None:
    """The opened image cropped to the picture inside uniform borders, or None if it has none.

    The crop keeps the working pixels' mapping to the original, so PDQ of the crop still
    approximates PDQ of the cropped full-resolution picture.
    """
    loaded = opened.decoded()
    box = content_box(loaded.array)
    if box is None:
        return None
    top, bottom, left, right = box
    image = loaded.image.crop((left, top, right, bottom))
    rows, cols = _crop_axis(loaded.rows, top, bottom), _crop_axis(loaded.cols, left, right)
    return opened.derived(LoadedImage.mapped(image, loaded.format, rows, cols))


def _crop_axis(axis: AxisBoxes | None, first: int, end: int) -> AxisBoxes | None:
    """The boxes of working pixels ``first..end`` of an axis (whole boxes, maybe one partial)."""
    if axis is None:
        return None
    bounds = axis.bounds()
    return AxisBoxes(int(bounds[end] - bounds[first]), axis.box, axis.reversed)


def load_image(
    source: ImageSource, *, exact: bool = False, limits: ImageLimits = DEFAULT_LIMITS
) -> LoadedImage:
    """Decode ``source`` to upright RGB pixels ready for hashing."""
    return open_image(source, exact=exact, limits=limits).decoded()


def _open_pil(image: Image.Image, exact: bool, grey: bool, limits: ImageLimits) -> OpenedImage:
    name = "<PIL image>"
    width, height = image.size
    _check_pixels(name, width, height, limits)
    return OpenedImage(name, None, width, height, image.format, exact, grey, image)


def _read_source(source: ImageSource, limits: ImageLimits) -> tuple[str, bytes]:
    if isinstance(source, (bytes, bytearray, memoryview)):
        data = bytes(source)
        check_byte_size("<bytes>", len(data), limits)
        return "<bytes>", data
    if isinstance(source, (str, os.PathLike)):
        path = os.fspath(source)
        return path, _read_path(path, limits)
    if hasattr(source, "read"):
        raw_name = getattr(source, "name", None)
        name = raw_name if isinstance(raw_name, str) else "<file object>"
        try:
            data = source.read(limits.max_bytes + 1)
        except OSError as exc:
            raise ImageReadError(name, _describe(exc)) from None
        if not isinstance(data, bytes):
            raise ImageReadError(name, "file object must be opened in binary mode")
        check_byte_size(name, len(data), limits)
        return name, data
    kind = type(source).__name__
    raise ImageReadError(
        f"<{kind}>",
        f"cannot read an image from a {kind}: give a path, bytes, a binary file or a PIL image",
    )


def _read_path(path: str, limits: ImageLimits) -> bytes:
    try:
        # O_NONBLOCK: opening a FIFO must not hang; the type check below then refuses it.
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except IsADirectoryError:
        raise ImageReadError(path, "is a directory") from None
    except OSError as exc:
        raise ImageReadError(path, _describe(exc)) from None
    except ValueError:  # a NUL byte: no file can be named so
        raise ImageReadError(path.replace("\0", "\\0"), "the path holds a NUL byte") from None
    try:
        info = os.fstat(fd)
        if stat.S_ISDIR(info.st_mode):
            raise ImageReadError(path, "is a directory")
        if not stat.S_ISREG(info.st_mode):
            raise ImageReadError(path, "not a regular file")
        check_byte_size(path, info.st_size, limits)
        with os.fdopen(fd, "rb", closefd=False) as file:
            data = file.read(limits.max_bytes + 1)
    except OSError as exc:
        raise ImageReadError(path, _describe(exc)) from None
    finally:
        os.close(fd)
    check_byte_size(path, len(data), limits)
    return data


def check_byte_size(name: str, size: int, limits: ImageLimits) -> None:
    """ImageTooLargeError when ``size`` bytes are over the limit (checked before reading)."""
    if size > limits.max_bytes:
        raise ImageTooLargeError(
            name, f"{size} bytes exceeds the limit of {limits.max_bytes} bytes"
        )


def _check_pixels(name: str, width: int, height: int, limits: ImageLimits) -> None:
    if width <= 0 or height <= 0:
        raise ImageDecodeError(name, f"declares an empty size {width}x{height}")
    if max(width, height) > limits.max_side:
        raise ImageTooLargeError(
            name, f"{width}x{height} has a side longer than the limit of {limits.max_side}"
        )
    if width * height > limits.max_pixels:
        raise ImageTooLargeError(
            name,
            f"{width}x{height} = {width * height} pixels exceeds the limit of "
            f"{limits.max_pixels} (decompression bomb?)",
        )


def _check_python_decoded(name: str, image: Image.Image) -> None:
    """Refuse big images that Pillow would decode in Python (RLE BMPs, plain-text PPMs).

    Those decoders cost time per declared pixel, not per input byte: Pillow pads each short
    RLE row one byte at a time, so a 4 KB BMP declaring 65535x1000 took 18 s to decode.
    """
    width, height = image.size
    if width * height <= PYTHON_DECODER_MAX_PIXELS:
        return
    if any(tile[0] in Image.DECODERS for tile in getattr(image, "tile", ())):
        raise ImageTooLargeError(
            name,
            f"{width}x{height} = {width * height} pixels exceeds the limit of"
            f" {PYTHON_DECODER_MAX_PIXELS} for {image.format} images Pillow decodes in Python",
        )


def _orientation(image: Image.Image) -> int:
    """EXIF orientation 1-8; garbage EXIF counts as upright rather than failing the image."""
    try:
        value = image.getexif().get(ExifTags.Base.Orientation, 1)
        return int(value) if int(value) in range(1, 9) else 1
    except Exception:
        return 1


def _decode(opened: OpenedImage) -> LoadedImage:
    image, exact = opened._image, opened.exact
    original_width, original_height = image.size
    try:
        if opened.data is not None and not exact and image.format in ("JPEG", "MPO"):
            image.draft("L" if opened.grey else "RGB", (WORKING_SIZE, WORKING_SIZE))
        image.load()
        box = _draft_box(original_width, original_height, image.size)
        orientation = _orientation(image)
        if not exact:
            image, box = _reduce_early(image, box)
        image = to_grey(image) if opened.grey else to_rgb(image)
        if not exact:
            image, box = _reduce(image, box)
        method = _ORIENTATION_TRANSPOSE.get(orientation)
        if method is not None:
            image = image.transpose(method)
    except MemoryError:
        raise ImageTooLargeError(opened.name, "ran out of memory while decoding") from None
    except Image.DecompressionBombError as exc:
        raise ImageTooLargeError(opened.name, str(exc)) from None
    except Exception as exc:
        raise ImageDecodeError(opened.name, _describe(exc)) from None
    if image is opened._image and opened.data is None:
        image = image.copy()  # never hand out (or let a caller mutate) the caller's PIL image
    if box == 1:
        return LoadedImage(image, image.width, image.height, opened.format)
    rows, cols = orient_axes(
        AxisBoxes(original_height, box), AxisBoxes(original_width, box), method
    )
    return LoadedImage(image, cols.length, rows.length, opened.format, rows, cols)


def _draft_box(width: int, height: int, decoded_size: tuple[int, int]) -> int:
    """The JPEG DCT scale factor that turned ``width x height`` into ``decoded_size``."""
    for box in (1, 2, 4, 8):
        if (-(-width // box), -(-height // box)) == decoded_size:
            return box
    raise ValueError(f"unexpected decoded size {decoded_size} for {width}x{height}")


def _reduce_early(image: Image.Image, box: int) -> tuple[Image.Image, int]:
    """Fast path: reduce before the mode conversion, so a big image is never converted whole.

    Converting first cost up to 27 bytes a pixel (3.6 GB for a 260 KB 16-bit PNG at the pixel
    limit). Transparent palettes become RGBA and alpha is premultiplied, so each reduced pixel
    flattens onto the background like the block it averages; 16-bit samples are widened to
    32 bits, which ``reduce`` takes.
    """
    if min(image.size) // WORKING_SIZE < 2:
        return image, box
    if image.mode in ("P", "PA") and image.has_transparency_data:
        image = image.convert("RGBA")  # indices do not average; colours with alpha do
    if image.mode in _PREMULTIPLIED:
        image = image.convert(_PREMULTIPLIED[image.mode])
    elif image.mode.startswith("I;16"):
        image = image.convert("I")
    if image.mode not in _REDUCIBLE_MODES:
        return image, box
    return _reduce(image, box)


def _reduce(image: Image.Image, box: int) -> tuple[Image.Image, int]:
    factor = min(image.size) // WORKING_SIZE
    if factor < 2:
        return image, box
    return image.reduce(factor), box * factor


def _describe(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    if isinstance(exc, OSError) and exc.strerror:
        text = exc.strerror.lower()
    return text
