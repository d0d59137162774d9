"""The ``embspace`` command: a thin layer over the Python API (what it prints, the API returns).

Bad input ends with one line on stderr (``error: FILE:KEY: problem``) and exit code 2; nothing is written.
Each subcommand lives in its own module and registers itself on the shared :data:`app`.
"""

from __future__ import annotations

from embspace.cli import compare, finetune, measure, plot, report, shift  # noqa: F401  (registers the subcommands)
from embspace.cli.common import app


def main() -> None:
    app()


__all__ = ["app", "main"]
