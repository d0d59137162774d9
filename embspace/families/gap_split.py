"""How much of the alignment distance is the modality gap: the exact split of Liang et al.'s gap out of Wang &
Isola's alignment (α = 2), per Schrodi et al. 2024's reading of the gap as a shared offset.

With Δ = mean(X̂) − mean(Ŷ) and r_i = x̂_i − ŷ_i − Δ (what is left of pair i once the offset is removed),

    mean_i ‖x̂_i − ŷ_i‖² = ‖Δ‖² + mean_i ‖r_i‖²      (the cross term vanishes: mean_i r_i = 0),

so ``gap_split.centroid`` = ‖Δ‖² (the gap squared), ``gap_split.residual`` = mean‖r_i‖², and
``gap_split.centroid_share`` = ‖Δ‖² / mean‖x̂_i − ŷ_i‖²: the share of the squared pair distance that closing the gap
(shifting one modality by Δ, Liang et al.'s λ = 1) would remove. O(N·D) from the first-moment sums the gap already
uses: mean‖x̂_i − ŷ_i‖² = (Σ‖x̂_i‖² + Σ‖ŷ_i‖² − 2Σx̂_i·ŷ_i)/N whatever α the alignment uses. Under pair weights the
means are weighted (the paired bootstrap resamples it with the gap).
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from embspace.families.alignment import matched_terms
from embspace.families.base import Context, Family, Found, Need, Statistics, Weighted
from embspace.families.gap import PAIR_SUMS


class GapSplit(Family):
    name = "gap_split"
    paired_only = True
    table_position = 1.5  # after the alignment it splits
    conventions: ClassVar[dict[str, str]] = {
        "gap_split": "mean‖x̂_i − ŷ_i‖² = ‖Δ‖² + mean‖r_i‖², Δ = mean x̂ − mean ŷ, r_i = x̂_i − ŷ_i − Δ: centroid = "
                     "‖Δ‖², residual = mean‖r_i‖², centroid_share = ‖Δ‖²/mean‖x̂_i − ŷ_i‖² (Liang et al. 2022; "
                     "Schrodi et al. 2024)"}
    resampled = "pairs"

    def needs(self, context: Context) -> list[Need]:
        return [PAIR_SUMS]

    def finish(self, context: Context, stats: Statistics) -> Found:
        sums = stats[PAIR_SUMS]
        squared = (sums.x.squares + sums.y.squares - 2 * sums.dots) / sums.n  # mean ‖x̂_i − ŷ_i‖²
        centroid = float((sums.x.mean - sums.y.mean).pow(2).sum())  # ‖Δ‖²
        return Found(metrics={"gap_split": {"centroid": centroid, "residual": squared - centroid,
                                            "centroid_share": centroid / squared if squared > 0 else 0.0}})

    def resample_paths(self, names, settings) -> list[str]:
        return [f"gap_split.{key}" for key in ("centroid", "residual", "centroid_share")]

    def resample(self, view: Weighted) -> dict[str, np.ndarray]:
        n, sx, sy = view.sums()
        matched, _ = matched_terms(view)
        squares = view.static("pair_squares", lambda: view.x.pow(2).sum(1) + view.y.pow(2).sum(1))  # (N,)
        squared = ((view.w @ squares).double() - 2 * (view.w @ matched).double()) / n  # (b,)
        centroid = (sx / n[:, None] - sy / n[:, None]).pow(2).sum(1)
        return {"gap_split.centroid": centroid.numpy(), "gap_split.residual": (squared - centroid).numpy(),
                "gap_split.centroid_share": (centroid / squared).numpy()}
