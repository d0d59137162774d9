"""Reductions of a cross problem whose relevant pairs are given by item ids (many-to-many pairs), and the best
non-partner similarity of a 1:1 problem.

Row i of X and column j of Y are relevant to each other when ``item_x[i] == item_y[j]`` (an image and each of its
captions; for 1:1 pairs item_x = item_y = arange(N)). A query's best relevant similarity p is taken in a first
pass (:func:`best_relevant`, only the tiles that hold a relevant pair), from the very tiles the second pass
compares against it (same blocks, same tile product), so a pair is never compared with a differently rounded copy
of itself. The second pass (:class:`GroupedRanks`, streamed by :func:`~embspace.kernels.engine.stream_pairs`)
counts per row and per column: non-relevant candidates above p (``above``), equal to p (``ties``), relevant
candidates equal to p (``level``), and the best non-relevant similarity (``best_other``): O(N + M) state, exact,
whatever the tile; counts do not depend on tie-breaking, so no order among equal similarities is needed.
:class:`GroupedHistogram` splits a histogram of the cross pairs into relevant and non-relevant ones.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import torch

from embspace.kernels.blocks import TileBlocks
from embspace.kernels.pairwise import Histogram, Reduction, row_chunks, tile_product
from embspace.kernels.rows import Rows


def best_relevant(x: Rows, y: Rows, item_x: torch.Tensor, item_y: torch.Tensor, tile: int) -> tuple[torch.Tensor,
                                                                                                     torch.Tensor]:
    """p_i = max{s_ij : item_x[i] == item_y[j]} for every row and p_j likewise for every column (float64; −inf for
    a row without a relevant column), from the tiles of :func:`~embspace.kernels.pairwise.stream_torch`'s grid
    that hold a relevant pair."""
    best_x = torch.full((x.n,), -math.inf, dtype=torch.float64, device=x.device)
    best_y = torch.full((y.n,), -math.inf, dtype=torch.float64, device=x.device)
    ix, iy = item_x.cpu().numpy(), item_y.cpu().numpy()
    for r0 in range(0, x.n, tile):
        r1 = min(r0 + tile, x.n)
        rows = None
        block_items = np.unique(ix[r0:r1])
        for c0 in range(0, y.n, tile):
            c1 = min(c0 + tile, y.n)
            if not np.isin(iy[c0:c1], block_items).any():
                continue
            rows = x.block(r0, r1) if rows is None else rows
            sim = tile_product(rows, y.block(c0, c1))  # (R, C), rounded as the streamed tile is
            relevant = item_x[r0:r1, None] == item_y[None, c0:c1]
            masked = torch.where(relevant, sim.double(), -math.inf)
            best_x[r0:r1] = torch.maximum(best_x[r0:r1], masked.max(1).values)
            best_y[c0:c1] = torch.maximum(best_y[c0:c1], masked.max(0).values)
    return best_x, best_y


class GroupedRanks(Reduction):
    """Per row i (query of X) and column j (query of Y), against the best relevant similarity p:
    ``above`` = #{non-relevant : s > p}, ``ties`` = #{non-relevant : s == p}, ``level`` = #{relevant : s == p},
    ``best_other`` = max{s : non-relevant} (−inf when every candidate is relevant). Counts int64, merged by
    addition; best_other by maximum."""

    def __init__(self, item_x: torch.Tensor, item_y: torch.Tensor, best_x: torch.Tensor,
                 best_y: torch.Tensor) -> None:
        self.item_x, self.item_y, self.best_x, self.best_y = item_x, item_y, best_x, best_y
        device = best_x.device
        self.rows = {name: torch.zeros(len(best_x), dtype=torch.int64, device=device)
                     for name in ("above", "ties", "level")}
        self.cols = {name: torch.zeros(len(best_y), dtype=torch.int64, device=device)
                     for name in ("above", "ties", "level")}
        self.row_other = torch.full((len(best_x),), -math.inf, dtype=torch.float64, device=device)
        self.col_other = torch.full((len(best_y),), -math.inf, dtype=torch.float64, device=device)

    def update(self, sim: torch.Tensor, r0: int, c0: int, diagonal: bool) -> None:
        c1 = c0 + sim.shape[1]
        for first, part in row_chunks(sim):
            a0, a1 = r0 + first, r0 + first + len(part)
            wide = part.double()  # p is float64 of the same rounded tile values: comparisons are exact
            relevant = self.item_x[a0:a1, None] == self.item_y[None, c0:c1]  # (rows, C)
            other = ~relevant
            for best, counts, dim, index in ((self.best_x[a0:a1, None], self.rows, 1, slice(a0, a1)),
                                             (self.best_y[None, c0:c1], self.cols, 0, slice(c0, c1))):
                above, equal = wide > best, wide == best
                counts["above"][index] += (above & other).sum(dim)
                counts["ties"][index] += (equal & other).sum(dim)
                counts["level"][index] += (equal & relevant).sum(dim)
            masked = wide.masked_fill(relevant, -math.inf)
            self.row_other[a0:a1] = torch.maximum(self.row_other[a0:a1], masked.max(1).values)
            self.col_other[c0:c1] = torch.maximum(self.col_other[c0:c1], masked.max(0).values)

    def merge(self, other: GroupedRanks) -> GroupedRanks:
        """Add the counts of another GroupedRanks over other tiles (same rows and columns); returns self."""
        for mine, theirs in ((self.rows, other.rows), (self.cols, other.cols)):
            for name in mine:
                mine[name] += theirs[name].to(mine[name].device)
        self.row_other = torch.maximum(self.row_other, other.row_other.to(self.row_other.device))
        self.col_other = torch.maximum(self.col_other, other.col_other.to(self.col_other.device))
        return self


class BestOther(Reduction):
    """1:1 pairs: max_{j ≠ i} s_ij for every row i and max_{i ≠ j} s_ij for every column j (float64)."""

    def __init__(self, n_rows: int, n_cols: int, device: torch.device) -> None:
        self.rows = torch.full((n_rows,), -math.inf, dtype=torch.float64, device=device)
        self.cols = torch.full((n_cols,), -math.inf, dtype=torch.float64, device=device)

    def work(self, sim: torch.Tensor, r0: int, c0: int, diagonal: bool,
             blocks: TileBlocks | None = None) -> list[Callable[[], None]]:
        """Two items: the rows' maxima and the columns' maxima of the tile (in its own precision, exact), from the
        tile's block maxima; a diagonal tile is copied with its true pairs blanked (the engine's tile feeds the
        other reductions too)."""
        if diagonal:
            sim = sim.clone().fill_diagonal_(-math.inf)
        blocks = blocks if blocks is not None and blocks.sim is sim else TileBlocks(sim)
        r1, c1 = r0 + sim.shape[0], c0 + sim.shape[1]

        def rows() -> None:
            self.rows[r0:r1] = torch.maximum(self.rows[r0:r1], blocks.line_max(1).double())

        def cols() -> None:
            self.cols[c0:c1] = torch.maximum(self.cols[c0:c1], blocks.line_max(0).double())

        return [rows, cols]

    def merge(self, other: BestOther) -> BestOther:
        self.rows = torch.maximum(self.rows, other.rows.to(self.rows.device))
        self.cols = torch.maximum(self.cols, other.cols.to(self.cols.device))
        return self


class GroupedHistogram(Histogram):
    """A cross histogram whose ``matched`` counts are the relevant pairs (same item) and ``unmatched`` the rest."""

    def __init__(self, item_x: torch.Tensor, item_y: torch.Tensor, bins: int, device: torch.device | str) -> None:
        super().__init__(bins, symmetric=False, device=device)
        self.item_x, self.item_y = item_x, item_y

    def work(self, sim: torch.Tensor, r0: int, c0: int, diagonal: bool,
             blocks: TileBlocks | None = None) -> list[Callable[[], None]]:
        return [lambda: self.update(sim, r0, c0, diagonal)]  # one item, not Histogram's

    def update(self, sim: torch.Tensor, r0: int, c0: int, diagonal: bool) -> None:
        c1 = c0 + sim.shape[1]
        relevant = self.item_x[r0 : r0 + sim.shape[0], None] == self.item_y[None, c0:c1]
        self.add(matched=self._count(sim[relevant]), unmatched=self._count(sim[~relevant]))
