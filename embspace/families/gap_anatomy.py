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
gap). The subspace part fits each modality's principal subspace to the rows, which a bootstrap resample's copies of a
row would bias: ``compare`` bounds it by half-samples instead (:meth:`GapAnatomy.on_rows`, the delete-d jackknife of
:mod:`embspace.bootstrap`), one covariance and top-k eigendecomposition per modality and half-sample.
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
from embspace.metrics.spectrum import Gram


def subspace_shares(delta: np.ndarray, grams: dict[str, Gram]) -> dict[str, float]:
    """‖P_kΔ‖²/‖Δ‖² per modality (0 when Δ = 0), P_k from that modality's :class:`Gram` (k = ``SUBSPACE_K``)."""
    squared = float(delta @ delta)
    shares = {}
    for name, gram in grams.items():
        inside, _ = subspace_part(delta, principal_directions(gram, SUBSPACE_K))
        shares[name] = inside / squared if squared > 0 else 0.0
    return shares


class GapAnatomy(Family):
    name = "gap_anatomy"
    aliases = ("gap_subspace", "gap_shares")
    paired_only = True
    table_position = 1.6  # after the split of the alignment
    conventions: ClassVar[dict[str, str]] = {
        "gap_anatomy": f"Δ = mean x̂ − mean ŷ; s_d = Δ_d²/‖Δ‖² per embedding dimension; dims_90 = fewest dimensions "
                       f"whose s_d, largest first, sum to ≥ {SHARE:.0%}; top_share = max s_d (Schrodi et al. 2024)",
        "gap_subspace": f"‖P_kΔ‖²/‖Δ‖², P_k = projection onto the modality's top-{SUBSPACE_K} principal directions "
                        "(covariance centred about the modality's own mean); compare's noise bound: the delete-d "
                        "jackknife over seeded half-samples of a pool of pairs (Shao & Wu 1989; a bootstrap "
                        "resample's copies of a row would bias a fitted subspace)"}
    resampled = "pairs"

    def needs(self, context: Context) -> list[Need]:
        return [PAIR_SUMS, *(RowStat("gram", name, label="spectrum") for name in context.names)]

    def finish(self, context: Context, stats: Statistics) -> Found:
        sums = stats[PAIR_SUMS]
        delta = (sums.x.mean - sums.y.mean).numpy()  # (D,) float64
        shares = dimension_shares(delta)
        subspace = subspace_shares(delta, {name: stats.row("gram", name) for name in context.names})
        return Found(metrics={"gap_anatomy": {"dims_90": dimensions_for(shares, SHARE),
                                              "top_share": float(shares.max()) if len(shares) else 0.0},
                              "gap_subspace": subspace},
                     vectors={"gap_shares": shares.tolist()},
                     settings={"gap_anatomy": {"share": SHARE, "subspace_k": SUBSPACE_K,
                                               "centring": "each modality about its own mean"}})

    def resample_paths(self, names, settings) -> list[str]:
        return ["gap_anatomy.dims_90", "gap_anatomy.top_share"]

    def half_sample_paths(self, names, settings) -> list[str]:
        return [f"gap_subspace.{name}" for name in names]

    def on_rows(self, x, y, names, settings, *, exact: bool = True) -> dict[str, float]:
        delta = (x.mean(0) - y.mean(0)).numpy()  # (D,)
        grams = {name: Gram(len(rows), rows.T @ rows, rows.sum(0)) for name, rows in zip(names, (x, y), strict=True)}
        return {f"gap_subspace.{name}": share for name, share in subspace_shares(delta, grams).items()}

    def resample(self, view: Weighted) -> dict[str, np.ndarray]:
        n, sx, sy = view.sums()
        delta = (sx - sy) / n[:, None]  # (b, D)
        squares = delta.pow(2)
        shares = (squares / squares.sum(1, keepdim=True).clamp_min(1e-300)).numpy()  # (b, D)
        return {"gap_anatomy.dims_90": np.array([float(dimensions_for(row, SHARE)) for row in shares]),
                "gap_anatomy.top_share": shares.max(1)}
