"""How the subcommands' help reads: flags (``--quiet``, ``--help``) take no value, so no value type is shown."""

from __future__ import annotations

from typing import Any

from typer.core import TyperCommand


class Command(TyperCommand):
    """A subcommand whose help lists flags without a value type (typer writes ``<bool>`` beside them)."""

    def get_params(self, ctx: Any) -> list[Any]:
        params = super().get_params(ctx)
        for param in params:
            if getattr(param, "is_flag", False) and not getattr(param, "metavar", None):
                param.metavar = ""
        return params
