"""Errors that the command line turns into one clear line and exit code 2."""

from __future__ import annotations


class InputError(ValueError):
    """Bad input: a file, key or row that cannot be measured.

    The message names the place (file, key, row) and the problem in one line, e.g.
    ``coco.npz:img: 3 rows contain NaN or Inf (first at row 17); pass --drop-invalid to drop them``.
    """

    def __init__(self, where: str, problem: str) -> None:
        self.where = where
        self.problem = problem
        super().__init__(f"{where}: {problem}" if where else problem)
