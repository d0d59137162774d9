"""Errors that the command line turns into one clear line and exit code 2."""

from __future__ import annotations

import unicodedata


class InputError(ValueError):
    """Bad input: a file, key or row that cannot be measured.

    The message names the place (file, key, row) and the problem in one line, e.g.
    ``coco.npz:img: 3 rows contain NaN or Inf (first at row 17); pass --drop-invalid to drop them``. Control
    characters in either part (a file name may hold a newline) are escaped, so the message stays one line.
    """

    def __init__(self, where: str, problem: str) -> None:
        self.where = printable(where)
        self.problem = printable(problem)
        super().__init__(f"{self.where}: {self.problem}" if self.where else self.problem)


def printable(text: str) -> str:
    """``text`` with control characters (newline, carriage return, escape, …) written as ``\\n``, ``\\x1b``: one
    line that cannot move the cursor or colour a terminal (file names may hold any of them)."""
    if text.isprintable():
        return text
    return "".join(char.encode("unicode_escape").decode("ascii") if _control(char) else char for char in text)


def _control(char: str) -> bool:
    return unicodedata.category(char) in ("Cc", "Cf", "Zl", "Zp") and char != "\u200d"


_ASCII = {"×": "x", "→": "->", "←": "<-", "↔": "<->", "α": "alpha", "λ": "lambda", "Δ": "Delta", "δ": "delta",
          "μ": "mu", "σ": "sigma", "τ": "tau", "ε": "eps", "‖": "||", "—": "-", "–": "-", "−": "-", "…": "...",
          "≥": ">=", "≤": "<=", "≠": "!=", "≈": "~", "±": "+/-", "·": "*", "²": "^2", "³": "^3", "√": "sqrt",
          "∞": "inf", "°": " deg", "’": "'", "‘": "'", "“": '"', "”": '"', "•": "*", "✓": "ok", "✗": "x",
          "\u00a0": " ", "\u2009": " ", "\u202f": " "}
_ASCII_TABLE = str.maketrans(_ASCII)


def ascii_text(text: str) -> str:
    """``text`` for a terminal that shows ASCII only: the symbols of tables and messages spelled out (× → x,
    → → ->, α → alpha, — → -), accents dropped (é → e), anything else escaped (ё → \\u0451)."""
    if text.isascii():
        return text
    spelled = text.translate(_ASCII_TABLE)
    plain = "".join(char for char in unicodedata.normalize("NFKD", spelled) if not unicodedata.combining(char))
    return plain.encode("ascii", "backslashreplace").decode("ascii")
