"""Option types and parsers shared by the commands, so every command spells them the same."""

from __future__ import annotations

import typer

from hashmatch.errors import HashmatchError
from hashmatch.loading import DEFAULT_LIMITS, ImageLimits
from hashmatch.registry import resolve_algorithms

__all__ = ["parse_algorithms", "parse_limits"]


def parse_algorithms(
    values: list[str] | None, default: tuple[str, ...] = ("pdq",)
) -> tuple[str, ...]:
    """``-a pdq,phash``, ``-a pdq -a phash`` or ``-a all`` into algorithm names."""
    try:
        return tuple(a.name for a in resolve_algorithms(values or list(default)))
    except HashmatchError as exc:
        raise typer.BadParameter(str(exc), param_hint="'-a' / '--algorithms'") from None


def parse_limits(max_bytes: int | None, max_pixels: int | None) -> ImageLimits:
    return ImageLimits(
        max_bytes=max_bytes if max_bytes is not None else DEFAULT_LIMITS.max_bytes,
        max_pixels=max_pixels if max_pixels is not None else DEFAULT_LIMITS.max_pixels,
    )
