"""``hashmatch lookup INDEX ALG:HEX...``: search known hashes directly."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from hashmatch.cli.exit_codes import ExitCode
from hashmatch.cli.options import OutputFormatOption, ThresholdOption, parse_thresholds
from hashmatch.cli.output import choose_format, open_writer, print_error
from hashmatch.errors import HashmatchError
from hashmatch.hashes import Hash


def lookup_command(
    index: Annotated[Path, typer.Argument(help="An index directory.")],
    hashes: Annotated[list[str], typer.Argument(help="Queries as ALGORITHM:HEX, e.g. pdq:f8f8...")],
    output_format: OutputFormatOption = None,
    threshold: ThresholdOption = None,
) -> None:
    """Look hashes up in an index and its live banks (exit 1 if anything matched, 0 if not,
    2 on error)."""
    from hashmatch.banks import live_banks
    from hashmatch.index.matcher import Matcher

    thresholds = parse_thresholds(threshold)
    try:
        queries = [_parse_query(text) for text in hashes]
        matcher = Matcher.open(index, banks=live_banks(index))
    except (HashmatchError, ValueError) as exc:
        print_error(exc)
        raise typer.Exit(ExitCode.FAILED) from None
    columns = ["query", "matches"]
    fmt = choose_format(output_format, None)
    writer = open_writer(fmt, columns, table_title=f"lookup in {index}")
    matched = False
    try:
        for text, query in queries:
            matches = matcher.lookup({query.algorithm: query}, thresholds=thresholds)
            matched = matched or bool(matches)
            writer.write({"query": text, "matches": [m.to_json() for m in matches]})
    finally:
        writer.close()
    raise typer.Exit(ExitCode.FOUND if matched else ExitCode.OK)


def _parse_query(text: str) -> tuple[str, Hash]:
    algorithm, separator, digits = text.partition(":")
    if not separator:
        raise ValueError(f"{text!r}: expected ALGORITHM:HEX, e.g. pdq:f8f8f0ce...")
    parsed = Hash.from_hex(algorithm.strip().lower(), digits)
    return f"{parsed.algorithm}:{parsed.hex}", parsed
