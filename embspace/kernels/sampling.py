"""Pair-sampling estimators with confidence intervals, for N too large for the exact N² pass.

Uniformity is the log of a mean over pairs, U = log μ with μ = E_pairs exp(−t‖a − b‖²). Drawing m pairs uniformly
(with replacement) from the pairs the variant counts gives the unbiased estimate μ̂ = (1/m) Σ G_k with standard
error se = s/√m; the normal interval μ̂ ± z·se maps through the (monotone) log to an interval for U, and the point
estimate is log μ̂ (consistent; its Jensen bias, −se²/(2μ²), is far inside the interval). Recall@k is a mean of
Bernoulli outcomes over queries: sampled queries are ranked exactly against ALL candidates, and the Wilson score
interval is reported.

Every estimate comes back as an :class:`Estimate` (value, interval, sample size, method), which the report writes
into its ``uncertainty`` block.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np
import torch

from embspace.kernels.rows import Rows

Z_95 = 1.959963984540054


@dataclass(frozen=True)
class Estimate:
    """A sampled value with its confidence interval."""

    value: float
    low: float
    high: float
    samples: int
    method: str = "sampled"
    confidence: float = 0.95

    def to_dict(self) -> dict[str, float | int | str]:
        out = asdict(self)
        out["ci"] = [out.pop("low"), out.pop("high")]
        return out


def sample_pairs(n: int, m: int, generator: np.random.Generator, *, distinct: bool = True) -> tuple[np.ndarray,
                                                                                                     np.ndarray]:
    """m index pairs (i, j) drawn uniformly with replacement; i ≠ j when ``distinct``."""
    i = generator.integers(0, n, size=m)
    if not distinct:
        return i, generator.integers(0, n, size=m)
    j = generator.integers(0, n - 1, size=m)
    j += j >= i  # uniform over the n − 1 indices other than i
    return i, j


def gather(rows: Rows, index: np.ndarray, chunk: int = 65_536) -> torch.Tensor:
    """Rows ``index`` (any order, repeats allowed) as one (len(index), D) float64 tensor, read block by block."""
    order = np.argsort(index, kind="stable")
    sorted_index = index[order]
    out = torch.empty((len(index), rows.dim), dtype=torch.float64, device=rows.device)  # (m, D)
    lo = 0
    while lo < len(sorted_index):
        start = int(sorted_index[lo])
        stop = min(start + chunk, rows.n)
        hi = int(np.searchsorted(sorted_index, stop, side="left"))
        block = rows.block(start, stop).double()
        local = torch.from_numpy(sorted_index[lo:hi] - start).to(rows.device)
        out[torch.from_numpy(order[lo:hi]).to(rows.device)] = block[local]
        lo = hi
    return out


def log_mean_estimate(values: torch.Tensor, confidence_z: float = Z_95) -> Estimate:
    """log of the sample mean of positive ``values`` with a normal interval mapped through the log."""
    m = len(values)
    mean = float(values.mean())
    se = float(values.std(unbiased=True)) / math.sqrt(m) if m > 1 else math.inf
    low = mean - confidence_z * se
    return Estimate(math.log(mean), math.log(low) if low > 0 else -math.inf, math.log(mean + confidence_z * se), m)


def sampled_uniformity(x: Rows, y: Rows | None = None, *, t: float = 2.0, pairs: int = 1_000_000, seed: int = 0,
                       joint: bool = False) -> Estimate:
    """U(X) (``y`` None), cross U(X, Y) (pairs i ≠ j) or joint U(X ∪ Y) (``joint=True``) from sampled pairs."""
    generator = np.random.default_rng(seed)
    if y is None:
        i, j = sample_pairs(x.n, pairs, generator)
        a, b = gather(x, i), gather(x, j)
    elif not joint:
        i, j = sample_pairs(x.n, pairs, generator)
        a, b = gather(x, i), gather(y, j)
    else:  # the union: index k < n is x_k, k ≥ n is y_{k−n}
        i, j = sample_pairs(x.n + y.n, pairs, generator)
        a, b = _gather_union(x, y, i), _gather_union(x, y, j)
    weights = torch.exp(2 * t * ((a * b).sum(1) - 1))  # (m,) exp(−t‖a − b‖²) for unit rows
    return log_mean_estimate(weights)


def _gather_union(x: Rows, y: Rows, index: np.ndarray) -> torch.Tensor:
    out = torch.empty((len(index), x.dim), dtype=torch.float64, device=x.device)
    in_x = index < x.n
    out[torch.from_numpy(in_x).to(x.device)] = gather(x, index[in_x])
    out[torch.from_numpy(~in_x).to(x.device)] = gather(y, index[~in_x] - x.n)
    return out


def wilson_interval(hits: int, trials: int, z: float = Z_95) -> tuple[float, float]:
    """Wilson score interval for a binomial proportion."""
    if trials == 0:
        return 0.0, 1.0
    p = hits / trials
    centre = (p + z * z / (2 * trials)) / (1 + z * z / trials)
    half = z * math.sqrt(p * (1 - p) / trials + z * z / (4 * trials * trials)) / (1 + z * z / trials)
    return max(0.0, centre - half), min(1.0, centre + half)


def sampled_recall(x: Rows, y: Rows, ks: Sequence[int], *, queries: int = 10_000, seed: int = 0,
                   tile: int = 65_536) -> dict[int, Estimate]:
    """recall@k of x → y on sampled queries, each ranked exactly against all of y (Wilson intervals)."""
    generator = np.random.default_rng(seed)
    chosen = np.sort(generator.choice(x.n, size=min(queries, x.n), replace=False))
    q = gather(x, chosen).to(torch.float32 if x.dtype != torch.float64 else torch.float64)  # (q, D)
    partners = gather(y, chosen).to(q.dtype)
    matched = (q * partners).sum(1)  # (q,)
    better = torch.zeros(len(chosen), dtype=torch.int64, device=q.device)
    own = torch.from_numpy(chosen).to(q.device)
    for c0, cols in y.blocks(tile):
        sim = q @ cols.to(q.dtype).T  # (q, C)
        beats = sim > matched[:, None]
        inside = (own >= c0) & (own < c0 + len(cols))
        beats[inside.nonzero().flatten(), (own[inside] - c0)] = False  # the partner never beats itself
        better += beats.sum(1)
    out = {}
    for k in ks:
        hits = int((better < k).sum())
        low, high = wilson_interval(hits, len(chosen))
        out[k] = Estimate(hits / len(chosen), low, high, len(chosen))
    return out
