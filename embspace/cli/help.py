"""How the subcommands' help reads: flags (``--quiet``, ``--help``) take no value, so no value type is shown; the
usage line names the arguments as the docs do (``compare [OPTIONS] BEFORE AFTER``, ``measure [OPTIONS] [SPEC]...``)."""

from __future__ import annotations

from typing import Any

from typer.core import TyperCommand


class Command(TyperCommand):
    """A subcommand whose help lists flags without a value type (typer writes ``<bool>`` beside them) and whose usage
    line writes a required argument as ``NAME``, an optional one as ``[NAME]``, a repeated one with ``...``."""

    def get_params(self, ctx: Any) -> list[Any]:
        params = super().get_params(ctx)
        for param in params:
            if getattr(param, "is_flag", False) and not getattr(param, "metavar", None):
                param.metavar = ""
        return params

    def collect_usage_pieces(self, ctx: Any) -> list[str]:
        pieces = [self.options_metavar] if self.options_metavar else []
        for param in self.get_params(ctx):
            if getattr(param, "param_type_name", "") != "argument":
                continue
            name = param.metavar or (param.name or "").upper()
            name = name if param.required else f"[{name}]"
            pieces.append(name + ("..." if param.nargs != 1 else ""))
        return pieces
