"""``hash_image``: one input, any set of algorithms, decoded at most once."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field, replace

from hashmatch.hashes import Hash
from hashmatch.loading import (
    DEFAULT_LIMITS,
    ImageLimits,
    ImageSource,
    OpenedImage,
    open_image,
    trim_to_content,
)
from hashmatch.recovery import recovered_images
from hashmatch.registry import DEFAULT_ALGORITHMS, Algorithm, resolve_algorithms

__all__ = ["HashResult", "hash_image"]


@dataclass(frozen=True)
class HashResult(Mapping[str, Hash]):
    """The hashes of one image by algorithm name (a read-only mapping), plus facts about it.

    ``result["pdq"]`` is a :class:`Hash`; the mapping can be passed straight to a lookup.
    """

    hashes: dict[str, Hash]
    width: int
    """Width of the original image, upright (after EXIF orientation)."""
    height: int
    pdq_quality: int | None = None
    """PDQ's 0-100 quality score when PDQ was computed; below 50 matches are unreliable."""
    variants: dict[str, dict[str, Hash]] = field(default_factory=dict)
    """Dihedral variant hashes by algorithm then variant name, when asked for."""
    format: str | None = None
    trimmed: HashResult | None = None
    """With ``trim_borders``: the perceptual hashes of the picture inside uniform borders
    (letterbox, padding), or None when the image has no such border."""
    recovered: dict[str, dict[str, Hash]] = field(default_factory=dict)
    """With ``recover``: hashes of the image with a small crop or tilt undone, by algorithm
    then edit name (:mod:`hashmatch.recovery`), for the algorithms those edits defeat (PDQ)."""

    def __getitem__(self, algorithm: str) -> Hash:
        return self.hashes[algorithm]

    def __iter__(self) -> Iterator[str]:
        return iter(self.hashes)

    def __len__(self) -> int:
        return len(self.hashes)


def hash_image(
    source: ImageSource,
    algorithms: str | Iterable[str] = DEFAULT_ALGORITHMS,
    *,
    exact: bool = False,
    dihedral: bool = False,
    trim_borders: bool = False,
    recover: bool = False,
    limits: ImageLimits = DEFAULT_LIMITS,
) -> HashResult:
    """Hash ``source`` (path, bytes, binary file object or PIL image) with ``algorithms``.

    ``algorithms`` takes names, a comma-separated string or ``"all"``. The image is decoded
    once for all perceptual algorithms and not at all for md5/sha256, which hash the original
    bytes. ``exact`` hashes full-resolution pixels instead of the faster reduced decode;
    ``dihedral`` adds PDQ's seven rotated/flipped variants; ``trim_borders`` also hashes the
    picture inside uniform borders (``result.trimmed``); ``recover`` also hashes the image
    with a small crop or tilt undone (``result.recovered``). Raises a
    :class:`~hashmatch.HashmatchError` subclass naming the input when it cannot be hashed.
    """
    chosen = resolve_algorithms(algorithms)
    grey = not any(algorithm.uses_color for algorithm in chosen)
    opened = open_image(source, exact=exact, grey=grey, limits=limits)
    whole = _compute(opened, chosen, dihedral)
    perceptual = [a for a in chosen if a.needs_pixels]
    if trim_borders and perceptual:
        cropped = trim_to_content(opened)
        if cropped is not None:
            whole = replace(whole, trimmed=_compute(cropped, perceptual, dihedral))
    recoverable = [a for a in chosen if a.crop_sensitive]
    if recover and recoverable:
        edited = recovered_images(opened)
        recovered = {
            algorithm.name: {
                name: algorithm.compute(image, False).hash for name, image in edited.items()
            }
            for algorithm in recoverable
        }
        whole = replace(whole, recovered=recovered)
    return whole


def _compute(opened: OpenedImage, chosen: Iterable[Algorithm], dihedral: bool) -> HashResult:
    hashes: dict[str, Hash] = {}
    variants: dict[str, dict[str, Hash]] = {}
    quality = None
    for algorithm in chosen:
        computed = algorithm.compute(opened, dihedral)
        hashes[algorithm.name] = computed.hash
        if computed.variants:
            variants[algorithm.name] = computed.variants
        if quality is None and computed.quality is not None:
            quality = computed.quality  # the algorithm that rates its input (PDQ)
    return HashResult(hashes, opened.width, opened.height, quality, variants, opened.format)
