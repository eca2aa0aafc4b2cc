"""Shared glue for exact hashes of the original file bytes (clearinghouse md5/sha256 lists)."""

from __future__ import annotations

import hashlib

from hashmatch.errors import UnsupportedImageError
from hashmatch.hashes import Hash
from hashmatch.loading import OpenedImage
from hashmatch.registry import Algorithm, Computed, register_algorithm


def register_digest(name: str, bits: int, description: str) -> Algorithm:
    """Register the :mod:`hashlib` digest ``name`` as an exact-match algorithm."""

    def compute(image: OpenedImage, dihedral: bool) -> Computed:
        if image.data is None:
            raise UnsupportedImageError(
                image.name, f"{name} hashes the original file bytes, which a PIL image lacks"
            )
        return Computed(Hash(name, hashlib.new(name, image.data).digest()))

    return register_algorithm(
        Algorithm(
            name=name,
            bits=bits,
            default_threshold=0,
            compute=compute,
            needs_pixels=False,
            description=description,
        )
    )
