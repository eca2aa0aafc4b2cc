"""Loading: every source type, format and mode; EXIF orientation; alpha; limits and errors."""

from __future__ import annotations

import io
import os
import random
import struct
import sys
import threading
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageOps, features

from hashmatch import (
    HashmatchError,
    ImageDecodeError,
    ImageLimits,
    ImageReadError,
    ImageTooLargeError,
    UnsupportedImageError,
    hash_image,
    load_image,
)
from hashmatch.fixtures.hostile import encode, png_declaring, truncated
from hashmatch.fixtures.images import save_image, synthetic_photo
from hashmatch.fixtures.peak_rss import run_measuring_peak_rss
from hashmatch.pixels import TRANSPARENT_BACKGROUND


def pdq(source, **options) -> object:
    return hash_image(source, **options)["pdq"]


# --- sources ---------------------------------------------------------------------------------


def test_path_bytes_file_object_and_pil_image_hash_the_same(tmp_path: Path, photo) -> None:
    path = save_image(photo, tmp_path / "photo.png")
    data = path.read_bytes()
    expected = pdq(photo)
    assert pdq(path) == expected
    assert pdq(str(path)) == expected
    assert pdq(data) == expected
    assert pdq(bytearray(data)) == expected
    assert pdq(io.BytesIO(data)) == expected
    with open(path, "rb") as file:
        assert pdq(file) == expected


def test_caller_s_pil_image_is_not_modified(photo) -> None:
    before = np.asarray(photo).copy()
    load_image(photo).image.paste((0, 0, 0), (0, 0, 50, 50))
    assert np.array_equal(np.asarray(photo), before)


# --- formats ---------------------------------------------------------------------------------

LOSSLESS = ["PNG", "BMP", "TIFF", "WEBP_LOSSLESS", "PPM"]


@pytest.mark.parametrize("image_format", LOSSLESS)
def test_lossless_formats_hash_exactly_like_the_pixels(image_format: str, photo) -> None:
    options = {"lossless": True} if image_format == "WEBP_LOSSLESS" else {}
    data = encode(photo, image_format.split("_")[0], **options)
    assert pdq(data) == pdq(photo)


@pytest.mark.parametrize(
    ("image_format", "limit"),
    [
        ("JPEG", 16),
        ("WEBP", 16),
        ("GIF", 31),  # 256-colour palette with dithering: a strong edit, still a match
        pytest.param(
            "AVIF",
            16,
            marks=pytest.mark.skipif(not features.check("avif"), reason="no AVIF codec"),
        ),
    ],
)
def test_lossy_formats_hash_close_to_the_pixels(image_format: str, limit: int, photo) -> None:
    assert pdq(encode(photo, image_format)).distance(pdq(photo)) <= limit


def test_animated_gif_hashes_its_first_frame(tmp_path: Path) -> None:
    frames = [synthetic_photo(seed, (200, 150)).convert("P") for seed in (1, 2, 3)]
    path = tmp_path / "animated.gif"
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=100, loop=0)
    assert pdq(path) == pdq(frames[0].convert("RGB"))
    assert pdq(path).distance(pdq(frames[1].convert("RGB"))) > 64


def test_heif_needs_its_plugin() -> None:
    pytest.importorskip("pillow_heif", reason="pillow-heif (the 'heif' extra) is not installed")
    image = synthetic_photo(3, (320, 240))
    assert pdq(encode(image, "HEIF")).distance(pdq(image)) <= 16


# --- modes and alpha ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "mode",
    [
        "1",
        "L",
        "LA",
        "La",
        "P",
        "PA",
        "RGBA",
        "RGBa",
        "RGBX",
        "CMYK",
        "YCbCr",
        "LAB",
        "HSV",
        "I;16",
        "I",
        "F",
    ],
)
def test_every_mode_hashes(mode: str, photo) -> None:
    image = _in_mode(photo, mode)
    assert image.mode == mode
    result = hash_image(image, ("pdq", "phash"))
    assert result.pdq_quality is not None and result.pdq_quality > 50
    assert (result.width, result.height) == photo.size


@pytest.mark.parametrize("mode", ["L", "I;16", "I", "F"])
def test_greyscale_depths_hash_like_8_bit_grey(mode: str, photo) -> None:
    grey = photo.convert("L")
    assert pdq(_in_mode(photo, mode)).distance(pdq(grey)) <= 2


