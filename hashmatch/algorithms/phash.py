"""phash: imagehash's 64-bit DCT hash (32x32 greyscale, low 8x8 frequencies vs median)."""

import imagehash

from hashmatch.algorithms._imagehash_family import register_imagehash

ALGORITHM = register_imagehash(
    "phash",
    imagehash.phash,
    "imagehash DCT hash, 64 bits; robust to resizing and re-encoding",
    imports=("scipy.fftpack",),
)
