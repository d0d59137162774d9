"""The cone effect (Liang et al. 2022): the mean cosine between different rows of one modality.

cone(X) = mean_{i≠j} x̂_i·x̂_j = (‖Σx̂_i‖² − Σ‖x̂_i‖²) / (N(N−1)), O(N·D) from first moments. Under pair weights w
(the bootstrap), (‖Σw x̂‖² − Σw²‖x̂‖²) / (N² − Σw²): two copies of one row are never a pair of different points.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np
import torch

from embspace.families.base import Context, Family, Found, Need, RowStat, Statistics, Weighted
from embspace.families.gap import PAIR_SUMS


def weighted_cones(view: Weighted) -> tuple[torch.Tensor, torch.Tensor]:
    """cone of each modality under the view's weights, (b,) each (shared by the cone and RMG families)."""

    def compute() -> tuple[torch.Tensor, torch.Tensor]:
        _, sx, sy = view.sums()
        w2, distinct = view.w.pow(2), view.distinct()
        squares = view.static("squares", lambda: (view.x.pow(2).sum(1), view.y.pow(2).sum(1)))  # (N,) ≈ 1
        return ((sx.pow(2).sum(1) - (w2 @ squares[0]).double()) / distinct,
                (sy.pow(2).sum(1) - (w2 @ squares[1]).double()) / distinct)

    return view.shared("cones", compute)


class Cone(Family):
    name = "cone"
    table_position = 3.0
    conventions: ClassVar[dict[str, str]] = {
        "cone": "mean over i≠j of x̂_i·x̂_j within each modality (Liang et al. 2022, cone effect)"}
    resampled = "pairs"

    def needs(self, context: Context) -> list[Need]:
        if context.paired:
            return [PAIR_SUMS]
        return [RowStat("moments", name, label="cone") for name in context.names]

    def finish(self, context: Context, stats: Statistics) -> Found:
        if context.paired:
            sums = stats[PAIR_SUMS]
            a, b = context.names
            return Found(metrics={"cone": {a: sums.x.cone(), b: sums.y.cone()}})
        return Found(metrics={"cone": {name: stats.row("moments", name).cone() for name in context.names}})

    def resample_paths(self, names, settings) -> list[str]:
        return [f"cone.{name}" for name in names]

    def resample(self, view: Weighted) -> dict[str, np.ndarray]:
        cone_x, cone_y = weighted_cones(view)
        a, b = view.names
        return {f"cone.{a}": cone_x.numpy(), f"cone.{b}": cone_y.numpy()}
