"""The registry of hash algorithms.

Each algorithm lives in one module of :mod:`hashmatch.algorithms` and registers an
:class:`Algorithm` there: adding an algorithm is adding one module. Perceptual algorithms hash
decoded pixels; exact ones (md5, sha256) hash the original file bytes.
"""

from __future__ import annotations

import importlib
import pkgutil
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from hashmatch.errors import OptionError, UnknownAlgorithmError
from hashmatch.once import once

if TYPE_CHECKING:
    from hashmatch.hashes import Hash
    from hashmatch.loading import OpenedImage

__all__ = [
    "DEFAULT_ALGORITHMS",
    "Algorithm",
    "Computed",
    "algorithm_names",
    "checked_thresholds",
    "get_algorithm",
    "load_builtin_algorithms",
    "plugin_modules",
    "register_algorithm",
    "resolve_algorithms",
]


@dataclass(frozen=True)
class Computed:
    """What one algorithm produced for one image."""

    hash: Hash
    quality: int | None = None
    """0-100 where the algorithm rates how informative its input was (PDQ), else None."""
    variants: dict[str, Hash] = field(default_factory=dict)
    """Hashes of the rotated/flipped image by variant name, when asked for and supported."""


@dataclass(frozen=True)
class Algorithm:
    """One hash algorithm: its name, size, default match threshold and how to compute it."""

    name: str
    bits: int
    default_threshold: int
    """Largest Hamming distance that still counts as a match (0 means exact)."""
    compute: Callable[[OpenedImage, bool], Computed]
    """``compute(image, dihedral)``; uses ``image.decoded()`` or ``image.data``."""
    needs_pixels: bool
    """False for exact byte hashes, which never decode the image."""
    description: str
    uses_color: bool = False
    """True if the hash needs colour; otherwise the fast path may decode luminance only."""
    crop_sensitive: bool = False
    """True if small crops and tilts move the hash past its threshold, so matching with
    ``recover`` also hashes the query with them undone (:mod:`hashmatch.recovery`)."""
    variants: tuple[str, ...] = ()
    """The rotated/flipped variants ``compute(image, dihedral=True)`` adds, by name (PDQ's
    seven dihedral ones, derived from its DCT); empty for an algorithm without them."""
    quality_floor: int | None = None
    """For an algorithm that rates how informative its input was (``Computed.quality``,
    0-100): below this its matches are not trusted, and an image nothing else matches is
    ``low_quality``."""
    confirms_within: int | None = None
    """A match by another perceptual algorithm on a list entry that also holds a hash of
    this one stands only if this algorithm's hash of the image is within this distance of
    the entry's: weaker hashes collide, this one vouches for them."""
    bit_count_range: tuple[int, int] | None = None
    """A valid hash has between these many bits set; a list hash outside is degenerate."""


DEFAULT_ALGORITHMS: tuple[str, ...] = ("pdq",)
"""What is hashed when nobody says: PDQ, the hash the industry exchanges."""

_REGISTRY: dict[str, Algorithm] = {}
_REGISTRY_LOCK = threading.Lock()
_BUILTIN_PACKAGE = "hashmatch.algorithms"


def register_algorithm(algorithm: Algorithm) -> Algorithm:
    """Add an algorithm; names are unique and lower case."""
    if algorithm.name != algorithm.name.lower() or not algorithm.name.isidentifier():
        raise ValueError(f"algorithm names are lower-case identifiers, got {algorithm.name!r}")
    with _REGISTRY_LOCK:
        if algorithm.name in _REGISTRY and _REGISTRY[algorithm.name] != algorithm:
            raise ValueError(f"algorithm {algorithm.name!r} is already registered")
        _REGISTRY[algorithm.name] = algorithm
    return algorithm


