"""The pairwise engine: tiles of X̂·Ŷᵀ streamed into reductions, never the N×N matrix.

A problem is either *symmetric* (X against itself: only the tiles on and above the block diagonal are visited,
and each unordered pair i < j counts once) or *cross* (X against Y: every tile). Each tile
``S = X̂[r0:r1] · Ŷ[c0:c1]ᵀ`` (an (r1−r0)×(c1−c0) float32/float64 matrix) is handed to every reduction in turn,
so one pass over the N² products serves several metrics. Peak memory is a few tiles, whatever N is.

Reductions (each keeps only sufficient statistics, accumulated in float64 where they are sums):

- :class:`ExpSum` — Σ exp(2t(s − 1)) over the counted pairs, kept as (shift, sum) so large t cannot underflow;
  uniformity is ``log(sum / pairs) + shift``.
- :class:`RankCount` — for every row (and column) the number of other items more similar than its true partner:
  recall@k is ``count < k``.
- :class:`TopK` — the k most similar columns of every row (and rows of every column): k-occurrence, hubness.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch

from embspace.kernels.rows import Rows

DEFAULT_TILE = 2048
UNDERFLOW_SAFE_EXPONENT = 80.0


class Reduction:
    """One statistic accumulated over tiles. ``diagonal`` marks a tile whose rows and columns are the same items."""

    def update(self, sim: torch.Tensor, r0: int, c0: int, diagonal: bool) -> None:
        raise NotImplementedError


class ExpSum(Reduction):
    """Σ over counted pairs of exp(2t(s − 1)) = exp(−t‖x̂ − ŷ‖²), in float64 with a running log-shift.

    Args:
        t: the uniformity temperature.
        symmetric: each unordered pair counts once (symmetric problems); the diagonal never counts.
        exclude_diagonal: in a cross problem, leave out the pairs i = j (the true pairs).
    """

    def __init__(self, t: float, *, symmetric: bool, exclude_diagonal: bool) -> None:
        self.t = t
        self.symmetric = symmetric
        self.exclude_diagonal = exclude_diagonal or symmetric
        self.shift = -math.inf  # log-scale of the running sum
        self.total = 0.0  # Σ exp(exponent − shift)

    def update(self, sim: torch.Tensor, r0: int, c0: int, diagonal: bool) -> None:
        exponent = sim.mul(2 * self.t).sub_(2 * self.t)  # (R, C), ≤ 0 up to rounding
        shift = 0.0 if 4 * self.t <= UNDERFLOW_SAFE_EXPONENT else float(exponent.max())
        if shift != 0.0:
            exponent.sub_(shift)
        weights = exponent.exp_()
        tile_sum = float(weights.sum(dtype=torch.float64))
        if diagonal and self.exclude_diagonal:
            tile_sum -= float(weights.diagonal().sum(dtype=torch.float64))
            if self.symmetric:
                tile_sum /= 2
        self._add(shift, tile_sum)

    def _add(self, shift: float, value: float) -> None:
        if value <= 0.0:
            return
        new_shift = max(self.shift, shift)
        self.total = self.total * math.exp(self.shift - new_shift) + value * math.exp(shift - new_shift)
        self.shift = new_shift

    def log_sum(self) -> float:
        """log Σ exp(−t‖x̂ − ŷ‖²) over the counted pairs (−inf when there were none)."""
        return self.shift + math.log(self.total) if self.total > 0 else -math.inf


class RankCount(Reduction):
    """For each row i: #{j ≠ i : s_ij > d_i}; for each column j: #{i ≠ j : s_ij > d_j}; d = matched similarities.

    Ties with the true partner count in its favour. ``d`` must be computed by the same tile product
    (:func:`matched_similarities`) so that a pair is never compared with a differently rounded copy of itself.
    """

    def __init__(self, matched: torch.Tensor) -> None:
        self.matched = matched  # (N,)
        self.rows = torch.zeros(len(matched), dtype=torch.int64, device=matched.device)
        self.cols = torch.zeros(len(matched), dtype=torch.int64, device=matched.device)

    def update(self, sim: torch.Tensor, r0: int, c0: int, diagonal: bool) -> None:
        r1, c1 = r0 + sim.shape[0], c0 + sim.shape[1]
        beats_row = sim > self.matched[r0:r1, None]  # (R, C)
        beats_col = sim > self.matched[None, c0:c1]  # (R, C)
        if diagonal:
            beats_row.fill_diagonal_(False)
            beats_col.fill_diagonal_(False)
        self.rows[r0:r1] += beats_row.sum(1)
        self.cols[c0:c1] += beats_col.sum(0)


class TopK(Reduction):
    """The k most similar columns of every row and rows of every column (cross problems), with indices.

    Ties are broken by the order ``torch.topk`` returns; indices of unfilled slots are −1.
    """

    def __init__(self, n_rows: int, n_cols: int, k: int, device: torch.device) -> None:
        self.k_rows, self.k_cols = min(k, n_cols), min(k, n_rows)
        self.row_values = torch.full((n_rows, self.k_rows), -math.inf, dtype=torch.float64, device=device)
        self.row_index = torch.full((n_rows, self.k_rows), -1, dtype=torch.int64, device=device)  # (N, k)
        self.col_values = torch.full((self.k_cols, n_cols), -math.inf, dtype=torch.float64, device=device)
        self.col_index = torch.full((self.k_cols, n_cols), -1, dtype=torch.int64, device=device)  # (k, M)

    def update(self, sim: torch.Tensor, r0: int, c0: int, diagonal: bool) -> None:
        r1, c1 = r0 + sim.shape[0], c0 + sim.shape[1]
        values, index = sim.topk(min(self.k_rows, sim.shape[1]), dim=1)  # (R, ≤k)
        self.row_values[r0:r1], self.row_index[r0:r1] = _keep_best(
            self.row_values[r0:r1], self.row_index[r0:r1], values, index + c0, dim=1)
        values, index = sim.topk(min(self.k_cols, sim.shape[0]), dim=0)  # (≤k, C)
        self.col_values[:, c0:c1], self.col_index[:, c0:c1] = _keep_best(
            self.col_values[:, c0:c1], self.col_index[:, c0:c1], values, index + r0, dim=0)


def _keep_best(best: torch.Tensor, best_index: torch.Tensor, values: torch.Tensor, index: torch.Tensor,
               dim: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The ``best.shape[dim]`` largest of the running best and a tile's candidates, along ``dim``."""
    cand_values = torch.cat([best, values.to(best.dtype)], dim=dim)
    cand_index = torch.cat([best_index, index], dim=dim)
    keep, pos = cand_values.topk(best.shape[dim], dim=dim)
    return keep, cand_index.gather(dim, pos)


