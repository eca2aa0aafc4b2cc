"""``hashmatch scan``: match every image under the given paths against an index.

Exit codes (:class:`~hashmatch.cli.exit_codes.ExitCode`): 0 nothing matched, 1 at least one
match, 2 errors occurred and nothing matched, 130 interrupted.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

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
from hashmatch.cli.progress import BatchProgress, discover_in_background
from hashmatch.errors import HashmatchError, WorkerError
from hashmatch.index.results import MatchResult
from hashmatch.walking import SkipCount, walk_images


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
) -> None:
    """Scan images against an index: one record per file (exit 0 clean, 1 match, 2 errors).

    Exit codes: 0 no match, 1 at least one match, 2 errors occurred and nothing matched,
    130 interrupted (records so far are kept and the summary printed).
    """
    from hashmatch.index.matcher import Matcher
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
    try:
        matcher = Matcher.open(index)
    except HashmatchError as exc:
        print_error(exc)
        raise typer.Exit(ExitCode.FAILED) from None
    columns = _columns(matcher.algorithms if names is None else list(names), with_hashes, fmt)
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
    stopped: WorkerError | None = None
    with BatchProgress("scanning", ["matched", "errors"], enabled=not quiet) as progress:
        walk = walk_images(paths, recursive=recursive, follow_symlinks=follow_symlinks)
        skips = SkipCount()
        found = skips.without_skipped(discover_in_background(walk, progress))
        entries = (entry for entry in found if entry.path not in done)
        try:
            for result in matcher.match_many(entries, options, workers=workers):
                record = _record(str(result.source), result, with_hashes, fmt)
                tally.files += 1
                tally.matched += result.status == "match"
                tally.low_quality += result.status == "low_quality"
                tally.errors += result.status == "error"
                if fmt != OutputFormat.table or result.status in ("match", "error"):
                    writer.write(record)
                progress.advance(
                    matched=int(result.status == "match"), errors=int(result.status == "error")
                )
        except KeyboardInterrupt:
            interrupted = True
        except WorkerError as exc:  # workers keep dying: what was scanned is written
            stopped = exc
        finally:
            writer.close()
    tally.skipped = skips.count
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


def _columns(algorithms: list[str], with_hashes: bool, fmt: OutputFormat) -> list[str]:
    columns = ["path", "status", "matches", "error"]
    if with_hashes:
        columns += ["hashes"] if fmt == OutputFormat.jsonl else list(algorithms)
        columns.append("pdq_quality")
    return columns


def _record(path: str, result: MatchResult, with_hashes: bool, fmt: OutputFormat) -> dict[str, Any]:
    """One file's record: ``matches`` as objects (jsonl, csv as JSON) or a summary (table)."""
    matches: Any = [
        {key: value for key, value in m.to_json().items() if key != "variant" or value}
        for m in result.matches
    ]
    if fmt == OutputFormat.table:
        matches = "; ".join(
            f"{m.list}/{m.entry_id} ({m.algorithm} {m.distance}"
            + (f", {m.variant})" if m.variant else ")")
            for m in result.matches
        )
    record: dict[str, Any] = {
        "path": os.fspath(path),
        "status": result.status,
        "matches": matches,
        "error": result.error,
    }
    if with_hashes:
        hashes = {name: h.hex for name, h in result.hashes.items()}
        if fmt == OutputFormat.jsonl:
            record["hashes"] = hashes
        else:
            record.update(hashes)
        record["pdq_quality"] = result.quality
    return record


def _summary(console: Console, tally: ScanTally, elapsed: float, head: str) -> None:
    rate = tally.files / elapsed if elapsed > 0 else 0.0
    resumed = f" ({tally.resumed} done earlier)" if tally.resumed else ""
    console.print(
        f"{head} {tally.files} files{resumed}: {tally.matched} matched, {tally.low_quality} low"
        f" quality, {tally.errors} errors, {tally.skipped} skipped (not images or symbolic"
        f" links) in {elapsed:.1f}s ({rate:.1f} files/s)",
        markup=False,
    )
