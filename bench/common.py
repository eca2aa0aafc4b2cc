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


def process_memory_mib(pid: int | str = "self") -> tuple[float, float]:
    """A process's resident set (VmRSS) and proportional set (Pss, from smaps_rollup: shared
    pages, like a memory-mapped index, split between the processes mapping them), in MiB;
    nan where unreadable (a process gone, a kernel without smaps_rollup)."""
    rss = pss = float("nan")
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as status:
            rss = next(int(line.split()[1]) / 1024 for line in status if line.startswith("VmRSS:"))
        with open(f"/proc/{pid}/smaps_rollup", encoding="ascii") as rollup:
            pss = next(int(line.split()[1]) / 1024 for line in rollup if line.startswith("Pss:"))
    except (OSError, StopIteration):
        pass
    return rss, pss