def tile_product(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """a·bᵀ with fp32 accumulation and a float32 (or float64) result, whatever the storage precision."""
    if a.dtype in (torch.float16, torch.bfloat16):
        a, b = a.float(), b.float()
    return a @ b.T


def stream_pairs(
    x: Rows,
    y: Rows | None,
    reductions: Sequence[Reduction],
    *,
    tile: int = DEFAULT_TILE,
    progress: Callable[[int], None] | None = None,
) -> None:
    """Feed every tile of X̂·Ŷᵀ (or of X̂·X̂ᵀ on and above the diagonal when ``y`` is None) to the reductions."""
    symmetric = y is None
    y = x if symmetric else y
    for r0 in range(0, x.n, tile):
        rows = x.block(r0, min(r0 + tile, x.n))
        for c0 in range(r0 if symmetric else 0, y.n, tile):
            cols = rows if (symmetric and c0 == r0) else y.block(c0, min(c0 + tile, y.n))
            sim = tile_product(rows, cols)  # (R, C)
            for reduction in reductions:
                reduction.update(sim, r0, c0, diagonal=(r0 == c0))
            if progress is not None:
                progress(1)


def count_tiles(n_rows: int, n_cols: int | None, tile: int = DEFAULT_TILE) -> int:
    """Number of tiles :func:`stream_pairs` visits (for progress bars)."""
    blocks_r = -(-n_rows // tile)
    if n_cols is None:
        return blocks_r * (blocks_r + 1) // 2
    return blocks_r * -(-n_cols // tile)


def matched_similarities(x: Rows, y: Rows, *, tile: int = DEFAULT_TILE) -> torch.Tensor:
    """d_i = x̂_i·ŷ_i taken from the diagonal tiles, rounded exactly as :func:`stream_pairs` rounds them."""
    out = []
    for r0 in range(0, x.n, tile):
        r1 = min(r0 + tile, x.n)
        out.append(tile_product(x.block(r0, r1), y.block(r0, r1)).diagonal())
    return torch.cat(out)  # (N,)
