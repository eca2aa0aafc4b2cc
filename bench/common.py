"""What the benchmarks share: the photos they measure on."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from PIL import Image

from hashmatch.fixtures.images import synthetic_photo


def source_photos(count: int) -> list[Image.Image]:
    """Real photos from the shared data set ($HASHMATCH_SHARED_DATA or ../shared/data), else
    synthetic ones (with a note on stderr)."""
    default = Path(__file__).resolve().parents[2] / "shared" / "data"
    shared = Path(os.environ.get("HASHMATCH_SHARED_DATA", default))
    paths = sorted((shared / "photos").glob("*/*"))[:count]
    if paths:
        return [Image.open(p).convert("RGB") for p in paths]
    print(f"(no shared photos at {shared}: using synthetic photos)", file=sys.stderr)
    return [synthetic_photo(seed, (500, 500)) for seed in range(count)]
