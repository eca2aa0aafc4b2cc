"""The ``hashmatch`` command: a Typer app whose commands are thin layers over the library."""

from __future__ import annotations

import warnings

import typer
from PIL import Image

import hashmatch
from hashmatch.cli import (
    bank_command,
    demo_command,
    eval_command,
    hash_command,
    index_command,
    lookup_command,
    scan_command,
    serve_command,
)

app = typer.Typer(
    name="hashmatch",
    help="Find known images by perceptual hash: hash images, build indexes, scan uploads.",
    no_args_is_help=True,
    add_completion=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _show_version(value: bool) -> None:
    if value:
        typer.echo(f"hashmatch {hashmatch.__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", callback=_show_version, is_eager=True, help="Print the version."
    ),
) -> None:
    """Find known images by perceptual hash: hash images, build indexes, scan uploads."""


app.command("demo")(demo_command.demo_command)
app.command("hash")(hash_command.hash_command)
app.command("scan")(scan_command.scan_command)
app.add_typer(index_command.app, name="index")
app.add_typer(bank_command.app, name="bank")
app.command("lookup")(lookup_command.lookup_command)
app.command("eval")(eval_command.eval_command)
app.command("serve")(serve_command.serve_command)


def main() -> None:
    """Console-script entry point."""
    # Our own pixel limit (ImageLimits.max_pixels) decides what is too large; Pillow's
    # warning below it is noise in a batch report.
    warnings.simplefilter("ignore", Image.DecompressionBombWarning)
    app()
