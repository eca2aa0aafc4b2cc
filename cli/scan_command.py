"""``hashmatch scan``: match every image under the given paths against an index.

Exit codes (:class:`~hashmatch.cli.exit_codes.ExitCode`): 0 nothing matched, 1 at least one
match, 2 errors occurred and nothing matched, 130 interrupted.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from hashmatch.cli.exit_codes import ExitCode
from hashmatch.cli.options import (
    DEFAULT_WORKERS,
    DihedralOption,
    OutputFormatOption,
    RecoverOption,
    ThresholdOption,
    TrimBordersOption,
    WorkersOption,
    parse_algorithms,
    parse_limits,
    parse_thresholds,
)
from hashmatch.cli.output import (
    OutputFormat,
    choose_format,
    open_writer,
    print_error,
    stderr_console,
)
from hashmatch.cli.progress import BatchProgress
from hashmatch.cli.scan_engines import Engine, LocalEngine, RayEngine, ScanEngine, ScanInput
from hashmatch.cluster.pipeline import DEFAULT_BATCH_SIZE
from hashmatch.errors import ClusterError, HashmatchError, WorkerError
from hashmatch.index.scan_records import RecordStyle, record_columns, restyled


@dataclass
class ScanTally:
    files: int = 0
    matched: int = 0
    low_quality: int = 0
    errors: int = 0
    skipped: int = 0
    resumed: int = 0


def scan_command(
    paths: Annotated[list[str], typer.Argument(help="Image files or directories.")],
    index: Annotated[Path, typer.Option("--index", "-i", help="The index to match against.")],
    recursive: Annotated[
        bool, typer.Option("-r", "--recursive", help="Descend into subdirectories.")
    ] = False,
    workers: WorkersOption = DEFAULT_WORKERS,
    output_format: OutputFormatOption = None,
    output: Annotated[
        str | None, typer.Option("-o", "--output", help="Write records here.")
    ] = None,
    algorithms: Annotated[
        list[str] | None,
        typer.Option("-a", "--algorithms", help="Algorithms to match [default: all in the index]."),
    ] = None,
    threshold: ThresholdOption = None,
    dihedral: DihedralOption = True,
    trim_borders: TrimBordersOption = True,
    recover: RecoverOption = True,
    resume: Annotated[
        Path | None,
        typer.Option("--resume", help="Skip paths already in this jsonl output and append to it."),
    ] = None,
    with_hashes: Annotated[
        bool, typer.Option("--with-hashes", help="Add each file's hashes to its record.")
    ] = False,
    exact: Annotated[bool, typer.Option("--exact", help="Hash full-resolution pixels.")] = False,
    follow_symlinks: Annotated[
        bool, typer.Option("--follow-symlinks", help="Follow symbolic links inside directories.")
    ] = False,
    max_bytes: Annotated[int | None, typer.Option(help="Refuse files larger than this.")] = None,
    max_pixels: Annotated[int | None, typer.Option(help="Refuse images with more pixels.")] = None,
    time_limit: Annotated[
        float,
        typer.Option(
            "--time-limit",
            min=0,
            help="Seconds one file may take to decode and hash (0: no limit); "
            "slower files are reported as timeout errors.",
        ),
    ] = 30.0,
    quiet: Annotated[
        bool, typer.Option("-q", "--quiet", help="No progress bar or summary.")
    ] = False,
    engine: Annotated[
        Engine,
        typer.Option(
            "--engine",
            help="local: worker processes here; ray: a Ray cluster (needs hashmatch[ray]).",
        ),
    ] = Engine.local,
    ray_address: Annotated[
        str | None,
        typer.Option(
            "--ray-address",
            envvar="RAY_ADDRESS",
            help="The Ray cluster to join (auto, HOST:6379, ray://HOST:10001)"
            " [default: start a local Ray].",
        ),
    ] = None,
    actors: Annotated[
        int | None,
        typer.Option(
            "--actors",
            min=1,
            help="Ray actors, each with a Matcher and --cpus-per-actor hashing processes"
            " [default: as many as fill every CPU: one per node].",
        ),
    ] = None,
    cpus_per_actor: Annotated[
        int | None,
        typer.Option(
            "--cpus-per-actor",
            min=1,
            help="Hashing processes (and CPUs) per Ray actor [default: the smallest node's CPUs].",
        ),
    ] = None,
    batch_size: Annotated[
        int, typer.Option("--batch-size", min=1, help="Files per Ray actor call.")
    ] = DEFAULT_BATCH_SIZE,
) -> None:
    """Scan images against an index: one record per file (exit 0 clean, 1 match, 2 errors).

    Exit codes: 0 no match, 1 at least one match, 2 errors occurred and nothing matched,
    130 interrupted (records so far are kept and the summary printed).
    """
    from hashmatch.index.options import MatchOptions

    names = parse_algorithms(algorithms) if algorithms else None
    options = MatchOptions(
        algorithms=names,
        thresholds=parse_thresholds(threshold),
        dihedral=dihedral,
        trim_borders=trim_borders,
        recover=recover,
        exact=exact,
        limits=parse_limits(max_bytes, max_pixels),
        time_limit=time_limit,
    )
    fmt, output, done = _output_plan(output_format, output, resume)
    console = stderr_console()
    scan = ScanInput(paths, recursive, follow_symlinks, done, with_hashes)
    try:
        source: ScanEngine
        if engine == Engine.ray:
            source = RayEngine(
                index,
                scan,
                options,
                address=ray_address,
                actors=actors,
                cpus_per_actor=cpus_per_actor,
                batch_size=batch_size,
            )
        else:
            source = LocalEngine(index, scan, options, workers)
    except HashmatchError as exc:
        print_error(exc)
        raise typer.Exit(ExitCode.FAILED) from None
    style: RecordStyle = "table" if fmt == OutputFormat.table else "nested"
    if fmt == OutputFormat.csv:
        style = "flat"
    columns = record_columns(source.algorithms, with_hashes, style)
    writer = open_writer(
        fmt,
        columns,
        output,
        append=resume is not None,
        table_title=f"hashmatch scan against {index}",
    )
    tally = ScanTally(resumed=len(done))
    started = time.monotonic()
    interrupted = False
    stopped: HashmatchError | None = None
    with BatchProgress("scanning", ["matched", "errors"], enabled=not quiet) as progress:
        try:
            for record in source.records(progress):
                status = record["status"]
                tally.files += 1
                tally.matched += status == "match"
                tally.low_quality += status == "low_quality"
                tally.errors += status == "error"
                if fmt != OutputFormat.table or status in ("match", "error"):
                    writer.write(restyled(record, style))
                progress.advance(matched=int(status == "match"), errors=int(status == "error"))
        except KeyboardInterrupt:
            interrupted = True
        except (WorkerError, ClusterError) as exc:  # what was scanned is written
            stopped = exc
        finally:
            writer.close()
    tally.skipped = source.skipped
    if stopped is not None:
        print_error(stopped)
    ended = "interrupted after" if interrupted else "stopped after" if stopped else "scanned"
    if not quiet or ended != "scanned":
        _summary(console, tally, time.monotonic() - started, ended)
    if interrupted:
        raise typer.Exit(ExitCode.INTERRUPTED)
    if stopped is not None:
        raise typer.Exit(ExitCode.FAILED)
    if tally.matched:
        raise typer.Exit(ExitCode.FOUND)
    raise typer.Exit(ExitCode.FAILED if tally.errors else ExitCode.OK)


def _output_plan(
    output_format: OutputFormat | None, output: str | None, resume: Path | None
) -> tuple[OutputFormat, str | None, set[str]]:
    if resume is None:
        return choose_format(output_format, output), output, set()
    if output_format not in (None, OutputFormat.jsonl):
        raise typer.BadParameter("--resume works with jsonl output", param_hint="--resume")
    if output is not None and Path(output) != resume:
        raise typer.BadParameter("--resume FILE is also the output; drop -o", param_hint="--resume")
    return OutputFormat.jsonl, str(resume), _recorded_paths(resume)


def _recorded_paths(path: Path) -> set[str]:
    """Paths already in a jsonl output; a half-written last line (a killed scan) is cut off."""
    if not path.exists():
        return set()
    data = path.read_bytes()
    complete = data[: data.rfind(b"\n") + 1]
    if len(complete) != len(data):
        with open(path, "r+b") as file:
            file.truncate(len(complete))
    done = set()
    for line in complete.splitlines():
        try:
            done.add(json.loads(line)["path"])
        except (ValueError, KeyError, TypeError):
            continue
    return done


def _summary(console: Console, tally: ScanTally, elapsed: float, head: str) -> None:
    rate = tally.files / elapsed if elapsed > 0 else 0.0
    resumed = f" ({tally.resumed} done earlier)" if tally.resumed else ""
    console.print(
        f"{head} {tally.files} files{resumed}: {tally.matched} matched, {tally.low_quality} low"
        f" quality, {tally.errors} errors, {tally.skipped} skipped (not images or symbolic"
        f" links) in {elapsed:.1f}s ({rate:.1f} files/s)",
        markup=False,
    )
