"""``hashmatch lookup INDEX ALG:HEX...``: search known hashes directly."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from hashmatch.cli.options import parse_thresholds
from hashmatch.cli.output import OutputFormat, open_writer, stderr_console
from hashmatch.errors import HashmatchError
from hashmatch.hashes import Hash

EXIT_NO_MATCH, EXIT_MATCH, EXIT_ERROR = 0, 1, 2


def lookup_command(
    index: Annotated[Path, typer.Argument(help="An index directory.")],
    hashes: Annotated[list[str], typer.Argument(help="Queries as ALGORITHM:HEX, e.g. pdq:f8f8...")],
    output_format: Annotated[
        OutputFormat, typer.Option("--format", "-f", help="jsonl | csv | table.")
    ] = OutputFormat.jsonl,
    threshold: Annotated[
        list[str] | None, typer.Option("--threshold", help="ALG=N for this lookup (repeatable).")
    ] = None,
) -> None:
    """Look hashes up in an index (exit 1 if anything matched, 0 if not, 2 on error)."""
    from hashmatch.index.matcher import Matcher

    thresholds = parse_thresholds(threshold)
    try:
        queries = [_parse_query(text) for text in hashes]
        matcher = Matcher.open(index)
    except (HashmatchError, ValueError) as exc:
        stderr_console().print(f"error: {exc}", markup=False)
        raise typer.Exit(EXIT_ERROR) from None
    columns = ["query", "matches"]
    writer = open_writer(output_format, columns, table_title=f"lookup in {index}")
    matched = False
    try:
        for text, query in queries:
            matches = matcher.lookup({query.algorithm: query}, thresholds=thresholds)
            matched = matched or bool(matches)
            writer.write({"query": text, "matches": [m.to_json() for m in matches]})
    finally:
        writer.close()
    raise typer.Exit(EXIT_MATCH if matched else EXIT_NO_MATCH)


def _parse_query(text: str) -> tuple[str, Hash]:
    algorithm, separator, digits = text.partition(":")
    if not separator:
        raise ValueError(f"{text!r}: expected ALGORITHM:HEX, e.g. pdq:f8f8f0ce...")
    parsed = Hash.from_hex(algorithm.strip().lower(), digits)
    return f"{parsed.algorithm}:{parsed.hex}", parsed
