"""dhash: imagehash's 64-bit difference hash (horizontal gradients of a 9x8 greyscale)."""

import imagehash

from hashmatch.algorithms._imagehash_family import register_imagehash

ALGORITHM = register_imagehash(
    "dhash", imagehash.dhash, "imagehash difference hash, 64 bits; fast, gradient based"
)
