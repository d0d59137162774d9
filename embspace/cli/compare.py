"""``embspace compare``: each metric's change between two reports."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from embspace.cli.common import app, check_writable, err, fail, out
from embspace.errors import InputError


@app.command()
def compare(
    before: Annotated[Path, typer.Argument(help="Report JSON before.")],
    after: Annotated[Path, typer.Argument(help="Report JSON after.")],
    json_path: Annotated[Path | None, typer.Option("--json", help="Write the comparison as JSON here.")] = None,
) -> None:
    """Show each metric's change between two reports."""
    import json

    import embspace
    from embspace.io.atomic import atomic_write_text

    check_writable(json_path)
    try:
        comparison = embspace.compare(str(before), str(after))
    except InputError as exc:
        fail(str(exc))
    for warning in comparison.warnings:
        err.print(f"[yellow]warning:[/] {warning}", highlight=False)
    table = Table(show_edge=False, header_style="bold", pad_edge=False)
    for column, justify in (("metric", "left"), ("before", "right"), ("after", "right"), ("change", "right")):
        table.add_column(column, justify=justify)
    for change in comparison.changes:
        cells = ["—" if v is None else f"{v:.4f}" for v in (change.before, change.after)]
        delta = "—" if change.delta is None else f"{change.delta:+.4f}"
        table.add_row(change.path, *cells, delta)
    out.print(table)
    if json_path is not None:
        atomic_write_text(json_path, json.dumps(comparison.to_dict(), indent=2) + "\n")
