"""Uniformity (Wang & Isola 2020) and its multimodal variants, exact through the pairwise engine or sampled.

With G(a, b) = exp(−t‖a − b‖²) = exp(2t(a·b − 1)) for unit rows (t = 2):

- per modality:  U(X) = log mean_{i<j} G(x̂_i, x̂_j)  — each unordered pair once, as ``uniform_loss`` does;
- mean:          (U(X) + U(Y)) / 2  — Wang & Isola's examples, Fahim et al. 2024;
- cross:         log mean_{i≠j} G(x̂_i, ŷ_j)  — Fahim et al. 2024 (XU term);
- joint:         U over the union of X̂ and Ŷ, 2N points  — Oh et al. 2023.

The exp-sums of the three pair spaces (X with itself on the upper-triangle tiles, Y likewise, X against Y with
i ≠ j) and Σ_i G(x̂_i, ŷ_i) give every variant: the joint sum is S_XX + S_YY + S_XY(i≠j) + Σ_i G(x̂_i, ŷ_i) over
C(2N, 2) pairs. Above ``sample_above`` rows each variant is estimated from random pairs
(:mod:`embspace.metrics.sampled`). Under pair weights w (the bootstrap, on a subsample of S pairs, dense S×S):
log Σ_{a≠b} w_a w_b G_ab / (N² − Σw²) and likewise for every variant (the joint one counts each resampled row with
its own partner once, not the w_a² combinations of a pair's copies).
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np
import torch

from embspace.families.base import Context, Family, Found, Need, PairPass, RowStat, Sampled, Statistics, Weighted
from embspace.kernels.pairwise import ExpSum
from embspace.metrics.uniformity import log_mean, uniformity_variants

MATCHED = RowStat("matched_log_sum", label="uniformity")


def _within(context: Context, x, y, tile: int) -> ExpSum:
    return ExpSum(context.settings["t"], symmetric=True, exclude_diagonal=True)


def _cross(context: Context, x, y, tile: int) -> ExpSum:
    return ExpSum(context.settings["t"], symmetric=False, exclude_diagonal=True)


def dense_kernels(view: Weighted) -> dict[str, torch.Tensor]:
    """G over every pair of the subsample's rows: (S, S) each for X–X, Y–Y and X–Y, computed once."""
    t = float(view.settings.get("t", 2.0))

    def compute() -> dict[str, torch.Tensor]:
        x, y = view.x, view.y
        return {"xx": torch.exp(2 * t * (x @ x.T - 1)), "yy": torch.exp(2 * t * (y @ y.T - 1)),
                "xy": torch.exp(2 * t * (x @ y.T - 1))}

    return view.static("uniformity_kernels", compute)


class Uniformity(Family):
    name = "uniformity"
    aliases = ("uniformity_mean", "uniformity_joint", "uniformity_cross")
    table_position = 10.0
    conventions: ClassVar[dict[str, str]] = {
        "uniformity": "per modality: log mean_{i<j} exp(−t‖x̂_i − x̂_j‖²) (Wang & Isola 2020); mean: (U_A + U_B)/2; "
                      "joint: U over the union of both modalities, 2N points (Oh et al. 2023); cross: log "
                      "mean_{i≠j} exp(−t‖x̂_i − ŷ_j‖²) (Fahim et al. 2024); t from settings"}
    resampled = "subsample"

    def needs(self, context: Context) -> list[Need]:
        if context.sampled:
            return [Sampled("pairs", label="uniformity", options={"uniformity": True})]
        needs: list[Need] = [PairPass(name, "exp_sum", _within, label="uniformity") for name in context.names]
        if context.paired:
            needs += [PairPass("cross", "exp_sum", _cross, label="uniformity"), MATCHED]
        return needs

    def finish(self, context: Context, stats: Statistics) -> Found:
        if context.sampled:
            values, uncertainty, _ = stats.sampled("pairs")
            return Found(metrics={"uniformity": values}, uncertainty=uncertainty)
        n = context.n
        sums = {name: stats.reduction(name, "exp_sum").log_sum() for name in context.names}
        if not context.paired:
            name = context.names[0]
            return Found(metrics={"uniformity": {name: log_mean(sums[name], n * (n - 1) // 2)}})
        a, b = context.names
        values = uniformity_variants(sums[a], sums[b], stats.reduction("cross", "exp_sum").log_sum(), stats[MATCHED],
                                     n, names=(a, b))
        return Found(metrics={"uniformity": values})

    def resample_paths(self, names, settings) -> list[str]:
        a, b = names
        return [f"uniformity.{a}", f"uniformity.{b}", "uniformity.mean", "uniformity.joint", "uniformity.cross"]

    def resample(self, view: Weighted) -> dict[str, np.ndarray]:
        g = dense_kernels(view)
        w, a, b = view.w, *view.names
        n, w2, distinct = w.sum(1).double(), w.pow(2), view.distinct()

        def quad(e: torch.Tensor) -> torch.Tensor:  # Σ_{a,b} w_a w_b e_ab, (b,)
            return ((w @ e) * w).double().sum(1)

        s_xx = quad(g["xx"]) - (w2 @ g["xx"].diagonal()).double()  # Σ_{a≠b}
        s_yy = quad(g["yy"]) - (w2 @ g["yy"].diagonal()).double()
        all_xy = quad(g["xy"])
        # the union's image–text pairs: different original pairs, and each resampled row with its own partner once
        # (not the w_a² combinations of a pair's copies)
        cross_joint = all_xy - ((w2 - w) @ g["xy"].diagonal()).double()
        pairs_xy = distinct + n
        u_x, u_y = torch.log(s_xx / distinct), torch.log(s_yy / distinct)
        out = {f"uniformity.{a}": u_x, f"uniformity.{b}": u_y, "uniformity.mean": (u_x + u_y) / 2,
               "uniformity.joint": torch.log((s_xx + s_yy + 2 * cross_joint) / (2 * distinct + 2 * pairs_xy)),
               "uniformity.cross": torch.log((all_xy - (w2 @ g["xy"].diagonal()).double()) / distinct)}
        return {key: value.numpy() for key, value in out.items()}
