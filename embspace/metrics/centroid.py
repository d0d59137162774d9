"""Metrics from first moments, O(N·D): gap, gap direction, centroid cosine, cone, matched cosine, alignment, RMG.

One streaming pass accumulates, in float64, Σx̂_i, Σŷ_i, Σ‖x̂_i‖², Σ‖ŷ_i‖², Σx̂_i·ŷ_i and Σ‖x̂_i − ŷ_i‖^α;
every metric here is a closed form of those sums.

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

import math
from dataclasses import dataclass, field

import torch

from embspace.kernels.rows import Rows

CHUNK_ROWS = 65_536


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


def relative_modality_gap(matched_cosine: float, cone_a: float, cone_b: float) -> float:
    """RMG (Schrodi et al. 2024) from the matched cosine and the two within-modality mean cosines."""
    d_matched = max(1 - (matched_cosine + 1) / 2, 1e-3)
    d_a, d_b = 1 - (cone_a + 1) / 2, 1 - (cone_b + 1) / 2
    return d_matched / (d_matched + (d_a + d_b) / 2)


def centroid_metrics(sums: PairSums) -> dict[str, float | torch.Tensor]:
    """Every first-moment metric of a paired problem, from its :class:`PairSums`."""
    mean_x, mean_y = sums.x.mean, sums.y.mean
    delta = mean_x - mean_y  # (D,)
    gap = float(delta.norm())
    norms = float(mean_x.norm()) * float(mean_y.norm())
    matched = sums.dots / sums.n
    cone_x, cone_y = sums.x.cone(), sums.y.cone()
    return {
        "gap": gap,
        "gap_direction": delta / gap if gap > 0 else torch.zeros_like(delta),
        "centroid_cosine": float(mean_x @ mean_y) / norms if norms > 0 else math.nan,
        "matched_cosine": matched,
        "alignment": sums.distances / sums.n,
        "cone_x": cone_x,
        "cone_y": cone_y,
        "rmg": relative_modality_gap(matched, cone_x, cone_y),
    }
