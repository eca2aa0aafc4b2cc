"""Shared glue for the 64-bit imagehash algorithms: hash our loaded pixels, not a re-decode."""

from __future__ import annotations

import importlib
from collections.abc import Callable, Sequence

import imagehash
from PIL import Image

from hashmatch.hashes import Hash
from hashmatch.loading import OpenedImage
from hashmatch.once import Once
from hashmatch.registry import Algorithm, Computed, register_algorithm

DEFAULT_THRESHOLD_64 = 10
"""About 15% of 64 bits: the usual cut-off for imagehash's 8x8 hashes, and where phash and
dhash still matched no pair of distinct photos in ``hashmatch eval`` (README)."""


def register_imagehash(
    name: str,
    function: Callable[[Image.Image], imagehash.ImageHash],
    description: str,
    threshold: int = DEFAULT_THRESHOLD_64,
    imports: Sequence[str] = (),
) -> Algorithm:
    """Register ``function`` (an imagehash 8x8 hash) as the algorithm ``name``.

    ``imports`` are the modules ``function`` imports on each call (imagehash defers scipy and
    pywt that way): they are imported once, under a lock, before the first hash, so threads
    hashing together for the first time never meet a module another thread is still
    importing, and ``import hashmatch`` does not pay for them.
    """
    ready = Once(lambda: [importlib.import_module(module) for module in imports])

    def compute(image: OpenedImage, dihedral: bool) -> Computed:
        ready()
        result = function(image.decoded().image)
        return Computed(Hash.from_bits(name, result.hash))

    return register_algorithm(
        Algorithm(
            name=name,
            bits=64,
            default_threshold=threshold,
            compute=compute,
            needs_pixels=True,
            description=description,
        )
    )
