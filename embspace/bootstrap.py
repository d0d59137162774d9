"""Bootstrap confidence intervals from resampled values: percentile and BCa, and the jackknife behind BCa.

Pure functions of arrays. θ̂ is the statistic on the data, θ*_1 … θ*_B its values on B resamples, θ_(1) … θ_(n)
its jackknife values (the statistic with observation i left out), 1 − c the confidence, z_q = Φ⁻¹(q).

**Percentile interval** (Efron & Tibshirani 1993, §13.3): the c/2 and 1 − c/2 quantiles of θ*. First-order
accurate only; when θ̂ is biased or its spread depends on θ, it misses on one side more often than c/2.

**BCa, bias-corrected and accelerated** (Efron 1987, "Better bootstrap confidence intervals", JASA 82:171;
Efron & Tibshirani 1993, §14.3, eqs. 14.9–14.15): the quantiles of θ* at the adjusted levels

    α₁ = Φ(z₀ + (z₀ + z_{c/2}) / (1 − a (z₀ + z_{c/2}))),   α₂ = Φ(z₀ + (z₀ + z_{1−c/2}) / (1 − a (z₀ + z_{1−c/2})))

    z₀ = Φ⁻¹( (#{θ*_b < θ̂} + ½ #{θ*_b = θ̂}) / B )                    (bias correction; ties count half)
    a  = Σ_i (θ̄ − θ_(i))³ / (6 [Σ_i (θ̄ − θ_(i))²]^{3/2}),  θ̄ = mean_i θ_(i)   (acceleration, from the jackknife)

BCa is exact (with B → ∞) whenever some monotone transform φ makes φ(θ̂) − φ(θ) normal with bias −z₀·σ_φ and a
standard deviation σ_φ = 1 + a·φ(θ) linear in φ(θ); it is second-order accurate in general (coverage error
O(1/n) against O(1/√n) for the percentile interval) and reduces to the percentile interval when z₀ = a = 0. The
quantiles are numpy's linear interpolation (as :func:`scipy.stats.bootstrap`). Half-weighting ties is the "mean"
rank of :func:`scipy.stats.percentileofscore` and is what discrete statistics (recall@k) need.

Edge cases: all θ* equal gives [θ*, θ*]; a point change outside every θ* clips the share to [½/B, 1 − ½/B] (the
interval is then at the extreme resampled values; :func:`bias_share` reports the share so that callers can warn);
a jackknife without spread gives a = 0; 1 − a(z₀ + z) ≤ 0 (|a| too large for the formula) takes the end of the
resampled range on that side.

**Jackknife weights.** With n observations, leaving observation i out is the weight vector w = 1 − e_i, so a
statistic written for weighted observations gives its jackknife values from (b, n) weight blocks
(:func:`jackknife_blocks`), memory O(b·n). Above ``groups`` observations the delete-one-group jackknife (Efron &
Tibshirani 1993, §11.5: w = 0 on one of ``groups`` seeded random groups of near-equal size) keeps the cost at
``groups`` evaluations; a is scale-free in the θ_(g) and estimates the same acceleration (the skewness of the
group sums shrinks as 1/√m for groups of m, which the sum over n/m groups restores).

**Half-samples** (the delete-d jackknife, Shao & Wu 1989, "A general theory for jackknife variance estimation",
Ann. Statist. 17:1176, with d = P − m): for statistics fitted to the rows (a rotation, a principal subspace), whose
bootstrap is biased because a resample's copies of a row look like extra, perfectly matched rows. From a pool of P
rows, B seeded half-samples of m = ⌊P/2⌋ rows without replacement give θ_1 … θ_B; the variance of θ̂ on N rows is

    v = (m / (P − m)) · var(θ_1 … θ_B) · (P / N)                    (var with ddof 1)

and the interval is the normal θ̂ ± z_{(1+c)/2}·√v (:func:`half_sample_interval`). For the mean of the rows it is
var(rows)/N up to the resampling error of the B values (tests/test_bootstrap.py).
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
from scipy.special import ndtr, ndtri

__all__ = ["acceleration", "bca_interval", "bca_levels", "bias_correction", "bias_share", "half_sample_interval",
           "half_samples", "jackknife_blocks", "percentile_interval"]


def _levels(confidence: float) -> tuple[float, float]:
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    return (1 - confidence) / 2, (1 + confidence) / 2


def percentile_interval(resampled: np.ndarray, confidence: float = 0.95) -> tuple[float, float]:
    """The (1 − c)/2 and (1 + c)/2 quantiles of the resampled values (Efron & Tibshirani 1993, §13.3).

    >>> percentile_interval(np.arange(101.0), 0.5)
    (25.0, 75.0)
    """
    lo, hi = np.quantile(np.asarray(resampled, dtype=np.float64), _levels(confidence))
    return float(lo), float(hi)


def bias_share(resampled: np.ndarray, point: float) -> float:
    """(#{θ* < θ̂} + ½ #{θ* = θ̂}) / B: the share of resampled values below the point value, ties counted half.

    >>> bias_share(np.array([0.0, 1.0, 1.0, 2.0]), 1.0)
    0.5
    """
    values = np.asarray(resampled, dtype=np.float64)
    return float((np.count_nonzero(values < point) + np.count_nonzero(values <= point)) / (2 * values.size))


def bias_correction(resampled: np.ndarray, point: float) -> float:
    """z₀ = Φ⁻¹(share of θ* below θ̂), the share clipped to [½/B, 1 − ½/B] so that z₀ stays finite."""
    b = np.asarray(resampled).size
    share = min(max(bias_share(resampled, point), 0.5 / b), 1 - 0.5 / b)
    return float(ndtri(share))


def acceleration(jackknife: np.ndarray) -> float:
    """a = Σ (θ̄ − θ_(i))³ / (6 [Σ (θ̄ − θ_(i))²]^{3/2}) from the jackknife values (0 when they do not vary).

    >>> round(acceleration(np.array([0.0, 0.0, 0.0, 1.0])), 6)  # one influential observation: skewed, a < 0
    -0.096225
    """
    values = np.asarray(jackknife, dtype=np.float64)
    u = values.mean() - values
    scale = float(np.sum(u * u))
    if not scale > 0 or not np.isfinite(scale):
        return 0.0
    return float(np.sum(u ** 3) / (6 * scale ** 1.5))


def bca_levels(z0: float, a: float, confidence: float = 0.95) -> tuple[float, float]:
    """The BCa quantile levels α₁, α₂ for bias correction z₀ and acceleration a (Efron & Tibshirani eq. 14.10)."""
    out = []
    for q, end in zip(_levels(confidence), (0.0, 1.0), strict=True):
        z = z0 + float(ndtri(q))
        denominator = 1 - a * z
        out.append(float(ndtr(z0 + z / denominator)) if denominator > 0 else end)
    return out[0], out[1]


def bca_interval(resampled: np.ndarray, point: float, jackknife: np.ndarray,
                 confidence: float = 0.95) -> tuple[float, float]:
    """The BCa interval: the quantiles of ``resampled`` at :func:`bca_levels` of z₀ (from ``point``) and a (from
    ``jackknife``). With z₀ = a = 0 it is the percentile interval.

    >>> rng = np.random.default_rng(0)
    >>> x = rng.exponential(size=30)
    >>> boot = x[rng.integers(0, 30, (2000, 30))].mean(1)
    >>> jack = (x.sum() - x) / 29
    >>> lo, hi = bca_interval(boot, x.mean(), jack)
    >>> bool(lo < x.mean() < hi)
    True
    """
    values = np.asarray(resampled, dtype=np.float64)
    levels = bca_levels(bias_correction(values, point), acceleration(jackknife), confidence)
    lo, hi = np.quantile(values, levels)
    return float(lo), float(hi)


def jackknife_blocks(n: int, block: int, groups: int | None = None,
                     seed: int = 0) -> Iterator[np.ndarray]:
    """(b, n) float32 weight blocks of the jackknife: row i is 1 − e_i (leave observation i out), or with
    ``groups`` < n, 0 on the members of one of ``groups`` seeded random groups of near-equal size (delete-a-group).
    Together the blocks hold min(n, groups) rows; each block holds at most ``block``."""
    if n < 2:
        raise ValueError(f"the jackknife needs at least 2 observations, got {n}")
    count = n if groups is None or groups >= n else groups
    label = np.arange(n) if count == n else np.random.default_rng(seed).permutation(n) % count  # (n,) group of each
    for start in range(0, count, max(1, block)):
        rows = np.arange(start, min(start + max(1, block), count))  # (b,)
        yield (label[None, :] != rows[:, None]).astype(np.float32)  # (b, n)


def half_samples(rng: np.random.Generator, pool: int, count: int) -> np.ndarray:
    """``count`` seeded half-samples of ``pool`` positions: (count, ⌊pool/2⌋) int64, each sorted, drawn without
    replacement."""
    halves = [np.sort(rng.choice(pool, size=pool // 2, replace=False)) for _ in range(count)]
    return np.stack(halves) if halves else np.empty((0, pool // 2), dtype=np.int64)


def half_sample_interval(value: float, halves: np.ndarray, pool: int, n: int,
                         confidence: float = 0.95) -> tuple[float, float]:
    """θ̂ ± z·√v with v = (m/(P − m))·var(``halves``)·(P/N), m = ⌊P/2⌋ (the delete-d jackknife of the module
    docstring); (NaN, NaN) when θ̂ is not finite or fewer than two half-sample values are.

    >>> rng = np.random.default_rng(0)
    >>> rows = rng.normal(size=400)
    >>> picks = half_samples(rng, 400, 2000)
    >>> low, high = half_sample_interval(float(rows.mean()), rows[picks].mean(1), 400, 400)
    >>> round(float((high - low) / (2 * 1.959964 * rows.std(ddof=1) / 20)), 1)  # a mean: ± z·s/√N
    1.0
    """
    from math import isfinite, sqrt

    finite = np.asarray(halves, dtype=np.float64)
    finite = finite[np.isfinite(finite)]
    m = pool // 2
    if len(finite) < 2 or not isfinite(value) or pool - m < 1:
        return (float("nan"), float("nan"))
    variance = m / (pool - m) * float(np.var(finite, ddof=1)) * pool / n
    z = float(ndtri(_levels(confidence)[1]))
    return value - z * sqrt(variance), value + z * sqrt(variance)