def _in_mode(photo: Image.Image, mode: str) -> Image.Image:
    grey = np.asarray(photo.convert("L"))
    if mode == "I;16":
        return Image.frombytes("I;16", photo.size, (grey.astype("<u2") * 257).tobytes())
    if mode == "I":
        return Image.fromarray(grey.astype(np.int32) * 257, "I")
    if mode == "F":
        return Image.fromarray(grey.astype(np.float32) / 255.0, "F")
    if mode in ("LA", "La", "RGBA", "RGBa", "PA"):
        rgba = photo.convert("RGBA")
        rgba.putalpha(Image.linear_gradient("L").resize(photo.size))
        base = {"LA": "LA", "La": "LA", "RGBA": "RGBA", "RGBa": "RGBA", "PA": "RGBA"}[mode]
        converted = rgba.convert(base)
        if mode == "PA":
            return converted.convert("PA")
        return converted.convert(mode) if mode != base else converted
    return photo.convert(mode)


def test_transparent_png_hashes_like_its_copy_flattened_onto_the_background(photo) -> None:
    rgba = photo.convert("RGBA")
    alpha = Image.new("L", photo.size, 0)
    alpha.paste(255, (100, 80, 540, 400))  # opaque centre, transparent frame
    rgba.putalpha(alpha)
    flattened = Image.new("RGB", photo.size, TRANSPARENT_BACKGROUND)
    flattened.paste(rgba, mask=rgba.getchannel("A"))
    assert pdq(encode(rgba, "PNG")) == pdq(encode(flattened, "PNG"))


def test_palette_transparency_composites_onto_the_background(photo) -> None:
    palette = photo.convert("P", palette=Image.Palette.ADAPTIVE, colors=64)
    palette.info["transparency"] = palette.getpixel((0, 0))
    result = load_image(encode(palette, "PNG", transparency=palette.getpixel((0, 0))))
    assert result.image.getpixel((0, 0)) == TRANSPARENT_BACKGROUND


# --- EXIF orientation ------------------------------------------------------------------------

# stored pixels = inverse of the transpose a viewer applies for that orientation
STORED_FOR_ORIENTATION = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_90,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_270,
}


def _camera_jpeg(upright: Image.Image, orientation: int) -> bytes:
    stored = upright.transpose(STORED_FOR_ORIENTATION[orientation])
    exif = Image.Exif()
    exif[0x0112] = orientation
    return encode(stored, "JPEG", quality=95, exif=exif.tobytes())


@pytest.mark.parametrize("orientation", sorted(STORED_FOR_ORIENTATION))
@pytest.mark.parametrize("exact", [False, True], ids=["fast", "exact"])
def test_exif_rotated_jpeg_hashes_like_the_upright_image(orientation: int, exact: bool) -> None:
    upright = synthetic_photo(7, (1600, 1200))  # large enough for the fast path to reduce
    camera = _camera_jpeg(upright, orientation)
    assert ImageOps.exif_transpose(Image.open(io.BytesIO(camera))).size == upright.size
    result = hash_image(camera, exact=exact)
    plain = hash_image(encode(upright, "JPEG", quality=95), exact=exact)
    assert (result.width, result.height) == (1600, 1200)
    assert result["pdq"].distance(plain["pdq"]) <= 8


def test_garbage_exif_is_ignored_not_fatal(photo) -> None:
    data = encode(photo, "JPEG", exif=b"Exif\x00\x00" + os.urandom(64))
    assert pdq(data).distance(pdq(photo)) <= 16


# --- fast path -------------------------------------------------------------------------------


@pytest.mark.parametrize("size", [(4000, 3000), (1155, 866), (3000, 4000), (2500, 700)])
def test_fast_path_stays_within_a_few_bits_of_full_resolution(size: tuple[int, int]) -> None:
    data = encode(synthetic_photo(5, size), "JPEG", quality=90)
    fast, exact = hash_image(data), hash_image(data, exact=True)
    assert fast["pdq"].distance(exact["pdq"]) <= 6
    assert load_image(data).image.width < size[0]  # it really took the reduced path
    assert load_image(data, exact=True).image.size == size


def test_fast_path_reduces_png_too() -> None:
    data = encode(synthetic_photo(6, (1800, 1200)), "PNG")
    assert load_image(data).image.size[1] < 600
    assert pdq(data).distance(pdq(data, exact=True)) <= 6


# --- errors ----------------------------------------------------------------------------------


@pytest.mark.parametrize("image_format", ["JPEG", "PNG", "GIF", "WEBP", "TIFF"])
@pytest.mark.parametrize("keep", [0.3, 0.7, 0.97])
def test_truncated_file_is_a_decode_error_not_a_grey_image(image_format, keep, photo) -> None:
    data = truncated(encode(photo, image_format), keep)
    with pytest.raises((ImageDecodeError, UnsupportedImageError)) as caught:
        hash_image(data)
    assert "<bytes>" in str(caught.value)


