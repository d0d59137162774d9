"""Uniformity (Wang & Isola 2020) and its multimodal variants, exact, through the tiled pairwise engine.

With G(a, b) = exp(−t‖a − b‖²) = exp(2t(a·b − 1)) for unit rows (t = 2):

- per modality:  U(X) = log mean_{i<j} G(x̂_i, x̂_j)  — each unordered pair once, as ``uniform_loss`` does;
- mean:          (U(X) + U(Y)) / 2  — Wang & Isola's examples, Fahim et al. 2024;
- cross:         log mean_{i≠j} G(x̂_i, ŷ_j)  — Fahim et al. 2024 (XU term);
- joint:         U over the union of X̂ and Ŷ, 2N points  — Oh et al. 2023.

Three passes (X with itself on the upper-triangle tiles, Y likewise, X against Y) give every variant: the joint
sum is S_XX + S_YY + S_XY(i≠j) + Σ_i G(x̂_i, ŷ_i) over C(2N, 2) pairs.
"""

from __future__ import annotations

import math

import torch

from embspace.kernels.pairwise import ExpSum
from embspace.kernels.rows import Rows


def matched_log_sum(x: Rows, y: Rows, t: float, chunk_rows: int = 65_536) -> float:
    """log Σ_i G(x̂_i, ŷ_i), in float64."""
    acc = ExpSum(t, symmetric=False, exclude_diagonal=False)
    for start, xb in x.blocks(chunk_rows):
        exponent = 2 * t * ((xb.double() * y.block(start, start + len(xb)).double()).sum(1) - 1)  # (B,)
        acc.add(float(exponent.max()), float(torch.exp(exponent - exponent.max()).sum()))
    return acc.log_sum()


def log_mean(log_sum: float, pairs: int) -> float:
    return log_sum - math.log(pairs)


def uniformity_variants(log_xx: float, log_yy: float, log_xy_off: float, log_matched: float,
                        n: int, names: tuple[str, str] = ("x", "y")) -> dict[str, float]:
    """Every uniformity variant of a paired problem (N pairs) from its four log-sums, the two modalities' own under
    ``names``, then ``mean``, ``joint`` and ``cross`` (the order of the report)."""
    pairs_within = n * (n - 1) // 2
    u_x, u_y = log_mean(log_xx, pairs_within), log_mean(log_yy, pairs_within)
    joint_log_sum = torch.logsumexp(torch.tensor([log_xx, log_yy, log_xy_off, log_matched], dtype=torch.float64), 0)
    return {
        names[0]: u_x,
        names[1]: u_y,
        "mean": (u_x + u_y) / 2,
        "joint": log_mean(float(joint_log_sum), (2 * n) * (2 * n - 1) // 2),
        "cross": log_mean(log_xy_off, n * (n - 1)),
    }
