"""Each rank's shard of the rows: validated on that rank alone, read once, normalised, held on its device.

Validation is the single-process :func:`~embspace.io.validate.validate` split across ranks: each rank scans only
its rows for NaN / Inf and zero norms, the bad row numbers (global) are exchanged, and every rank then refuses the
input with the same message or drops the same rows; with rows dropped, the shards are cut from the rows that stay.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator

import numpy as np
import torch

from embspace.distributed.group import Group
from embspace.distributed.plan import shard_bounds
from embspace.embeddings import Embeddings
from embspace.errors import InputError
from embspace.io.validate import BadRows, _require_equal, refuse_or_drop, scan
from embspace.kernels.budget import MAX_BLOCK_ROWS
from embspace.kernels.rows import ResidentRows, Rows, normalize_block


def row_range(embeddings: Embeddings, start: int, stop: int) -> Embeddings:
    """Rows [start, stop) of ``embeddings`` as their own lazily read matrix (only those rows are ever read)."""

    def read(lo: int, hi: int) -> torch.Tensor:
        return embeddings.read(start + lo, start + min(hi, stop - start))

    return Embeddings(embeddings.source, stop - start, embeddings.dim, embeddings.dtype, read, embeddings.dropped)


def validate_shards(group: Group, modalities: dict[str, Embeddings], *, paired: bool, same_dim: bool,
                    drop_invalid: bool, chunk_rows: int = MAX_BLOCK_ROWS) -> dict[str, Embeddings]:
    """:func:`~embspace.io.validate.validate` with each rank scanning only its own shard of the rows."""
    items = list(modalities.items())
    if paired:
        _require_equal(items, lambda e: e.n, "rows", "paired modalities need the same number of rows")
    if same_dim:
        _require_equal(items, lambda e: e.dim, "dims", "these metrics need the same dimension in every modality")

    def scan_own() -> dict[str, tuple[np.ndarray, np.ndarray]]:
        found = {}
        for name, emb in items:
            start, stop = shard_bounds(emb.n, group.world)[group.rank]
            try:
                bad = scan(row_range(emb, start, stop), chunk_rows)
            except OSError as exc:
                raise InputError(f"{emb.source} rows {start}:{stop}", f"cannot be read on rank {group.rank}: {exc}"
                                 ) from None
            found[name] = (bad.nonfinite + start, bad.zero + start)
        return found

    local = group.agree("reading the shards", scan_own)
    gathered = group.all_gather_objects(local, "exchanging the invalid rows")
    bad = {name: BadRows(np.concatenate([part[name][0] for part in gathered]).astype(np.int64),
                         np.concatenate([part[name][1] for part in gathered]).astype(np.int64))
           for name, _ in items}
    return refuse_or_drop(items, bad, paired=paired, drop_invalid=drop_invalid)


def resident_shard(group: Group, embeddings: Embeddings, device: torch.device, dtype: torch.dtype, *,
                   require_normalized: bool, chunk_rows: int = MAX_BLOCK_ROWS) -> ResidentRows:
    """This rank's rows of ``embeddings``, normalised and held on ``device`` (a received shard needs as much room).

    Row numbers in error messages are global. Shards are always resident: the ring sends them whole.
    """
    start, stop = shard_bounds(embeddings.n, group.world)[group.rank]
    shard = row_range(embeddings, start, stop)

    def read() -> ResidentRows:
        out = torch.empty((shard.n, shard.dim), dtype=dtype, device=device)  # (n_r, D) unit rows
        for first, raw in shard.chunks(chunk_rows):
            unit = normalize_block(raw.to(device), shard.source, start + first, require_normalized, dtype)
            out[first : first + len(raw)] = unit.to(dtype)
        return ResidentRows(shard.source, shard.n, shard.dim, device, dtype, max_rows=chunk_rows, data=out)

    return group.agree(f"{embeddings.source} rows {start}:{stop}", read)


@dataclasses.dataclass
class PickedRows(Rows):
    """Some rows (``index``, sorted, global numbers) of an N-row matrix, e.g. gathered on rank 0.

    Only :meth:`blocks` is meaningful: it yields the runs of consecutive held rows, which is all that
    :func:`~embspace.metrics.separability.gather_rows` reads for an index within ``index``.
    """

    index: np.ndarray | None = None
    data: torch.Tensor | None = None  # (len(index), D)

    def block(self, start: int, stop: int) -> torch.Tensor:
        lo, hi = np.searchsorted(self.index, [start, stop])
        if hi - lo != stop - start:
            raise IndexError(f"rows {start}:{stop} are not all held")
        return self.data[lo:hi]

    def blocks(self, rows: int) -> Iterator[tuple[int, torch.Tensor]]:
        if len(self.index) == 0:
            return
        breaks = np.flatnonzero(np.diff(self.index) != 1) + 1
        for lo, hi in zip(np.r_[0, breaks], np.r_[breaks, len(self.index)], strict=True):
            for first in range(lo, hi, rows):
                yield int(self.index[first]), self.data[first : min(first + rows, hi)]
