"""``hashmatch hash``: hash image files into records (one per file), for lists and inspection."""

from __future__ import annotations

import time
from typing import Annotated, Any

import typer

from hashmatch.batch import HashJob, HashOutcome, hash_files
from hashmatch.cli.exit_codes import ExitCode
from hashmatch.cli.options import (
    DEFAULT_WORKERS,
    OutputFormatOption,
    WorkersOption,
    parse_algorithms,
    parse_limits,
)
from hashmatch.cli.output import choose_format, open_writer, print_error, stderr_console
from hashmatch.cli.progress import BatchProgress, discover_in_background
from hashmatch.errors import WorkerError
from hashmatch.registry import get_algorithm
from hashmatch.walking import SkipCount, walk_images


def hash_command(
    paths: Annotated[list[str], typer.Argument(help="Image files or directories.")],
    recursive: Annotated[
        bool, typer.Option("-r", "--recursive", help="Descend into subdirectories.")
    ] = False,
    algorithms: Annotated[
        list[str] | None,
        typer.Option(
            "-a",
            "--algorithms",
            help="Comma-separated: pdq, phash, dhash, ahash, whash, md5, sha256, or 'all'."
            " [default: pdq]",
            show_default=False,
        ),
    ] = None,
    output_format: OutputFormatOption = None,
    output: Annotated[
        str | None, typer.Option("-o", "--output", help="Write records to this file.")
    ] = None,
    dihedral: Annotated[
        bool, typer.Option("--dihedral", help="Add PDQ of the 7 rotations/flips (pdq_rotate90...).")
    ] = False,
    exact: Annotated[
        bool,
        typer.Option("--exact", help="Hash full-resolution pixels (slower; fast drifts 0-2 bits)."),
    ] = False,
    workers: WorkersOption = DEFAULT_WORKERS,
    follow_symlinks: Annotated[
        bool,
        typer.Option("--follow-symlinks", help="Follow symbolic links found inside directories."),
    ] = False,
    max_bytes: Annotated[
        int | None, typer.Option(help="Refuse files larger than this many bytes.")
    ] = None,
    max_pixels: Annotated[
        int | None, typer.Option(help="Refuse images declaring more pixels than this.")
    ] = None,
    quiet: Annotated[
        bool, typer.Option("-q", "--quiet", help="No progress bar and no summary.")
    ] = False,
) -> None:
    """Hash image files: one record per file (exit 0 all hashed, 2 if any failed)."""
    names = parse_algorithms(algorithms)
    job = HashJob(names, exact, dihedral, parse_limits(max_bytes, max_pixels))
    fmt = choose_format(output_format, output)
    columns = _columns(names, dihedral)
    writer = open_writer(fmt, columns, output, table_title="hashmatch hash")
    started = time.monotonic()
    failed = written = 0
    stopped: WorkerError | None = None
    with BatchProgress("hashing", ["errors"], enabled=not quiet) as progress:
        walk = walk_images(paths, recursive=recursive, follow_symlinks=follow_symlinks)
        entries = discover_in_background(walk, progress)
        skipped = SkipCount()
        try:
            for outcome in hash_files(skipped.without_skipped(entries), job, workers=workers):
                writer.write(_record(outcome, names, dihedral))
                written += 1
                failed += outcome.error is not None
                progress.advance(errors=int(outcome.error is not None))
        except WorkerError as exc:  # workers keep dying: what was hashed is written
            stopped = exc
        finally:
            writer.close()
    if stopped is not None:
        print_error(stopped)
    if not quiet or stopped is not None:
        elapsed = time.monotonic() - started
        rate = written / elapsed if elapsed > 0 else 0.0
        stderr_console().print(
            f"hashed {written - failed} of {written} files, {failed} failed, {skipped.count}"
            f" skipped (not images or symbolic links) in {elapsed:.1f}s ({rate:.1f} files/s)"
        )
    raise typer.Exit(ExitCode.FAILED if failed or stopped else ExitCode.OK)


def _columns(names: tuple[str, ...], dihedral: bool) -> list[str]:
    columns = ["path", *names]
    for algorithm in map(get_algorithm, names):
        if algorithm.quality_floor is not None:
            columns.append(f"{algorithm.name}_quality")
        if dihedral:
            columns.extend(f"{algorithm.name}_{variant}" for variant in algorithm.variants)
    return [*columns, "width", "height", "error"]


def _record(outcome: HashOutcome, names: tuple[str, ...], dihedral: bool) -> dict[str, Any]:
    result = outcome.result
    record: dict[str, Any] = {"path": outcome.path}
    for name in names:
        record[name] = result[name].hex if result is not None else None
    for algorithm in map(get_algorithm, names):
        if algorithm.quality_floor is not None:
            record[f"{algorithm.name}_quality"] = result.pdq_quality if result is not None else None
        if dihedral:
            variants = result.variants.get(algorithm.name, {}) if result is not None else {}
            for variant in algorithm.variants:
                hashed = variants.get(variant)
                record[f"{algorithm.name}_{variant}"] = hashed.hex if hashed else None
    record["width"] = result.width if result is not None else None
    record["height"] = result.height if result is not None else None
    record["error"] = outcome.error
    return record
