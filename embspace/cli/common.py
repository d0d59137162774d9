"""What every subcommand shares: the typer app, the consoles and the one-line failure."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Measure and compare the geometry of embedding spaces (CLIP and its kin).")
out = Console()
err = Console(stderr=True)


def fail(message: str) -> None:
    err.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
    raise typer.Exit(2)


def check_writable(path: Path | None) -> None:
    """Refuse an output path whose folder does not exist before any work is done."""
    if path is None or str(path) == "-":
        return
    if path.is_dir():
        fail(f"{path}: is a directory; --json needs a file path")
    if not path.parent.exists():
        fail(f"{path}: folder {path.parent} does not exist")


