"""First-moment statistics, O(N·D): the sums behind gap, gap direction, centroid cosine, cone, matched cosine,
alignment and RMG (their families, :mod:`embspace.families`, hold the closed forms).

One streaming pass accumulates, in float64, Σx̂_i, Σŷ_i, Σ‖x̂_i‖², Σ‖ŷ_i‖², Σx̂_i·ŷ_i and Σ‖x̂_i − ŷ_i‖^α:

- modality gap (Liang et al. 2022): ‖mean(X̂) − mean(Ŷ)‖, the means not renormalised;
- gap direction: normalise(mean(X̂) − mean(Ŷ));
- centroid cosine (Fahim et al. 2024): cos(mean X̂, mean Ŷ);
- cone (Liang et al. 2022, "cone effect"): mean over i ≠ j of x̂_i·x̂_j = (‖Σx̂‖² − Σ‖x̂_i‖²) / (N(N−1));
- matched cosine: mean_i x̂_i·ŷ_i;
- alignment (Wang & Isola 2020): mean_i ‖x̂_i − ŷ_i‖^α, α = 2;
- relative modality gap (Schrodi et al. 2024): d_m = max(1 − (matched+1)/2, 1e-3), d_A = 1 − (cone_A+1)/2,
  RMG = d_m / (d_m + (d_A + d_B)/2).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from embspace.kernels.budget import MAX_BLOCK_ROWS
from embspace.kernels.rows import Rows

CHUNK_ROWS = MAX_BLOCK_ROWS


@dataclass
class MomentSums:
    """Sufficient statistics of one modality (``Σx̂``, ``Σ‖x̂‖²``, N), merged by addition."""

    n: int = 0
    total: torch.Tensor | None = None  # (D,) float64
    squares: float = 0.0

    def update(self, block: torch.Tensor) -> None:
        wide = block.double()
        total = wide.sum(0)
        self.total = total if self.total is None else self.total + total
        self.squares += float(wide.pow(2).sum())
        self.n += len(block)

    @property
    def mean(self) -> torch.Tensor:
        return self.total / self.n

    def merge(self, other: MomentSums) -> MomentSums:
        """Add another modality shard's sums (other rows of the same modality); returns self."""
        if other.total is not None:
            self.total = other.total.clone() if self.total is None else self.total + other.total.to(self.total)
        self.squares += other.squares
        self.n += other.n
        return self

    def cone(self) -> float:
        """Mean off-diagonal cosine (Liang et al.): (‖Σx̂‖² − Σ‖x̂‖²) / (N(N−1))."""
        return (float(self.total.pow(2).sum()) - self.squares) / (self.n * (self.n - 1))


@dataclass
class PairSums:
    """Σx̂_i·ŷ_i and Σ‖x̂_i − ŷ_i‖^α over the pairs."""

    alpha: float = 2.0
    n: int = 0
    dots: float = 0.0
    distances: float = 0.0
    x: MomentSums = field(default_factory=MomentSums)
    y: MomentSums = field(default_factory=MomentSums)

    def update(self, xb: torch.Tensor, yb: torch.Tensor) -> None:
        self.x.update(xb)
        self.y.update(yb)
        xw, yw = xb.double(), yb.double()
        self.dots += float((xw * yw).sum())
        self.distances += float((xw - yw).norm(dim=1).pow(self.alpha).sum())
        self.n += len(xb)

    def merge(self, other: PairSums) -> PairSums:
        """Add the sums of other pairs (another shard, same α); returns self."""
        self.x.merge(other.x)
        self.y.merge(other.y)
        self.dots += other.dots
        self.distances += other.distances
        self.n += other.n
        return self


def moment_sums(rows: Rows, chunk_rows: int = CHUNK_ROWS) -> MomentSums:
    sums = MomentSums()
    for _, block in rows.blocks(chunk_rows):
        sums.update(block)
    return sums


def pair_sums(x: Rows, y: Rows, alpha: float = 2.0, chunk_rows: int = CHUNK_ROWS) -> PairSums:
    sums = PairSums(alpha=alpha)
    for start, xb in x.blocks(chunk_rows):
        sums.update(xb, y.block(start, start + len(xb)))
    return sums
