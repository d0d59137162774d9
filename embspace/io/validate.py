"""Scan modalities for rows that cannot be measured (NaN / Inf, zero norm) and check paired shapes."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from embspace.embeddings import Embeddings
from embspace.errors import InputError

DROP_HINT = "pass --drop-invalid to drop them"


@dataclass(frozen=True)
class BadRows:
    """Row indices (sorted) of one modality that hold NaN / Inf, or that are all zeros."""

    nonfinite: np.ndarray
    zero: np.ndarray

    @property
    def all(self) -> np.ndarray:
        return np.union1d(self.nonfinite, self.zero)

    def describe(self) -> str:
        """``3 rows contain NaN or Inf (first at row 17)`` and/or the zero-norm rows, or '' when none."""
        parts = []
        if len(self.nonfinite):
            parts.append(f"{_rows(len(self.nonfinite))} NaN or Inf (first at row {self.nonfinite[0]})")
        if len(self.zero):
            parts.append(f"{len(self.zero)} {'row has' if len(self.zero) == 1 else 'rows have'} zero norm and "
                         f"cannot be normalised (first at row {self.zero[0]})")
        return " and ".join(parts)


def _rows(count: int) -> str:
    return f"{count} row contains" if count == 1 else f"{count} rows contain"


SCAN_BYTES = 4 << 20
"""Stored bytes per chunk of the scan at least (with its two boolean masks, ~1.5× that is held): a small memory
budget, whose row blocks may be a few hundred rows, does not make the scan pay a read and four tensor operations
per few hundred rows."""


def scan_rows(embeddings: Embeddings, chunk_rows: int) -> int:
    """Rows per chunk of the scan: ``chunk_rows``, or more where that holds fewer than :data:`SCAN_BYTES`."""
    row_bytes = max(embeddings.dim * embeddings.dtype.itemsize, 1)
    return max(int(chunk_rows), SCAN_BYTES // row_bytes, 1)


def scan(embeddings: Embeddings, chunk_rows: int = 65_536) -> BadRows:
    """Find bad rows chunk by chunk (the whole matrix is never held at once; chunks of :func:`scan_rows`)."""
    nonfinite: list[np.ndarray] = []
    zero: list[np.ndarray] = []
    for start, block in embeddings.chunks(scan_rows(embeddings, chunk_rows)):  # block: (rows, D)
        if block.dtype == torch.bfloat16:  # numpy has no bfloat16
            finite = torch.isfinite(block).all(dim=1).numpy()  # (rows,)
            all_zero = (block == 0).all(dim=1).numpy() & finite  # (rows,)
        else:  # numpy: one thread, no per-call overhead of a thread pool on small blocks
            values = block.numpy()
            finite = np.isfinite(values).all(axis=1)  # (rows,)
            all_zero = ~values.any(axis=1) & finite  # (rows,)
        nonfinite.append(np.flatnonzero(~finite) + start)
        zero.append(np.flatnonzero(all_zero) + start)
    empty = np.empty(0, dtype=np.int64)
    return BadRows(np.concatenate(nonfinite) if nonfinite else empty, np.concatenate(zero) if zero else empty)


def validate(modalities: dict[str, Embeddings], *, paired: bool = True, same_dim: bool = False,
             drop_invalid: bool = False, chunk_rows: int = 65_536, check_rows: bool = True) -> dict[str, Embeddings]:
    """Check the modalities and return them, with invalid rows dropped when ``drop_invalid`` is set.

    ``paired`` requires equal row counts (row i of each modality is one pair) and drops the union of bad rows
    from every modality; ``same_dim`` requires equal dimensions. Without ``drop_invalid`` any bad row is an
    :class:`InputError`; with it, the returned :class:`Embeddings` carry ``dropped`` and at least 2 rows must stay.
    ``check_rows=False`` checks the shapes only: the rows are then validated where they are first read (the O(N·D)
    pass of a measurement, :mod:`embspace.row_pass`, refuses a bad row with the same message).
    """
    items = list(modalities.items())
    if paired:
        _require_equal(items, lambda e: e.n, "rows", "paired modalities need the same number of rows")
    if same_dim:
        _require_equal(items, lambda e: e.dim, "dims", "these metrics need the same dimension in every modality")
    if not check_rows:
        return dict(items)
    bad = {name: scan(embeddings, chunk_rows) for name, embeddings in items}
    return refuse_or_drop(items, bad, paired=paired, drop_invalid=drop_invalid)


def refuse_or_drop(items: list[tuple[str, Embeddings]], bad: dict[str, BadRows], *, paired: bool,
                   drop_invalid: bool) -> dict[str, Embeddings]:
    """Refuse the first modality with bad rows, or drop them (the union over modalities when ``paired``)."""
    if not drop_invalid:
        for name, embeddings in items:
            described = bad[name].describe()
            if described:
                raise InputError(embeddings.source, f"{described}; {DROP_HINT}")
        return dict(items)
    if paired and items:
        union = np.unique(np.concatenate([rows.all for rows in bad.values()]))
        drop = {name: union for name in bad}
    else:
        drop = {name: rows.all for name, rows in bad.items()}
    return {name: _drop(embeddings, drop[name]) for name, embeddings in items}


def _drop(embeddings: Embeddings, rows: np.ndarray) -> Embeddings:
    """``embeddings`` without ``rows`` (sorted indices); refuses when fewer than 2 rows would remain."""
    if len(rows) == 0:
        return embeddings
    keep = np.setdiff1d(np.arange(embeddings.n, dtype=np.int64), rows, assume_unique=True)  # (N - dropped,)
    if len(keep) < 2:
        raise InputError(embeddings.source, f"only {len(keep)} valid row{'s' if len(keep) != 1 else ''} left after "
                                            f"dropping {len(rows)} invalid rows; need at least 2")
    taken = embeddings.take(keep)
    return dataclasses.replace(taken, dropped=embeddings.dropped + len(rows))


def _require_equal(items: list[tuple[str, Embeddings]], size: Callable[[Embeddings], int], unit: str,
                   why: str) -> None:
    """Refuse when ``size`` differs between modalities, naming the first two that disagree."""
    if not items:
        return
    first = items[0][1]
    for _, other in items[1:]:
        if size(other) != size(first):
            raise InputError(first.source, f"has {size(first)} {unit} but {other.source} has {size(other)}; {why}")
