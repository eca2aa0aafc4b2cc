"""Border detection: letterboxes and padding found, pictures without borders left alone."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from hashmatch import hash_image
from hashmatch.borders import content_box
from hashmatch.index.evaluation.transforms import apply_transform


def test_no_border_no_trimming(photos: list[Image.Image]) -> None:
    for picture in photos:
        assert content_box(np.asarray(picture)) is None
        assert hash_image(picture, trim_borders=True).trimmed is None


@pytest.mark.parametrize(
    "edit", ["pad_10pct_black", "pad_20pct_white", "letterbox_20pct_black", "pad_5pct_black"]
)
def test_padding_is_found_and_trimmed_back_to_the_picture(photo: Image.Image, edit: str) -> None:
    padded = apply_transform(edit, photo)
    box = content_box(np.asarray(padded))
    assert box is not None
    top, bottom, left, right = box
    assert abs((bottom - top) - photo.height) <= 4
    assert abs((right - left) - photo.width) <= 4
    original = hash_image(photo)["pdq"]
    result = hash_image(padded, trim_borders=True)
    assert result["pdq"].distance(original) > 31
    assert result.trimmed is not None and result.trimmed["pdq"].distance(original) <= 8


def test_thin_lines_and_flat_images_are_not_borders(photo: Image.Image) -> None:
    lined = np.asarray(photo).copy()
    lined[:3] = 0  # 3 of 480 rows: under the 2% minimum
    assert content_box(lined) is None
    assert content_box(np.full((200, 300, 3), 128, dtype=np.uint8)) is None
    tiny = np.zeros((10, 10, 3), dtype=np.uint8)
    assert content_box(tiny) is None