@once
def load_builtin_algorithms() -> None:
    """Import every module of :mod:`hashmatch.algorithms`, each registering its algorithm.

    ``import hashmatch`` does this; every lookup also makes sure of it. Threads that ask while
    the modules are being imported wait for all of them: a registry seen half-filled would
    make a known algorithm look unknown.
    """
    package = importlib.import_module(_BUILTIN_PACKAGE)
    for module in pkgutil.iter_modules(package.__path__):
        if not module.name.startswith("_"):
            importlib.import_module(f"{_BUILTIN_PACKAGE}.{module.name}")


def plugin_modules() -> tuple[str, ...]:
    """The modules, other than the built-in ones, whose algorithms are registered here.

    Worker processes import these before their first task, so an algorithm a program
    registers from its own module hashes in batch workers as it does in the program.
    (Algorithms registered by a script's ``__main__`` are registered again when the worker
    re-imports the script, as multiprocessing does.)
    """
    with _REGISTRY_LOCK:
        modules = {getattr(a.compute, "__module__", None) for a in _REGISTRY.values()}
    return tuple(
        sorted(
            name
            for name in modules
            if name
            and name not in ("__main__", "__mp_main__")
            and not name.startswith(f"{_BUILTIN_PACKAGE}.")
        )
    )


def get_algorithm(name: str) -> Algorithm:
    """The registered algorithm called ``name`` (case-insensitive)."""
    load_builtin_algorithms()
    if not isinstance(name, str):
        raise UnknownAlgorithmError(f"algorithm names are strings, got {type(name).__name__}")
    try:
        return _REGISTRY[name.strip().lower()]
    except KeyError:
        known = ", ".join(algorithm_names())
        raise UnknownAlgorithmError(f"unknown algorithm {name!r} (known: {known})") from None


def algorithm_names() -> list[str]:
    """Every registered algorithm: the confirming one (PDQ) first, then the other perceptual
    ones, then exact ones, each group by name."""
    load_builtin_algorithms()
    with _REGISTRY_LOCK:
        registered = dict(_REGISTRY)

    def rank(name: str) -> tuple[int, str]:
        algorithm = registered[name]
        if algorithm.confirms_within is not None:
            return 0, name  # the strongest first: the one that vouches for the others
        return (1 if algorithm.needs_pixels else 2), name

    return sorted(registered, key=rank)


def resolve_algorithms(names: str | Iterable[str]) -> tuple[Algorithm, ...]:
    """Turn ``"pdq,phash"``, ``"all"`` or a list of names into algorithms, without repeats."""
    if isinstance(names, str):
        names = [names]
    if not isinstance(names, Iterable) or isinstance(names, (bytes, bytearray)):
        raise UnknownAlgorithmError(
            f"algorithms are names or a comma-separated string, got {type(names).__name__}"
        )
    wanted: list[str] = []
    for item in names:
        if not isinstance(item, str):
            raise UnknownAlgorithmError(f"algorithm names are strings, got {type(item).__name__}")
        for part in item.split(","):
            part = part.strip().lower()
            if not part:
                continue
            wanted.extend(algorithm_names() if part == "all" else [part])
    if not wanted:
        raise UnknownAlgorithmError("no algorithm given")
    unique = dict.fromkeys(wanted)
    return tuple(get_algorithm(name) for name in unique)


def checked_thresholds(thresholds: Mapping[str, int] | None) -> dict[str, int]:
    """Per-algorithm thresholds keyed by canonical name, each a whole number of bits within
    the algorithm's size; raises OptionError / UnknownAlgorithmError naming the bad one."""
    if thresholds is None:
        return {}
    if not isinstance(thresholds, Mapping):
        raise OptionError(
            f"thresholds map algorithm names to bits, got {type(thresholds).__name__}"
        )
    checked: dict[str, int] = {}
    for name, value in thresholds.items():
        algorithm = get_algorithm(name)
        if isinstance(value, bool) or not isinstance(value, int):
            raise OptionError(
                f"{algorithm.name} threshold must be a whole number, got {type(value).__name__}"
            )
        if not 0 <= value <= algorithm.bits:
            raise OptionError(
                f"{algorithm.name} threshold must be 0..{algorithm.bits}, got {value}"
            )
        checked[algorithm.name] = value
    return checked
