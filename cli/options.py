"""Option types and parsers shared by the commands, so every command spells them the same."""

from __future__ import annotations

from typing import Annotated

import typer

from hashmatch.cli.output import OutputFormat
from hashmatch.errors import HashmatchError
from hashmatch.loading import DEFAULT_LIMITS, ImageLimits
from hashmatch.parallel import default_workers
from hashmatch.registry import get_algorithm, resolve_algorithms

__all__ = [
    "DEFAULT_WORKERS",
    "DihedralOption",
    "OutputFormatOption",
    "ThresholdOption",
    "WorkersOption",
    "RecoverOption",
    "TrimBordersOption",
    "parse_algorithms",
    "parse_limits",
    "parse_thresholds",
]

DihedralOption = Annotated[
    bool, typer.Option("--dihedral/--no-dihedral", help="Also match rotations and flips.")
]
TrimBordersOption = Annotated[
    bool,
    typer.Option("--trim-borders/--no-trim-borders", help="Also match inside letterboxes."),
]
RecoverOption = Annotated[
    bool,
    typer.Option(
        "--recover/--no-recover",
        help="Also match with a small crop (to about 7%) or tilt (2-5 degrees) undone.",
    ),
]
"""The matching switches ``scan`` and ``eval`` share, spelled once."""

ThresholdOption = Annotated[
    list[str] | None,
    typer.Option("--threshold", help="ALG=N, e.g. pdq=28, overriding the default (repeatable)."),
]
WorkersOption = Annotated[
    int, typer.Option("--workers", "-j", min=1, help="Processes decoding and hashing.")
]
DEFAULT_WORKERS = default_workers()
"""The cores this process may use: every command's default for ``--workers``."""

OutputFormatOption = Annotated[
    OutputFormat | None,
    typer.Option(
        "--format",
        "-f",
        help="table | jsonl | csv | json. [default: table on a terminal, else jsonl]",
        show_default=False,
    ),
]
"""Every command's output switch (:class:`~hashmatch.cli.output.OutputFormat`)."""


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


def parse_thresholds(values: list[str] | None) -> dict[str, int]:
    """``--threshold pdq=28 --threshold phash=8`` into ``{"pdq": 28, "phash": 8}``."""
    result: dict[str, int] = {}
    for value in values or []:
        name, separator, number = value.partition("=")
        try:
            if not separator:
                raise ValueError("expected ALGORITHM=N, e.g. pdq=31")
            algorithm = get_algorithm(name)
            threshold = int(number)
            if not 0 <= threshold <= algorithm.bits:
                raise ValueError(f"{algorithm.name} threshold must be 0..{algorithm.bits}")
        except (HashmatchError, ValueError) as exc:
            raise typer.BadParameter(f"{value!r}: {exc}", param_hint="'--threshold'") from None
        result[algorithm.name] = threshold
    return result
