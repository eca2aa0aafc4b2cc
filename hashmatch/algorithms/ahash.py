"""ahash: imagehash's 64-bit average hash (8x8 greyscale vs its mean)."""

import imagehash

from hashmatch.algorithms._imagehash_family import register_imagehash

ALGORITHM = register_imagehash(
    "ahash", imagehash.average_hash, "imagehash average hash, 64 bits; simplest, least robust"
)
