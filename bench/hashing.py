"""Hashing throughput on one core: hashmatch against the usual alternatives, same files, one run.

    python bench/hashing.py [--rounds 3] [--photos N] [--data DIR]

Inputs are real photos (the shared data set's Kodak and McMaster images, found through
$HASHMATCH_SHARED_DATA or ../shared/data) upscaled to 12 MP JPEG, plus 1 MP JPEG and PNG
versions; without the shared data, synthetic photos stand in. Each contender hashes every file
once per round; the table shows the median rate over rounds and ratios against the peers,
then the PDQ drift of the fast path against full-resolution hashing.
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # one core: no hidden BLAS threads
os.environ.setdefault("OMP_NUM_THREADS", "1")

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import imagehash
import numpy as np
from common import source_photos  # bench/common.py
from PIL import Image

from hashmatch import hash_image
from hashmatch.loading import WORKING_SIZE

SIZES = {
    "12mp_jpeg": ((4000, 3000), "JPEG"),
    "1mp_jpeg": ((1155, 866), "JPEG"),
    "1mp_png": ((1155, 866), "PNG"),
}


def write_inputs(folder: Path, count: int) -> dict[str, list[Path]]:
    sets: dict[str, list[Path]] = {name: [] for name in SIZES}
    for i, photo in enumerate(source_photos(count)):
        for name, (size, image_format) in SIZES.items():
            path = folder / f"{name}_{i:02d}.{image_format.lower()}"
            photo.resize(size, Image.Resampling.LANCZOS).save(path, image_format, quality=90)
            sets[name].append(path)
    return sets


def decode_full(path: Path) -> Image.Image:
    with Image.open(path) as image:
        image.load()
        return image


def decode_draft(path: Path, mode: str = "RGB") -> Image.Image:
    with Image.open(path) as image:
        if image.format == "JPEG":
            image.draft(mode, (WORKING_SIZE, WORKING_SIZE))
        image.load()
        return image


def pdqhash_full(path: Path) -> object:
    import pdqhash

    with Image.open(path) as image:
        return pdqhash.compute(np.asarray(image.convert("RGB")))


CONTENDERS: dict[str, Callable[[Path], object]] = {
    "hashmatch pdq (fast)": lambda p: hash_image(p, "pdq"),
    "hashmatch pdq (exact)": lambda p: hash_image(p, "pdq", exact=True),
    "hashmatch phash (fast)": lambda p: hash_image(p, "phash"),
    "imagehash.phash(Image.open(p))": lambda p: imagehash.phash(Image.open(p)),
    "pdqhash.compute (full decode)": pdqhash_full,
    "Pillow decode, full": decode_full,
    "Pillow decode, draft (floor)": decode_draft,  # RGB, as a caller would decode
    "Pillow decode, draft L": lambda p: decode_draft(p, "L"),
}


def measure(paths: list[Path], rounds: int) -> dict[str, list[float]]:
    """Per round, the rate of every contender. Contenders take turns file by file, so a slow
    spell of this shared machine hits all of them alike and the per-round ratios stay fair."""
    per_round: dict[str, list[float]] = {name: [] for name in CONTENDERS}
    for _ in range(rounds):
        spent = dict.fromkeys(CONTENDERS, 0.0)
        for path in paths:
            for name, function in CONTENDERS.items():
                started = time.perf_counter()
                function(path)
                spent[name] += time.perf_counter() - started
        for name, seconds in spent.items():
            per_round[name].append(len(paths) / seconds)
    return per_round


def drift(paths: list[Path]) -> tuple[float, int]:
    distances = [hash_image(p)["pdq"].distance(hash_image(p, exact=True)["pdq"]) for p in paths]
    return float(np.mean(distances)), max(distances)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--photos", type=int, default=12, help="source photos per size")
    parser.add_argument("--data", type=Path, help="keep generated inputs here")
    args = parser.parse_args()
    try:
        import pdqhash  # noqa: F401
    except ImportError:
        del CONTENDERS["pdqhash.compute (full decode)"]
        print("(pdqhash not installed: its column is skipped)", file=sys.stderr)
    with tempfile.TemporaryDirectory() as scratch:
        folder = args.data or Path(scratch)
        folder.mkdir(parents=True, exist_ok=True)
        sets = write_inputs(folder, args.photos)
        for paths in sets.values():  # warm caches and lazy imports
            for function in CONTENDERS.values():
                function(paths[0])
        rounds = {s: measure(paths, args.rounds) for s, paths in sets.items()}
        drifts = {s: drift(paths) for s, paths in sets.items()}
    print_table(rounds, drifts, args)


def print_table(rounds: dict[str, dict[str, list[float]]], drifts: dict, args) -> None:
    sets = list(SIZES)

    def median_rate(name: str, s: str) -> float:
        return statistics.median(rounds[s][name])

    def median_ratio(name: str, peer: str, s: str) -> float:
        pairs = zip(rounds[s][name], rounds[s][peer], strict=True)
        return statistics.median(ours / theirs for ours, theirs in pairs)

    print(f"\nimages/s on one core, median of {args.rounds} rounds, {args.photos} files per set\n")
    print(f"| {'contender':32} | " + " | ".join(f"{s:>10}" for s in sets) + " |")
    print(f"|{'-' * 34}|" + "|".join("-" * 12 for _ in sets) + "|")
    for name in CONTENDERS:
        cells = " | ".join(f"{median_rate(name, s):10.1f}" for s in sets)
        print(f"| {name:32} | {cells} |")
    ours = "hashmatch pdq (fast)"
    print("\nratios, hashmatch pdq (fast) / peer (median of per-round ratios):")
    peers = (
        "pdqhash.compute (full decode)",
        "imagehash.phash(Image.open(p))",
        "Pillow decode, draft (floor)",
        "Pillow decode, draft L",
        "Pillow decode, full",
    )
    for peer in peers:
        if peer in CONTENDERS:
            ratios = " ".join(f"{s} {median_ratio(ours, peer, s):5.2f}x" for s in sets)
            print(f"  vs {peer:32} {ratios}")
    print("\nPDQ drift, fast path vs full resolution (bits):")
    for s, (mean, worst) in drifts.items():
        print(f"  {s:10} mean {mean:.2f}  max {worst}")
    targets = [
        ("12 MP: >= 5x pdqhash on full decode", "pdqhash.compute (full decode)", 5.0),
        ("12 MP: >= 2x imagehash.phash(Image.open(p))", "imagehash.phash(Image.open(p))", 2.0),
        ("12 MP: >= 0.75x Pillow draft decode alone", "Pillow decode, draft (floor)", 0.75),
    ]
    print("\ntargets:")
    for label, peer, needed in targets:
        if peer in CONTENDERS:
            got = median_ratio(ours, peer, "12mp_jpeg")
            print(f"  {'met ' if got >= needed else 'MISS'} {label}: {got:.2f}x")
    mean, worst = drifts["12mp_jpeg"]
    ok = mean <= 3 and worst <= 10
    print(f"  {'met ' if ok else 'MISS'} 12 MP drift mean <= 3, max <= 10: {mean:.2f}, {worst}")


if __name__ == "__main__":
    main()