def test_truncated_jpeg_names_the_file_and_the_cause(tmp_path: Path, photo) -> None:
    path = tmp_path / "cut.jpg"
    path.write_bytes(truncated(encode(photo, "JPEG"), 0.5))
    with pytest.raises(ImageDecodeError, match=r"cut\.jpg: .*truncated"):
        hash_image(path)


def test_zero_byte_file_is_unsupported(tmp_path: Path) -> None:
    (tmp_path / "empty.jpg").write_bytes(b"")
    with pytest.raises(UnsupportedImageError, match=r"empty\.jpg: empty \(0 bytes\)"):
        hash_image(tmp_path / "empty.jpg")


@pytest.mark.parametrize(
    ("content", "described"),
    [
        (b"just some text\n", "text"),
        (b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n", "a PDF document"),
        (b"PK\x03\x04" + bytes(40), "a zip archive"),
        (b'<?xml version="1.0"?>\n<svg xmlns="http://www.w3.org/2000/svg"/>', "an SVG drawing"),
        # fixed bytes: random ones start with an image signature ("BM"...) one run in ~10,000
        (random.Random(7).randbytes(2000), "not a recognised image format"),
    ],
)
def test_non_images_are_unsupported_and_say_what_they_look_like(content, described) -> None:
    with pytest.raises(UnsupportedImageError, match=described):
        hash_image(content)


@pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")
def test_decompression_bomb_is_refused_before_decoding() -> None:
    bomb = png_declaring(100_000, 100_000)
    assert len(bomb) < 1000
    with pytest.raises(ImageTooLargeError, match="decompression bomb"):
        hash_image(bomb)
    with pytest.raises(ImageTooLargeError, match="11000x11000 = 121000000 pixels"):
        hash_image(png_declaring(11_000, 11_000), limits=ImageLimits(max_pixels=100_000_000))


def test_pixel_limit_is_configurable() -> None:
    data = png_declaring(3000, 3000)
    with pytest.raises(ImageTooLargeError, match="exceeds the limit of 1000000"):
        hash_image(data, limits=ImageLimits(max_pixels=1_000_000))


def test_byte_limit_is_checked_before_reading(tmp_path: Path, photo) -> None:
    path = save_image(photo, tmp_path / "photo.png")
    with pytest.raises(ImageTooLargeError, match="exceeds the limit of 100 bytes"):
        hash_image(path, limits=ImageLimits(max_bytes=100))


def test_missing_file_and_directory_are_read_errors(tmp_path: Path) -> None:
    with pytest.raises(ImageReadError, match="no such file"):
        hash_image(tmp_path / "missing.jpg")
    with pytest.raises(ImageReadError, match="is a directory"):
        hash_image(tmp_path)


def test_fifo_is_refused_without_hanging(tmp_path: Path) -> None:
    fifo = tmp_path / "pipe.jpg"
    os.mkfifo(fifo)
    outcome: list[BaseException] = []
    worker = threading.Thread(target=lambda: _capture(outcome, fifo), daemon=True)
    worker.start()
    worker.join(timeout=10)
    assert not worker.is_alive(), "opening a FIFO hung"
    assert isinstance(outcome[0], ImageReadError) and "not a regular file" in str(outcome[0])


def _capture(outcome: list[BaseException], path: Path) -> None:
    try:
        hash_image(path)
    except BaseException as exc:
        outcome.append(exc)


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads files regardless of permissions")
def test_unreadable_file_is_a_read_error(tmp_path: Path, photo) -> None:
    path = save_image(photo, tmp_path / "secret.png")
    path.chmod(0)
    with pytest.raises(ImageReadError, match="permission denied"):
        hash_image(path)


def test_every_loader_failure_is_a_hashmatch_error(photo) -> None:
    broken = [
        b"",
        b"\xff\xd8\xff",
        truncated(encode(photo, "PNG"), 0.5),
        png_declaring(10**5, 10**5),
    ]
    for data in broken:
        with pytest.raises(HashmatchError):
            hash_image(data, ("pdq", "phash", "md5"))


def test_too_small_image_hashes_with_zero_quality() -> None:
    result = hash_image(Image.new("RGB", (3, 3), "red"), ("pdq", "phash"))
    assert result.pdq_quality == 0


# --- luminance-only fast path ----------------------------------------------------------------


def test_fast_path_decodes_luminance_only_when_the_hashes_need_no_colour(photo) -> None:
    from hashmatch.loading import open_image

    data = encode(synthetic_photo(8, (1600, 1200)), "JPEG")
    assert open_image(data, grey=True).decoded().image.mode == "L"
    assert open_image(data, grey=True, exact=True).decoded().image.mode == "RGB"
    assert load_image(data).image.mode == "RGB"  # the public loader always gives RGB
    grey = hash_image(data, ("pdq", "phash"))
    colour = hash_image(data, ("pdq", "phash"), exact=True)
    assert grey["pdq"].distance(colour["pdq"]) <= 6
    assert grey["phash"].distance(colour["phash"]) <= 4


# --- costs a small hostile file could run up (found by bench/fuzz.py) -------------------------


def test_big_rle_bmp_is_refused_before_pillow_pads_it_in_python(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from PIL import ImageFile

    from hashmatch.fixtures.fuzz_seeds import bmp_rle_row_padding

    decoded: list[str] = []
    real_load = ImageFile.ImageFile.load

    def counting_load(image: ImageFile.ImageFile):  # the work that took 18 s: never started
        decoded.append(image.format or "?")
        return real_load(image)

    monkeypatch.setattr(ImageFile.ImageFile, "load", counting_load)
    with pytest.raises(ImageTooLargeError, match=r"65535x1000 .* Pillow decodes in Python"):
        hash_image(bmp_rle_row_padding(65_535, 1000))  # 4 KB; took 18 s to decode
    assert decoded == []
    assert hash_image(bmp_rle_row_padding(64, 64)).width == 64  # a small RLE BMP still loads
    assert set(decoded) == {"BMP"}  # the small one is decoded


def test_a_side_longer_than_the_limit_is_refused_from_the_header() -> None:
    with pytest.raises(ImageTooLargeError, match="65536x16 has a side longer than the limit"):
        hash_image(png_declaring(65_536, 16))  # PDQ alone took 25 s and 5 GB on such a strip
    with pytest.raises(ImageTooLargeError, match="limit of 1000"):
        hash_image(png_declaring(1001, 10), limits=ImageLimits(max_side=1000))


_PALETTE = ((b"PLTE", b"\0\0\0\xff\xff\xff"), (b"tRNS", b"\0"))


def _blank_png(size: int, bit_depth: int, colour_type: int, channels: int, chunks=()) -> bytes:
    """A valid all-zero square PNG streamed row by row, so no big image is ever in memory."""
    header = struct.pack(">IIBBBBB", size, size, bit_depth, colour_type, 0, 0, 0)
    row = bytes(1 + size * channels * bit_depth // 8)
    packer = zlib.compressobj(9)
    pixels = b"".join(packer.compress(row) for _ in range(size)) + packer.flush()
    return b"\x89PNG\r\n\x1a\n" + b"".join(
        struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        for kind, data in ((b"IHDR", header), *chunks, (b"IDAT", pixels), (b"IEND", b""))
    )


@pytest.mark.parametrize(
    ("bit_depth", "colour_type", "channels", "chunks"),
    [(16, 0, 1, ()), (8, 6, 4, ()), (8, 4, 2, ()), (8, 3, 1, _PALETTE)],
    ids=["16-bit grey", "RGBA", "grey+alpha", "palette+transparency"],
)
def test_big_alpha_and_16_bit_images_are_reduced_before_conversion(
    tmp_path: Path, bit_depth: int, colour_type: int, channels: int, chunks
) -> None:
    path = tmp_path / "big.png"
    path.write_bytes(_blank_png(5000, bit_depth, colour_type, channels, chunks))
    code = "import sys; from hashmatch import hash_image; hash_image(sys.argv[1])"
    done = run_measuring_peak_rss([sys.executable, "-c", code, str(path)])
    assert done.returncode == 0, done.stderr
    # 25 Mpx: up to 10 bytes a pixel now; converting first took 17-28 (700 MB for 16-bit).
    assert done.peak_mb < 10 * 25 + 60


def test_big_transparent_image_hashes_like_its_flattened_copy_on_the_fast_path() -> None:
    photo = synthetic_photo(12, (1600, 1200))  # big enough to be reduced before flattening
    rgba = photo.convert("RGBA")
    rgba.putalpha(Image.linear_gradient("L").resize(photo.size))
    flattened = Image.new("RGB", photo.size, TRANSPARENT_BACKGROUND)
    flattened.paste(rgba, mask=rgba.getchannel("A"))
    assert pdq(encode(rgba, "PNG")).distance(pdq(encode(flattened, "PNG"))) <= 2
    assert pdq(encode(rgba.convert("LA"), "PNG")).distance(pdq(encode(flattened, "PNG"))) <= 2
