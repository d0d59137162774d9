"""Cross-modal retrieval and hubness, exact, from one pass of the pairwise engine over X̂·Ŷᵀ.

- recall@k, A→B (CLIP benchmarks): the fraction of rows i of A whose partner ŷ_i is among the k columns most
  similar to x̂_i by cosine; pair i is the only positive. Computed exactly as rank_i < k with
  rank_i = #{j ≠ i : x̂_i·ŷ_j > x̂_i·ŷ_i} (ties count in favour of the true pair). B→A likewise over columns.
- hubness, A→B (Radovanović et al. 2010): the skewness E[(N_k − μ)³]/σ³ (population moments) of the
  k-occurrence N_k(ŷ_j) = #{i : ŷ_j is among the k nearest columns of x̂_i}, k = 10. Large positive skew means a
  few B items ("hubs") are the neighbours of many A queries.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch

from embspace.kernels.engine import stream_pairs
from embspace.kernels.pairwise import DEFAULT_TILE, RankCount, TopK
from embspace.kernels.rows import Rows

RECALL_KS = (1, 5, 10)
HUBNESS_K = 10


def recall_from_ranks(ranks: torch.Tensor, ks: Sequence[int]) -> dict[int, float]:
    """recall@k = mean(rank < k) for every k."""
    return {k: float((ranks < k).double().mean()) for k in ks}


def k_occurrence(neighbours: torch.Tensor, n_items: int) -> np.ndarray:
    """N_k(j): how often item j appears in the (queries × k) neighbour table."""
    valid = neighbours[neighbours >= 0]
    return torch.bincount(valid.flatten().cpu(), minlength=n_items).numpy()


def skewness(values: np.ndarray) -> float:
    """Population skewness E[(v − μ)³]/σ³; 0 for a constant distribution."""
    centered = values.astype(np.float64) - values.mean()
    std = np.sqrt((centered**2).mean())
    return float((centered**3).mean() / std**3) if std > 0 else 0.0


def rank_state_bytes(n_rows: int, n_cols: int) -> int:
    """Bytes a RankCount holds whatever the tile: rank counts and tie counts (int64) of every row and column, and
    the matched similarities (float64 at most)."""
    return 2 * 8 * (n_rows + n_cols) + 8 * n_rows


def top_state_bytes(n_rows: int, n_cols: int, k: int = HUBNESS_K) -> int:
    """Bytes a TopK holds whatever the tile: top-k values (float64) and indices (int64) of every row and column."""
    return 16 * k * (n_rows + n_cols)


def state_bytes(n_rows: int, n_cols: int, hubness_k: int = HUBNESS_K) -> int:
    """Bytes the exact retrieval pass (rank counts and top-k) holds whatever the tile."""
    return top_state_bytes(n_rows, n_cols, hubness_k) + rank_state_bytes(n_rows, n_cols)


def retrieval_reductions(x: Rows, y: Rows, *, hubness_k: int = HUBNESS_K,
                         tile: int = DEFAULT_TILE) -> tuple[RankCount, TopK]:
    """The two reductions of the exact pass over X̂·Ŷᵀ: rank counts against the matched similarities, and top-k."""
    return RankCount.from_tiles(x, y), TopK(x.n, y.n, hubness_k, x.device)


def retrieval_results(ranks: RankCount, top: TopK, ks: Sequence[int] = RECALL_KS) -> dict[str, object]:
    """recall@k and hubness both ways (``x->y`` and ``y->x``) from the reductions of a finished pass."""
    n_rows, n_cols = top.row_index.shape[0], top.col_index.shape[1]
    return {
        "recall_x->y": recall_from_ranks(ranks.rows, ks),
        "recall_y->x": recall_from_ranks(ranks.cols, ks),
        "hubness_x->y": skewness(k_occurrence(top.row_index, n_cols)),
        "hubness_y->x": skewness(k_occurrence(top.col_index, n_rows)),
        "ranks_x->y": ranks.rows.cpu(),
        "ranks_y->x": ranks.cols.cpu(),
    }


def retrieval_metrics(
    x: Rows,
    y: Rows,
    *,
    ks: Sequence[int] = RECALL_KS,
    hubness_k: int = HUBNESS_K,
    tile: int = DEFAULT_TILE,
    progress: Callable[[int], None] | None = None,
) -> dict[str, object]:
    """recall@k and hubness both ways (``x->y`` and ``y->x``) from one pass over the N² similarities."""
    ranks, top = retrieval_reductions(x, y, hubness_k=hubness_k, tile=tile)
    stream_pairs(x, y, [ranks, top], tile=tile, progress=progress)
    return retrieval_results(ranks, top, ks)
