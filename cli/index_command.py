"""``hashmatch index build | info | verify | diff``: thin layers over :mod:`hashmatch.index`."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.text import Text

from hashmatch.banks.source import config_sources
from hashmatch.cli.exit_codes import ExitCode
from hashmatch.cli.options import OutputFormatOption, ThresholdOption, parse_thresholds
from hashmatch.cli.output import OutputFormat, open_writer, print_error, stderr_console
from hashmatch.errors import HashmatchError, IndexBuildError
from hashmatch.index.build import BuildOptions, ListSource, Source, build_index
from hashmatch.index.config import BankSourceConfig, BuildConfig, load_config
from hashmatch.index.diff import diff_indexes
from hashmatch.index.inspect import index_info, verify_index
from hashmatch.lists import Exclusions, parse_fraction, read_exclusions
from hashmatch.lists.readers import LIST_FORMATS

app = typer.Typer(
    help="Build, inspect, verify and compare indexes of known hashes.",
    no_args_is_help=True,
    add_completion=False,
)


def _fail(exc: Exception) -> typer.Exit:
    print_error(exc)
    return typer.Exit(ExitCode.FAILED)


@app.command("build")
def build_command(
    lists: Annotated[
        list[Path] | None, typer.Argument(help="Hash list files (CSV, lines, hex, JSONL).")
    ] = None,
    output: Annotated[Path, typer.Option("-o", "--output", help="The index directory.")] = ...,  # type: ignore[assignment]
    config: Annotated[
        Path | None, typer.Option("--config", help="A lists.toml describing lists and defaults.")
    ] = None,
    banks: Annotated[
        Path | None,
        typer.Option(
            "--banks",
            help="Fold in every bank of this bank directory (overrides lists.toml's [banks] path).",
        ),
    ] = None,
    algorithm: Annotated[
        str | None, typer.Option("--algorithm", "-a", help="Algorithm of lists that do not say.")
    ] = None,
    list_name: Annotated[
        str | None, typer.Option("--list-name", help="List name [default: each file's stem].")
    ] = None,
    list_format: Annotated[
        str, typer.Option("--list-format", help=f"auto | {' | '.join(LIST_FORMATS)}.")
    ] = "auto",
    threshold: ThresholdOption = None,
    strict: Annotated[
        bool | None, typer.Option("--strict/--lenient", help="Fail on the first bad line.")
    ] = None,
    max_invalid: Annotated[
        str | None,
        typer.Option(
            help="Fail a list with more invalid lines than this (1% or 0.01). [default: 1%]"
        ),
    ] = None,
    exclude: Annotated[
        list[Path] | None,
        typer.Option("--exclude", help="Hashes or id:ENTRY lines to drop (repeatable)."),
    ] = None,
    allow_empty: Annotated[
        bool, typer.Option("--allow-empty", help="Publish even if no entries remain.")
    ] = False,
    report: Annotated[
        Path | None, typer.Option("--report", help="Also write the build report as JSON here.")
    ] = None,
    quiet: Annotated[bool, typer.Option("-q", "--quiet", help="Print nothing on success.")] = False,
) -> None:
    """Build an index from hash lists and banks and publish it atomically (exit 0 ok, 2
    failed)."""
    try:
        sources, options = _build_plan(
            lists,
            config,
            banks,
            output,
            algorithm,
            list_name,
            list_format,
            threshold,
            strict,
            max_invalid,
            exclude,
            allow_empty,
        )
        console = stderr_console()
        result = build_index(
            sources,
            output,
            options,
            on_wait=lambda: console.print(f"waiting for another build of {output} to finish..."),
        )
    except (HashmatchError, ValueError, OSError) as exc:
        raise _fail(exc) from None
    if report is not None:
        report.write_text(json.dumps(result.to_json(), indent=2) + "\n", encoding="utf-8")
    if not quiet:
        typer.echo(result.render_text())


def _build_plan(
    lists: list[Path] | None,
    config: Path | None,
    banks: Path | None,
    output: Path,
    algorithm: str | None,
    list_name: str | None,
    list_format: str,
    threshold: list[str] | None,
    strict: bool | None,
    max_invalid: str | None,
    exclude: list[Path] | None,
    allow_empty: bool,
) -> tuple[list[Source], BuildOptions]:
    if list_format not in (*LIST_FORMATS, "auto"):
        raise typer.BadParameter(f"unknown list format {list_format!r}", param_hint="--list-format")
    thresholds = parse_thresholds(threshold)
    plan = load_config(config) if config is not None else BuildConfig()
    files = [ListSource(path, list_name, algorithm, list_format) for path in lists or []]
    plan = replace(plan, sources=[*plan.sources, *files])
    if banks is not None:
        if not banks.is_dir():
            raise IndexBuildError(f"{banks}: no bank directory (--banks)")
        plan = replace(plan, banks=replace(plan.banks or BankSourceConfig(), path=banks))
    if not plan.sources and plan.banks is None:
        raise typer.BadParameter("give hash list files, --config or --banks", param_hint="LISTS")
    sources, options = config_sources(plan, output)
    exclusions = Exclusions()
    exclusions.merge(options.exclusions)
    for path in exclude or []:
        exclusions.merge(read_exclusions(path))
    return sources, BuildOptions(
        thresholds={**options.thresholds, **thresholds},
        strict=options.strict if strict is None else strict,
        max_invalid=options.max_invalid if max_invalid is None else parse_fraction(max_invalid),
        exclusions=exclusions,
        allow_empty=options.allow_empty or allow_empty,
        keep_versions=options.keep_versions,
    )


@app.command("info")
def info_command(
    index: Annotated[Path, typer.Argument(help="An index directory.")],
    output_format: OutputFormatOption = None,
) -> None:
    """Show what an index holds: version, counts, thresholds, lists (json: all of it; jsonl
    and csv: one record per algorithm)."""
    try:
        info = index_info(index)
    except HashmatchError as exc:
        raise _fail(exc) from None
    fmt = output_format or OutputFormat.table
    if fmt == OutputFormat.table:
        typer.echo(_info_text(info))
    elif fmt == OutputFormat.json:
        typer.echo(json.dumps(info, indent=2))
    else:
        columns = ["path", "version", "algorithm", "codes", "entries", "threshold", "searched_by"]
        writer = open_writer(fmt, columns)
        for name, data in info["algorithms"].items():
            writer.write(
                {"path": info["path"], "version": info["version"], "algorithm": name}
                | {key: data[key] for key in columns[3:]}
            )
        writer.close()


def _info_text(info: dict[str, Any]) -> str:
    lines = [
        f"index {info['path']}",
        f"  version {info['version']} (created {info['created']}, hashmatch {info['tool_version']},"
        f" format {info['format_version']})",
        f"  {info['entries']} entries, {info['bytes'] / 1e6:.1f} MB",
    ]
    for name, data in info["algorithms"].items():
        search = f"{data['searched_by']} search"
        if data["searched_by"] != data["search"]["kind"]:
            search += f" (its {data['search']['kind']} tables predate format 3: rebuild)"
        lines.append(
            f"  {name}: {data['codes']} unique hashes, {data['entries']} entries, threshold"
            f" {data['threshold']}, {search}"
        )
    for item in info["lists"]:
        accepted = ", ".join(f"{a} {n}" for a, n in item["accepted"].items())
        thresholds = ", ".join(f"{a}={n}" for a, n in item.get("thresholds", {}).items())
        extra = f", thresholds {thresholds}" if thresholds else ""
        lines.append(
            f"  list {item['name']}: {accepted}; rejected {item['rejected']}; excluded"
            f" {item['excluded']}; source {item['source']} (sha256 {item['sha256'][:12]}){extra}"
        )
    lines.append(f"  versions on disk: {', '.join(info['versions_on_disk']) or '-'}")
    return "\n".join(lines)


@app.command("verify")
def verify_command(index: Annotated[Path, typer.Argument(help="An index directory.")]) -> None:
    """Check every checksum and the structure (exit 0 intact, 1 damaged)."""
    problems = verify_index(index)
    if problems:
        console = stderr_console()
        console.print(Text.assemble(("DAMAGED", "bold red"), f" {index}"))
        for problem in problems:
            console.print(f"  {problem}", markup=False)
        raise typer.Exit(ExitCode.FOUND)
    typer.echo(f"ok: {index} ({index_info(index)['version']}) verified")


@app.command("diff")
def diff_command(
    old: Annotated[Path, typer.Argument(help="The older index (or version directory).")],
    new: Annotated[Path, typer.Argument(help="The newer index (or version directory).")],
    output_format: OutputFormatOption = None,
) -> None:
    """Unique hashes added and removed per algorithm between two indexes."""
    try:
        diffs = diff_indexes(old, new)
    except HashmatchError as exc:
        raise _fail(exc) from None
    fmt = output_format or OutputFormat.table
    if fmt == OutputFormat.table:
        for name, diff in diffs.items():
            typer.echo(f"{name}: +{diff.added} -{diff.removed} ({diff.unchanged} unchanged)")
    elif fmt == OutputFormat.json:
        typer.echo(json.dumps({name: vars(diff) for name, diff in diffs.items()}, indent=2))
    else:
        writer = open_writer(fmt, ["algorithm", "added", "removed", "unchanged"])
        for name, diff in diffs.items():
            writer.write({"algorithm": name, **vars(diff)})
        writer.close()
