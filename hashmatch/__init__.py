"""hashmatch: find known images by perceptual hash.

Hash images (``hash_image``), build an index of known hashes, and match uploads against it.
"""

from __future__ import annotations

from hashmatch.errors import (
    HashFormatError,
    HashmatchError,
    ImageDecodeError,
    ImageError,
    ImageReadError,
    ImageTooLargeError,
    UnknownAlgorithmError,
    UnsupportedImageError,
)
from hashmatch.hashes import Hash
from hashmatch.hashing import HashResult, hash_image
from hashmatch.loading import ImageLimits, LoadedImage, load_image
from hashmatch.registry import Algorithm, algorithm_names, get_algorithm

__version__ = "0.1.0"

__all__ = [
    "Algorithm",
    "Hash",
    "HashFormatError",
    "HashResult",
    "HashmatchError",
    "ImageDecodeError",
    "ImageError",
    "ImageLimits",
    "ImageReadError",
    "ImageTooLargeError",
    "LoadedImage",
    "UnknownAlgorithmError",
    "UnsupportedImageError",
    "__version__",
    "algorithm_names",
    "get_algorithm",
    "hash_image",
    "load_image",
]
