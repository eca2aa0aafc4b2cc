"""``hashmatch demo``: a synthetic world of known images and re-uploads, scanned end to end."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich import box
from rich.console import Console
from rich.table import Table

if TYPE_CHECKING:
    from hashmatch.index.demo import DemoRow


def demo_command(
    directory: Annotated[
        Path | None,
        typer.Argument(help="Where to write the demo files [default: a new temporary folder]."),
    ] = None,
) -> None:
    """Run the main job on built-in synthetic data: known list, index, scan of uploads."""
    from hashmatch.index.demo import run_demo

    console = Console(highlight=False)
    folder = directory or Path(tempfile.mkdtemp(prefix="hashmatch-demo-"))
    console.print(f"Building a synthetic world in {folder} ...", soft_wrap=True)
    index, rows = run_demo(folder)
    known = sum(1 for _ in (folder / "known").iterdir())
    console.print(
        f"  known/    {known} known images, hashed (PDQ + MD5) into a list\n"
        "  index/    the index built from that list\n"
        f"  uploads/  {len(rows)} uploads: edited copies of the known images,\n"
        "            unrelated images, one broken file\n"
    )
    console.print(_table(rows))
    correct = sum(row.correct for row in rows)
    console.print(
        f"{correct} of {len(rows)} uploads handled correctly. Re-encoded, resized, cropped,"
        " brightened and watermarked copies stay within PDQ's 31-bit threshold; flips and"
        " rotations are caught by PDQ's dihedral variants, letterboxed copies by hashing the"
        " picture inside the border, and the exact copy also by MD5. Unrelated images sit"
        " near 128 of 256 bits away, and the broken file is reported without stopping the scan."
        "\n\nNext:"
    )
    console.print(f"  hashmatch scan {folder / 'uploads'} --index {index} -f table", soft_wrap=True)
    console.print(f"  hashmatch index info {index}", soft_wrap=True)


def _table(rows: list[DemoRow]) -> Table:
    """One row per upload: its name (which says what it was made from and how), the status,
    and why: the entry it matched and how far, or the error. Names and statuses never wrap,
    so the table reads at 80 columns; the explanation wraps if it must."""
    table = Table(title="hashmatch scan uploads/ --index index/", box=box.SIMPLE_HEAD)
    longest = max(len(row.upload.path.name) for row in rows)
    table.add_column("upload", no_wrap=True, min_width=longest)
    table.add_column("status", no_wrap=True, min_width=len("no_match"))
    table.add_column("why: the entry it matched, or the error")
    for row in rows:
        result = row.result
        best = result.matches[0] if result.matches else None
        if best is not None:
            why = f"{best.entry_id}  {best.algorithm}, {best.distance} bits"
            if best.variant:
                why += f", {best.variant}"
        else:
            why = result.error or f"{row.upload.edit}: nothing within threshold"
        status = {"match": "[bold red]MATCH[/]", "error": "[yellow]error[/]"}.get(
            result.status, result.status
        )
        table.add_row(row.upload.path.name, status, why)
    return table
