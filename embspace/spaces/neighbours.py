"""Each row's k nearest neighbours within its own space, and the mutual-kNN alignment of two spaces.

Mutual k-nearest-neighbour alignment (Huh et al. 2024, "The Platonic Representation Hypothesis", ``mutual_knn``
in platonic-rep's ``metrics.py``): with kNN_A(i) the k rows most cosine-similar to row i in space A, itself
excluded,

    m_i = |kNN_A(i) ∩ kNN_B(i)| / k,      mutual-kNN = mean_i m_i ∈ [0, 1]   (chance ≈ k/(N−1)).

As in platonic-rep the rows are L2-normalised and similarity is the inner product; unlike its dense N×N masks and
``argsort`` (ties in arbitrary order, no outlier clamp here), the neighbours come from one tiled self pass of the
pairwise engine (:func:`~embspace.kernels.engine.stream_pairs`, upper-triangle tiles only) into a
:class:`~embspace.kernels.pairwise.TopK`, ties broken toward the lower row index. Memory O(N·k).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import torch

from embspace.embeddings import Embeddings
from embspace.kernels.blocks import TileBlocks
from embspace.kernels.engine import stream_pairs
from embspace.kernels.pairwise import DEFAULT_TILE, Reduction, TopK
from embspace.kernels.rows import Rows, prepare_rows

KNN_K = 10  # platonic-rep's default topk
OVERLAP_ROWS = 65_536  # rows whose neighbour sets are intersected at a time: (R, k, k) booleans

MUTUAL_KNN_CONVENTION = ("mutual k-NN alignment (Huh et al. 2024, platonic-rep mutual_knn): mean_i |kNN_A(i) ∩ "
                         "kNN_B(i)|/k, self excluded, cosine on L2-normalised rows, ties to the lower row index; exact "
                         "(tiled top-k), chance ≈ k/(N−1)")


class SelfNeighbours(Reduction):
    """The k nearest other rows of every row, from the tiles of a *symmetric* pass (X against itself).

    The pass visits each tile on or above the block diagonal once. A diagonal tile is masked to its strict upper
    triangle (j > i: the self pair and each pair's mirror image never count), so the row side of the inner
    :class:`TopK` collects, for row i, the best j > i and its column side the best j < i: two disjoint candidate
    sets that :meth:`neighbours` merges. The masking is done on a copy; the engine's tile is left as it was.
    """

    def __init__(self, n: int, k: int, device: torch.device) -> None:
        self.n, self.k = n, min(k, max(n - 1, 0))
        self.top = TopK(n, n, max(self.k, 1), device)

    def work(self, sim: torch.Tensor, r0: int, c0: int, diagonal: bool,
             blocks: TileBlocks | None = None) -> list[Callable[[], None]]:
        """The inner top-k's two items (rows and columns) on the tile, masked first when it is diagonal (then with
        its own block maxima)."""
        if diagonal:
            sim = sim.clone()
            lower = torch.ones(sim.shape, dtype=torch.bool, device=sim.device).tril_()  # (R, R) j ≤ i
            sim.masked_fill_(lower, -math.inf)
            blocks = None
        return self.top.work(sim, r0, c0, diagonal, blocks)

    def merge(self, other: SelfNeighbours) -> SelfNeighbours:
        self.top.merge(other.top)
        return self

    def neighbours(self) -> torch.Tensor:
        """(N, k) int64: row i's k nearest other rows, most similar first, ties to the lower index."""
        values = torch.cat([self.top.row_values, self.top.col_values.T], dim=1)  # (N, 2k)
        index = torch.cat([self.top.row_index, self.top.col_index.T], dim=1)  # (N, 2k)
        invalid = (index < 0) | torch.isinf(values)
        values = values.masked_fill(invalid, -math.inf)
        index = index.masked_fill(invalid, self.n)  # unfilled slots sort last
        by_index = index.argsort(dim=1, stable=True)
        values, index = values.gather(1, by_index), index.gather(1, by_index)
        order = values.argsort(dim=1, descending=True, stable=True)[:, : self.k]
        return index.gather(1, order)


def self_neighbours(rows: Rows, k: int = KNN_K, *, tile: int = DEFAULT_TILE, progress=None) -> torch.Tensor:
    """(N, min(k, N−1)) nearest other rows of every row of ``rows`` (one symmetric pass of the engine)."""
    reduction = SelfNeighbours(rows.n, k, rows.device)
    stream_pairs(rows, None, [reduction], tile=tile, progress=progress)
    return reduction.neighbours()


def neighbours_of(data: Embeddings | np.ndarray | torch.Tensor, k: int = KNN_K, *, device: str = "cpu",
                  tile: int = DEFAULT_TILE) -> torch.Tensor:
    """:func:`self_neighbours` of an array or dump (rows normalised; float32 tiles)."""
    rows = prepare_rows(data, torch.device(device), torch.float32)
    return self_neighbours(rows, k, tile=min(tile, max(rows.n, 1)))


def overlap(knn_a: torch.Tensor, knn_b: torch.Tensor) -> torch.Tensor:
    """(N,) float64 m_i = |kNN_A(i) ∩ kNN_B(i)| / k of two (N, k) neighbour tables (each row's entries distinct)."""
    k = knn_a.shape[1]
    out = torch.empty(knn_a.shape[0], dtype=torch.float64)
    for start in range(0, knn_a.shape[0], OVERLAP_ROWS):
        a, b = knn_a[start : start + OVERLAP_ROWS], knn_b[start : start + OVERLAP_ROWS]
        shared = (a[:, :, None] == b[:, None, :]).any(2).sum(1)  # (R,) shared neighbours
        out[start : start + len(a)] = shared.double().cpu() / max(k, 1)
    return out


def mutual_knn(a: Embeddings | np.ndarray | torch.Tensor, b: Embeddings | np.ndarray | torch.Tensor,
               k: int = KNN_K, *, device: str = "cpu") -> float:
    """Mutual-kNN alignment of two spaces over the same rows (see the module docstring)."""
    return float(overlap(neighbours_of(a, k, device=device), neighbours_of(b, k, device=device)).mean())
