"""Shared fixtures: synthetic images written as real files, and the optional shared data set."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from PIL import Image

from hashmatch.fixtures.images import save_image, synthetic_photo

PROJECT_ROOT = Path(__file__).resolve().parents[1]


def shared_data_dir() -> Path:
    """``$HASHMATCH_SHARED_DATA``, else ``../shared/data`` next to the project."""
    return Path(os.environ.get("HASHMATCH_SHARED_DATA", PROJECT_ROOT.parent / "shared" / "data"))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    path = shared_data_dir()
    if not path.is_dir():
        pytest.skip(f"shared data set not found at {path} (set HASHMATCH_SHARED_DATA)")
    return path


@pytest.fixture(scope="session")
def photo() -> Image.Image:
    """One 640x480 synthetic photo."""
    return synthetic_photo(1)


@pytest.fixture(scope="session")
def photos() -> list[Image.Image]:
    """Six distinct synthetic photos of assorted sizes and aspect ratios."""
    sizes = [(640, 480), (480, 640), (800, 533), (300, 300), (1031, 517), (97, 130)]
    return [synthetic_photo(seed, size) for seed, size in enumerate(sizes, start=10)]


@pytest.fixture
def photo_jpeg(tmp_path: Path, photo: Image.Image) -> Path:
    return save_image(photo, tmp_path / "photo.jpg", quality=92)
