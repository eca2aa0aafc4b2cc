"""hashmatch: find known images by perceptual hash.

Hash images (``hash_image``), build an index of known hashes, and match uploads against it.
"""

from __future__ import annotations

import importlib
import threading
from typing import TYPE_CHECKING, Any

from hashmatch.errors import (
    AuthenticationError,
    ClusterError,
    EvaluationError,
    HashFormatError,
    HashListError,
    HashmatchError,
    ImageDecodeError,
    ImageError,
    ImageReadError,
    ImageTimeoutError,
    ImageTooLargeError,
    IndexBuildError,
    IndexFormatError,
    IndexIntegrityError,
    IndexVersionError,
    OptionError,
    ServiceCallError,
    ServiceUnavailableError,
    UnknownAlgorithmError,
    UnsupportedImageError,
    WorkerError,
)
from hashmatch.hashes import Hash
from hashmatch.hashing import HashResult, hash_image
from hashmatch.lists import ListEntry, read_hash_list
from hashmatch.loading import ImageLimits, LoadedImage, load_image
from hashmatch.registry import (
    Algorithm,
    algorithm_names,
    get_algorithm,
    load_builtin_algorithms,
)

if TYPE_CHECKING:
    from hashmatch.index.build import BuildOptions, EntryList, ListSource, build_index
    from hashmatch.index.matcher import Matcher
    from hashmatch.index.options import MatchOptions
    from hashmatch.index.report import BuildReport
    from hashmatch.index.results import Match, MatchResult

__version__ = "0.1.0"

_INDEX_EXPORTS = {
    "BuildOptions": "build",
    "BuildReport": "report",
    "EntryList": "build",
    "ListSource": "build",
    "build_index": "build",
    "Match": "results",
    "MatchOptions": "options",
    "MatchResult": "results",
    "Matcher": "matcher",
}
_INDEX_IMPORT_LOCK = threading.Lock()

# Registering the built-in algorithms costs a few milliseconds: done here, no thread can ever
# see a half-filled registry (lookups still make sure of it, for code that imported only a
# submodule).
load_builtin_algorithms()


def __getattr__(name: str) -> Any:
    """The index API (matching and building), imported on first use so ``import hashmatch``
    stays light.

    Threads asking together import it once; the names are then module globals, so this runs
    only until the first import has finished.
    """
    if name not in _INDEX_EXPORTS:
        raise AttributeError(f"module 'hashmatch' has no attribute {name!r}")
    with _INDEX_IMPORT_LOCK:
        if name not in globals():
            for export, module_name in _INDEX_EXPORTS.items():
                module = importlib.import_module(f"hashmatch.index.{module_name}")
                globals()[export] = getattr(module, export)
    return globals()[name]


__all__ = [
    "Algorithm",
    "BuildOptions",
    "BuildReport",
    "EntryList",
    "AuthenticationError",
    "ClusterError",
    "EvaluationError",
    "Hash",
    "HashFormatError",
    "HashListError",
    "HashResult",
    "HashmatchError",
    "IndexBuildError",
    "IndexFormatError",
    "IndexIntegrityError",
    "IndexVersionError",
    "ImageDecodeError",
    "ImageError",
    "ImageLimits",
    "ImageReadError",
    "ImageTimeoutError",
    "ImageTooLargeError",
    "ListEntry",
    "ListSource",
    "LoadedImage",
    "Match",
    "MatchOptions",
    "MatchResult",
    "Matcher",
    "OptionError",
    "ServiceCallError",
    "ServiceUnavailableError",
    "UnknownAlgorithmError",
    "UnsupportedImageError",
    "WorkerError",
    "__version__",
    "algorithm_names",
    "build_index",
    "get_algorithm",
    "hash_image",
    "load_image",
    "read_hash_list",
]
