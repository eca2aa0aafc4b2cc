"""Which file formats we decode, and recognising them by their first bytes.

Decoding is restricted to an allow-list of raster formats: Pillow can also open formats whose
decoders shell out (EPS runs Ghostscript) or are rarely worth the attack surface, and a tool fed
hostile files should not try them. Directory walks recognise images by content, not by name.
"""

from __future__ import annotations

from PIL import Image

from hashmatch.once import once

__all__ = [
    "DECODABLE_FORMATS",
    "IMAGE_EXTENSIONS",
    "SNIFF_BYTES",
    "decodable_formats",
    "describe_non_image",
    "sniff_image_format",
]

DECODABLE_FORMATS: tuple[str, ...] = (
    "JPEG",
    "PNG",
    "GIF",
    "WEBP",
    "BMP",
    "DIB",
    "TIFF",
    "AVIF",
    "HEIF",
    "ICO",
    "PPM",
    "JPEG2000",
)
"""Pillow format names we decode (JPEG includes camera MPO files); HEIF needs pillow-heif."""


@once
def _pillow_plugins_imported() -> None:
    """Pillow imports its format plugins on first need; threads opening their first images
    together would each run that import loop, and could look a format up half-way."""
    Image.init()


def decodable_formats() -> list[str]:
    """The allowed formats this Pillow can open now (plugins may register later)."""
    _pillow_plugins_imported()
    return [name for name in DECODABLE_FORMATS if name in Image.OPEN]


SNIFF_BYTES = 32
"""How many leading bytes :func:`sniff_image_format` needs."""

IMAGE_EXTENSIONS = frozenset(
    {".jpg", ".jpeg", ".jpe", ".jfif", ".png", ".apng", ".gif", ".webp", ".bmp", ".dib"}
    | {".tif", ".tiff", ".avif", ".heic", ".heif", ".ico", ".jp2", ".j2k", ".mpo"}
    | {".ppm", ".pgm", ".pbm", ".pnm"}
)
"""Names that promise an image: such a file that is not one is reported, not skipped."""

_HEIF_BRANDS = {b"heic", b"heix", b"heim", b"heis", b"hevc", b"hevx", b"mif1", b"msf1"}
_AVIF_BRANDS = {b"avif", b"avis"}


def sniff_image_format(head: bytes) -> str | None:
    """The image format ``head`` (a file's first bytes) starts with, or None if not an image."""
    if head.startswith(b"\xff\xd8\xff"):
        return "JPEG"
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "PNG"
    if head[:6] in (b"GIF87a", b"GIF89a"):
        return "GIF"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "WEBP"
    if head[:2] == b"BM" and len(head) >= 14:
        return "BMP"
    if head[:4] in (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+"):
        return "TIFF"
    if head[4:8] == b"ftyp":
        brand = head[8:12]
        if brand in _AVIF_BRANDS:
            return "AVIF"
        if brand in _HEIF_BRANDS:
            return "HEIF"
        return None
    if head[:4] == b"\x00\x00\x01\x00" and len(head) >= 6 and head[4:6] != b"\x00\x00":
        return "ICO"
    if len(head) >= 3 and head[0:1] == b"P" and head[1:2] in b"123456" and head[2:3].isspace():
        return "PPM"
    if head.startswith(b"\x00\x00\x00\x0cjP  \r\n\x87\n") or head.startswith(b"\xff\x4f\xff\x51"):
        return "JPEG2000"
    return None


_NON_IMAGE_SIGNATURES: tuple[tuple[bytes, str], ...] = (
    (b"%PDF", "a PDF document"),
    (b"PK\x03\x04", "a zip archive"),
    (b"\x1f\x8b", "a gzip file"),
    (b"%!PS", "a PostScript file"),
    (b"\x7fELF", "an executable"),
)


def describe_non_image(head: bytes) -> str:
    """A short phrase for what a non-image input looks like, for error messages."""
    for signature, what in _NON_IMAGE_SIGNATURES:
        if head.startswith(signature):
            return what
    stripped = head.lstrip()
    if stripped.startswith(b"<svg") or (stripped.startswith(b"<?xml") and b"<svg" in head):
        return "an SVG drawing (vector images are not decoded)"
    if stripped.startswith(b"<"):
        return "an XML or HTML document"
    if not head:
        return "empty (0 bytes)"
    if all(32 <= b < 127 or b in b"\t\r\n" for b in head):
        return "text"
    return "not a recognised image format"
