"""Where the modality gap lives: its split out of the alignment, its profile over the dimensions, its part inside
each modality's principal subspace, and the modality bias of a pooled gallery.

With Δ = mean(X̂) − mean(Ŷ) (the means not renormalised, Liang et al. 2022):

- **dimension shares** (Schrodi et al. 2024/2025, "Two effects, one trigger", ``analysis/gap_mean_differences.py``:
  |Δ_d| sorted): s_d = Δ_d²/‖Δ‖², Σ_d s_d = 1, in the embedding's own coordinates; ``dimensions_for(s, 0.9)`` is the
  fewest dimensions whose shares, largest first, reach 90 % of ‖Δ‖²;
- **subspace part**: P_k projects onto the top-k principal directions of one modality (eigenvectors of its centred
  covariance C = Σ(x̂_i − μ)(x̂_i − μ)ᵀ/(N − 1), the largest k eigenvalues); inside = ‖P_kΔ‖², outside =
  ‖(I − P_k)Δ‖², inside + outside = ‖Δ‖² (k = 10 by default). A gap inside the subspace lies along the directions
  the modality varies most in; outside it, along directions its rows hardly use;
- **modality bias** of the pooled gallery X̂ ∪ Ŷ (2N items): for each query, the share of its k nearest neighbours
  by cosine (itself excluded) from its own modality, averaged over the queries of a modality; without a gap the
  neighbours come from either side at random, and the share is (N − 1)/(2N − 1) (chance). Ties are broken by the
  gallery index, images (the first modality) first, as :class:`~embspace.kernels.pairwise.TopK` breaks them.
"""

from __future__ import annotations

import numpy as np
import torch

from embspace.metrics.spectrum import Gram

SHARE = 0.9  # the share of ‖Δ‖² that dims_90 counts dimensions for (Schrodi et al.'s "a few dimensions")
SUBSPACE_K = 10  # principal directions per modality of the subspace part
BIAS_K = 10  # neighbours per query of the modality bias


def dimension_shares(delta: torch.Tensor | np.ndarray) -> np.ndarray:
    """s_d = Δ_d²/‖Δ‖² (D,), float64; all zeros when Δ = 0."""
    wide = np.asarray(delta, dtype=np.float64)
    squares = wide**2
    total = squares.sum()
    return squares / total if total > 0 else np.zeros_like(squares)


def dimensions_for(shares: np.ndarray, share: float = SHARE) -> int:
    """The fewest dimensions whose shares, largest first, sum to at least ``share`` (0 when every share is 0)."""
    if not shares.any():
        return 0
    cumulative = np.cumsum(np.sort(shares)[::-1])
    return int(np.searchsorted(cumulative, share * cumulative[-1] * (1 - 1e-12)) + 1)


def principal_directions(gram: Gram, k: int) -> np.ndarray:
    """The top-k eigenvectors (D, k') of the centred covariance held by ``gram`` (k' = min(k, D, N − 1))."""
    from scipy.linalg import eigh

    centred = (gram.gram - torch.outer(gram.total, gram.total) / gram.n).numpy()  # (D, D) = (N − 1)·C
    dim = len(centred)
    keep = max(0, min(k, dim, gram.n - 1))
    if keep == 0:
        return np.zeros((dim, 0))
    _, vectors = eigh(centred, subset_by_index=(dim - keep, dim - 1), driver="evr")
    return vectors[:, ::-1]  # largest eigenvalue first


def subspace_part(delta: torch.Tensor | np.ndarray, directions: np.ndarray) -> tuple[float, float]:
    """(‖P Δ‖², ‖(I − P)Δ‖²) for the orthonormal ``directions`` (D, k) spanning P's range."""
    wide = np.asarray(delta, dtype=np.float64)
    inside = directions @ (directions.T @ wide)  # (D,)
    return float(inside @ inside), float(((wide - inside) ** 2).sum())


def pooled_neighbours(own_values: torch.Tensor, own_index: torch.Tensor, other_values: torch.Tensor,
                      k: int, n: int, first: bool) -> torch.Tensor:
    """How many of each query's k pooled nearest neighbours are from its own modality (Q,), int64.

    ``own_values``/``own_index`` (Q, ≥ k): each query's best candidates of its own modality, itself already left
    out; ``other_values`` (Q, ≥ k): its best of the other modality. Ties between the two are broken by the gallery
    index: the first modality's items (indices 0 … N − 1) rank before the second's (N … 2N − 1) — ``first`` says
    whether the queries are the first modality — and within one modality by index (TopK's order).
    """
    values = torch.cat([own_values[:, :k], other_values[:, :k]], dim=1)  # (Q, 2k)
    own = torch.zeros_like(values, dtype=torch.bool)
    own[:, : min(k, own_values.shape[1])] = True
    # the pooled order: value descending, then gallery index: own first when the queries are the first modality
    rank_other = (~own).long() if first else own.long()
    order = torch.argsort(rank_other, dim=1, stable=True)
    values, own = values.gather(1, order), own.gather(1, order)
    order = torch.argsort(values, dim=1, descending=True, stable=True)[:, :k]
    return own.gather(1, order).sum(1)


def self_excluded(values: torch.Tensor, index: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Each row's k best candidates with the row itself left out, from (Q, ≥ k + 1) candidates in TopK's order."""
    rows = torch.arange(len(index), device=index.device)[:, None]
    keep = (index != rows) & (index >= 0)  # (Q, k + 1)
    order = torch.argsort((~keep).long(), dim=1, stable=True)[:, :k]  # the kept ones, in their order
    return values.gather(1, order), index.gather(1, order)


def merged_symmetric(row_values: torch.Tensor, row_index: torch.Tensor, col_values: torch.Tensor,
                     col_index: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The k best neighbours of every item of a symmetric pass (X against itself), (N, k) each.

    A symmetric pass visits the tiles on and above the block diagonal: :class:`~embspace.kernels.pairwise.TopK`'s
    row tables hold each item's best among the columns at or after its block, its column tables its best among the
    rows at or before it; together they cover every item (the diagonal block twice). Duplicates are dropped, then
    the candidates are ordered by similarity, ties by index."""
    values = torch.cat([row_values, col_values.T], dim=1)  # (N, 2k)
    index = torch.cat([row_index, col_index.T], dim=1)
    by_index = torch.argsort(index, dim=1, stable=True)
    values, index = values.gather(1, by_index), index.gather(1, by_index)
    repeated = torch.zeros_like(index, dtype=torch.bool)
    repeated[:, 1:] = index[:, 1:] == index[:, :-1]
    values = values.masked_fill(repeated | (index < 0), -torch.inf)
    order = torch.argsort(values, dim=1, descending=True, stable=True)[:, :k]
    return values.gather(1, order), index.gather(1, order).masked_fill(values.gather(1, order) == -torch.inf, -1)


def chance(n: int) -> float:
    """The own-modality share of a query's pooled neighbours without a gap: (N − 1)/(2N − 1)."""
    return (n - 1) / (2 * n - 1)
