"""The modality gap (Liang et al. 2022) and the centroid cosine (Fahim et al. 2024), from first moments.

- gap: ‖mean(X̂) − mean(Ŷ)‖, the means NOT renormalised; the gap direction normalise(mean X̂ − mean Ŷ) goes into
  ``report.vectors["gap_direction"]`` (the direction of Liang et al.'s shift);
- centroid cosine: cos(mean X̂, mean Ŷ).

Exact from the float64 sums Σx̂_i, Σŷ_i of one O(N·D) pass; under pair weights w (the paired bootstrap) the means
are Σw x̂/Σw and Σw ŷ/Σw.
"""

from __future__ import annotations

import math
from typing import ClassVar

import numpy as np
import torch

from embspace.families.base import Context, Family, Found, Need, RowStat, Statistics, Weighted

PAIR_SUMS = RowStat("pair_sums", label="centroid")


class Gap(Family):
    name = "gap"
    aliases = ("centroid_cosine", "gap_direction")
    paired_only = True
    table_position = 0.0
    conventions: ClassVar[dict[str, str]] = {
        "gap": "‖mean(x̂) − mean(ŷ)‖₂, rows L2-normalised, means not renormalised (Liang et al. 2022)",
        "centroid_cosine": "cos(mean x̂, mean ŷ) (Fahim et al. 2024)"}
    resampled = "pairs"

    def needs(self, context: Context) -> list[Need]:
        return [PAIR_SUMS]

    def finish(self, context: Context, stats: Statistics) -> Found:
        sums = stats[PAIR_SUMS]
        mean_x, mean_y = sums.x.mean, sums.y.mean
        delta = mean_x - mean_y  # (D,)
        gap = float(delta.norm())
        norms = float(mean_x.norm()) * float(mean_y.norm())
        direction = delta / gap if gap > 0 else torch.zeros_like(delta)
        return Found(metrics={"gap": gap,
                              "centroid_cosine": float(mean_x @ mean_y) / norms if norms > 0 else math.nan},
                     vectors={"gap_direction": direction.tolist()})

    def resample_paths(self, names, settings) -> list[str]:
        return ["gap", "centroid_cosine"]

    def resample(self, view: Weighted) -> dict[str, np.ndarray]:
        n, sx, sy = view.sums()
        mx, my = sx / n[:, None], sy / n[:, None]  # (b, D)
        return {"gap": (mx - my).norm(dim=1).numpy(),
                "centroid_cosine": ((mx * my).sum(1) / (mx.norm(dim=1) * my.norm(dim=1))).numpy()}
