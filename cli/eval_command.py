"""``hashmatch eval``: recall and false positives of the matcher on edited copies of images.

Exit codes: 0 report written, 2 bad input (no image could be hashed, unknown transform).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.table import Table

from hashmatch.cli.exit_codes import ExitCode
from hashmatch.cli.options import (
    DEFAULT_WORKERS,
    DihedralOption,
    RecoverOption,
    ThresholdOption,
    TrimBordersOption,
    WorkersOption,
    parse_algorithms,
    parse_thresholds,
)
from hashmatch.cli.output import print_error, stderr_console
from hashmatch.cli.progress import BatchProgress
from hashmatch.errors import HashmatchError
from hashmatch.walking import walk_images

if TYPE_CHECKING:
    from hashmatch.index.evaluation import EvalResult


def _images(paths: list[str], recursive: bool, console: Console) -> list[str]:
    found = []
    for entry in walk_images(paths, recursive=recursive):
        if entry.error is not None:
            console.print(f"skipped {entry.path}: {entry.error}", markup=False)
        elif entry.skipped is None:
            found.append(entry.path)
    return found


def eval_command(
    images: Annotated[list[str], typer.Argument(help="The known images: files or directories.")],
    output: Annotated[
        Path, typer.Option("-o", "--output", help="Report directory (created if missing).")
    ],
    recursive: Annotated[
        bool, typer.Option("-r", "--recursive", help="Descend into subdirectories.")
    ] = False,
    transforms: Annotated[
        str,
        typer.Option(
            "--transforms",
            "-t",
            help="Comma-separated transforms, 'default' for the suite, e.g. "
            "'default,jpeg_q20,rotate_3deg'. Steps chain with '+': 'resize_0.5+jpeg_q50'.",
        ),
    ] = "default",
    algorithms: Annotated[
        list[str] | None,
        typer.Option(
            "-a", "--algorithms", help="Perceptual algorithms [default: pdq,phash,dhash]."
        ),
    ] = None,
    distractors: Annotated[
        list[str] | None,
        typer.Option(
            "--distractors", help="Unrelated images: more false-positive pairs (repeatable)."
        ),
    ] = None,
    threshold: ThresholdOption = None,
    dihedral: DihedralOption = True,
    trim_borders: TrimBordersOption = True,
    recover: RecoverOption = True,
    workers: WorkersOption = DEFAULT_WORKERS,
    quiet: Annotated[bool, typer.Option("-q", "--quiet", help="No progress bar.")] = False,
) -> None:
    """Measure recall per transform and false positives; write report.md, results.json, plots.

    The images become a known list and an index; each is edited by every transform and matched
    as a scan would; every pair of distinct images measures false positives.
    """
    from hashmatch.index.evaluation import (
        DEFAULT_EVAL_MATCHING,
        EvalOptions,
        evaluate,
        parse_transforms,
        write_report,
    )
    from hashmatch.index.options import MatchOptions

    console = stderr_console()
    try:
        chosen = parse_transforms(transforms)
    except KeyError as exc:
        raise typer.BadParameter(str(exc.args[0]), param_hint="'--transforms'") from None
    if not chosen:
        raise typer.BadParameter("no transform given", param_hint="'--transforms'")
    options = EvalOptions(
        transforms=tuple(chosen),
        matching=MatchOptions(
            algorithms=parse_algorithms(algorithms, tuple(DEFAULT_EVAL_MATCHING.algorithms or ())),
            thresholds=parse_thresholds(threshold),
            dihedral=dihedral,
            trim_borders=trim_borders,
            recover=recover,
        ),
        workers=workers,
    )
    known = _images(images, recursive, console)
    others = _images(distractors or [], True, console)
    if not known:
        print_error("no images found among the given paths")
        raise typer.Exit(ExitCode.FAILED)
    with BatchProgress("evaluating", [], enabled=not quiet) as progress:
        progress.discovered(len(known) * (1 + len(chosen)) + len(others))
        try:
            result = evaluate(
                known,
                options,
                distractors=others,
                progress=lambda done, total: progress.advance(total=total),
            )
        except HashmatchError as exc:
            print_error(exc)
            raise typer.Exit(ExitCode.FAILED) from None
    written = write_report(result, output)
    _print_summary(result)
    for path in result.failed:
        console.print(f"could not hash {path}: {result.failed[path]}", markup=False)
    console.print(f"wrote {', '.join(p.name for p in written)} to {output}", markup=False)


def _print_summary(result: EvalResult) -> None:
    algorithms = list(result.scores)
    table = Table(title="Recall per transform", title_justify="left")
    table.add_column("transform")
    for algorithm in algorithms:
        table.add_column(f"{algorithm} (<= {result.thresholds[algorithm]})", justify="right")
    for name in result.options.transforms:
        table.add_row(name, *(f"{result.scores[a][name].recall * 100:.1f}%" for a in algorithms))
    table.add_row(
        "false pairs",
        *(f"{result.false_matches[a]} of {result.false_pairs}" for a in algorithms),
        end_section=True,
    )
    Console(highlight=False).print(table)
