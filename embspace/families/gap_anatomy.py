"""Where the gap lives: its profile over the dimensions and its part inside each modality's principal subspace
(:mod:`embspace.metrics.gap_anatomy`; the split of the alignment itself is :mod:`embspace.families.gap_split`).

- ``gap_anatomy.dims_90``: the fewest embedding dimensions whose shares s_d = Δ_d²/‖Δ‖², largest first, carry 90 %
  of ‖Δ‖² (Schrodi et al. 2024/2025 find the CLIP gap in a few dimensions); ``gap_anatomy.top_share``: the largest
  s_d; the shares themselves go into ``report.vectors["gap_shares"]`` (dimension order), drawn by
  :func:`embspace.plot.gap_profile`;
- ``gap_subspace.<modality>``: ‖P_kΔ‖²/‖Δ‖², P_k the projection onto that modality's top-k principal directions
  (its covariance centred about its own mean; k = 10).

O(N·D) for the first-moment sums the gap uses, plus the D×D Gram matrices the spectrum uses (shared with it).
Under pair weights the shares and dims_90 come from the weighted means (the paired bootstrap resamples them with the
gap); the subspace part would need an eigendecomposition per resample and is not resampled.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from embspace.families.base import Context, Family, Found, Need, RowStat, Statistics, Weighted
from embspace.families.gap import PAIR_SUMS
from embspace.metrics.gap_anatomy import (
    SHARE,
    SUBSPACE_K,
    dimension_shares,
    dimensions_for,
    principal_directions,
    subspace_part,
)


class GapAnatomy(Family):
    name = "gap_anatomy"
    aliases = ("gap_subspace", "gap_shares")
    paired_only = True
    table_position = 1.6  # after the split of the alignment
    conventions: ClassVar[dict[str, str]] = {
        "gap_anatomy": f"Δ = mean x̂ − mean ŷ; s_d = Δ_d²/‖Δ‖² per embedding dimension; dims_90 = fewest dimensions "
                       f"whose s_d, largest first, sum to ≥ {SHARE:.0%}; top_share = max s_d (Schrodi et al. 2024)",
        "gap_subspace": f"‖P_kΔ‖²/‖Δ‖², P_k = projection onto the modality's top-{SUBSPACE_K} principal directions "
                        "(covariance centred about the modality's own mean); not resampled by compare's bootstrap (a "
                        "top-k eigendecomposition per resample)"}
    resampled = "pairs"
    not_resampled = "gap_subspace (a top-k eigendecomposition of each modality's D×D covariance per resample)"

    def needs(self, context: Context) -> list[Need]:
        return [PAIR_SUMS, *(RowStat("gram", name, label="spectrum") for name in context.names)]

    def finish(self, context: Context, stats: Statistics) -> Found:
        sums = stats[PAIR_SUMS]
        delta = (sums.x.mean - sums.y.mean).numpy()  # (D,) float64
        shares = dimension_shares(delta)
        squared = float(delta @ delta)
        subspace = {}
        for name in context.names:
            inside, _ = subspace_part(delta, principal_directions(stats.row("gram", name), SUBSPACE_K))
            subspace[name] = inside / squared if squared > 0 else 0.0
        return Found(metrics={"gap_anatomy": {"dims_90": dimensions_for(shares, SHARE),
                                              "top_share": float(shares.max()) if len(shares) else 0.0},
                              "gap_subspace": subspace},
                     vectors={"gap_shares": shares.tolist()},
                     settings={"gap_anatomy": {"share": SHARE, "subspace_k": SUBSPACE_K,
                                               "centring": "each modality about its own mean"}})

    def resample_paths(self, names, settings) -> list[str]:
        return ["gap_anatomy.dims_90", "gap_anatomy.top_share"]

    def resample(self, view: Weighted) -> dict[str, np.ndarray]:
        n, sx, sy = view.sums()
        delta = (sx - sy) / n[:, None]  # (b, D)
        squares = delta.pow(2)
        shares = (squares / squares.sum(1, keepdim=True).clamp_min(1e-300)).numpy()  # (b, D)
        return {"gap_anatomy.dims_90": np.array([float(dimensions_for(row, SHARE)) for row in shares]),
                "gap_anatomy.top_share": shares.max(1)}
