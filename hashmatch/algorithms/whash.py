"""whash: imagehash's 64-bit Haar wavelet hash."""

import imagehash

from hashmatch.algorithms._imagehash_family import register_imagehash

ALGORITHM = register_imagehash("whash", imagehash.whash, "imagehash Haar wavelet hash, 64 bits")
