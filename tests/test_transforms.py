"""The evaluation's transforms: deterministic, parameterised, and what their names say."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from hashmatch.index.evaluation.transforms import DEFAULT_SUITE, apply_transform, parse_transforms


@pytest.mark.parametrize("name", DEFAULT_SUITE)
def test_every_default_transform_is_deterministic(photo: Image.Image, name: str) -> None:
    first = apply_transform(name, photo)
    second = apply_transform(name, photo)
    assert first.mode == "RGB"
    assert np.array_equal(np.asarray(first), np.asarray(second))
    if name != "noop":
        assert not (first.size == photo.size and np.array_equal(first, photo.convert("RGB")))


def test_sizes_follow_the_parameters(photo: Image.Image) -> None:
    width, height = photo.size  # 640 x 480
    assert apply_transform("resize_0.25", photo).size == (160, 120)
    assert apply_transform("rotate_90", photo).size == (height, width)
    assert apply_transform("rotate_5deg", photo).size == photo.size
    assert apply_transform("crop_10pct", photo).size == (576, 432)
    assert apply_transform("crop_10pct_corner", photo).size == (576, 432)
    assert apply_transform("pad_20pct_black", photo).size == (800, 600)
    assert apply_transform("letterbox_20pct_black", photo).size == (640, 600)
    assert apply_transform("resize_0.5+jpeg_q50", photo).size == (320, 240)


def test_borders_have_the_named_colour(photo: Image.Image) -> None:
    white = np.asarray(apply_transform("pad_20pct_white", photo))
    black = np.asarray(apply_transform("letterbox_10pct_black", photo))
    assert (white[:40] == 255).all() and (white[:, :60] == 255).all()
    assert (black[:20] == 0).all() and not (black[:, :5] == 0).all()


def test_chained_steps_run_left_to_right(photo: Image.Image) -> None:
    chained = apply_transform("flip_horizontal+crop_5pct", photo)
    by_hand = apply_transform("crop_5pct", apply_transform("flip_horizontal", photo))
    assert np.array_equal(np.asarray(chained), np.asarray(by_hand))


def test_parse_expands_default_and_rejects_unknown_names() -> None:
    names = parse_transforms("default, jpeg_q20,noop")
    assert names[: len(DEFAULT_SUITE)] == list(DEFAULT_SUITE)
    assert names[-1] == "jpeg_q20" and names.count("noop") == 1
    with pytest.raises(KeyError, match="unknown transform 'swirl'"):
        parse_transforms("noop,swirl")
    with pytest.raises(KeyError, match="jpeg_q"):
        parse_transforms("resize_0.5+jpeg")


def test_the_default_suite_covers_every_kind_the_evaluation_reports() -> None:
    for needed in (
        "jpeg_q30",
        "resize_0.25",
        "resize_2.0",
        "blur_2",
        "sharpen",
        "gamma_1.6",
        "greyscale",
        "noise_10",
        "watermark",
        "logo_10pct",
        "pad_20pct_white",
        "letterbox_20pct_black",
        "crop_5pct",
        "rotate_270",
        "flip_vertical",
        "rotate_5deg",
        "resize_0.5+jpeg_q50",
        "flip_horizontal+crop_5pct",
    ):
        assert needed in DEFAULT_SUITE
