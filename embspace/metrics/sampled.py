"""The N² families estimated from samples, with 95 % intervals, for inputs too large for the exact pass.

- uniformity (every variant): m pairs drawn uniformly with replacement from the pairs each variant averages over
  (i < j within a modality, i ≠ j across, the union for joint), log of the mean of exp(−t‖a − b‖²) (‖a − b‖² from
  the rows centred about their cones: no cancellation on collapsed spaces) with the normal
  interval of the mean mapped through the log (:mod:`embspace.kernels.sampling`). The mean variant
  (U_A + U_B)/2 combines two independent estimates: value ± z·√(se_A² + se_B²)/2 with the delta-method errors.
- similarity histograms: the unmatched and within-modality counts are those of the same sampled pairs (m per
  histogram, recorded in ``histograms["samples"]``); the matched counts (N true pairs) stay exact.
- recall@k: q queries drawn without replacement, each ranked exactly against every candidate; Wilson intervals.

Hubness needs every query's top-k and is never estimated here: it stays exact (one full pass, which then also gives
exact recall). Gap, cone, alignment, RMG and spectrum are O(N·D) and exact; separability is a held-out probe on at
most its own ``max_pairs``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch

from embspace.kernels.pairwise import Histogram
from embspace.kernels.rows import Rows
from embspace.kernels.sampling import Z_95, Estimate, sampled_recall, sampled_uniformity

Uncertainty = dict[str, dict[str, object]]


def _seed(seed: int, stream: int) -> np.random.SeedSequence:
    """An independent random stream per pair space (so the mean variant's two estimates are independent)."""
    return np.random.SeedSequence([seed, stream])


def mean_of(a: Estimate, b: Estimate) -> Estimate:
    """(a + b)/2 of two independent estimates, normal interval from their delta-method standard errors."""
    value = (a.value + b.value) / 2
    se = math.hypot(a.std_error, b.std_error) / 2
    return Estimate(value, value - Z_95 * se, value + Z_95 * se, a.samples + b.samples, std_error=se)


def within_counter(bins: int, device: torch.device) -> Histogram:
    return Histogram(bins, symmetric=True, device=device)


def uniformity_and_histograms(
    rows: dict[str, Rows], *, t: float, pairs: int, seed: int, uniformity: bool, histogram_bins: int | None,
    budget: int | None = None,
) -> tuple[dict[str, float], Uncertainty, dict[str, object]]:
    """Sampled uniformity variants (``uniformity``) and similarity histograms (``histogram_bins``) in one pass per
    pair space (``budget``: bytes, sizes the blocks of streamed rows and the pair batches). Returns the uniformity
    values by key, their uncertainty by report path, and the histograms."""
    names = list(rows)
    device = rows[names[0]].device
    estimates: dict[str, Estimate] = {}
    within: dict[str, list[int]] = {}
    histograms: dict[str, object] = {}

    def run(key: str, x: Rows, y: Rows | None, stream: int, joint: bool = False) -> Histogram | None:
        counter = within_counter(histogram_bins, device) if histogram_bins and not joint else None
        consumers = [lambda s, c=counter: c.update(s, 0, 0, diagonal=False)] if counter is not None else []
        estimates[key] = sampled_uniformity(x, y, t=t, pairs=pairs, seed=_seed(seed, stream), joint=joint,
                                            budget=budget, consumers=consumers)
        return counter

    for stream, name in enumerate(names):
        counter = run(name, rows[name], None, stream)
        if counter is not None:
            within[name] = counter.within.cpu().tolist()
    if len(names) == 2:
        a, b = names
        counter = run("cross", rows[a], rows[b], 2)
        if uniformity:
            run("joint", rows[a], rows[b], 3, joint=True)
            estimates["mean"] = mean_of(estimates[a], estimates[b])
        if histogram_bins:
            histograms["matched"] = matched_counts(rows[a], rows[b], histogram_bins)
            histograms["unmatched"] = counter.within.cpu().tolist()
    if histogram_bins:
        histograms = {"edges": Histogram(histogram_bins, symmetric=True).edges.tolist(), **histograms,
                      "within": within, "method": "sampled", "samples": pairs}
    if not uniformity:
        return {}, {}, histograms
    order = [*names, "mean", "joint", "cross"] if len(names) == 2 else names
    values = {key: estimates[key].value for key in order}
    return values, {f"uniformity.{key}": estimates[key].uncertainty() for key in order}, histograms


def matched_counts(x: Rows, y: Rows, bins: int) -> list[int]:
    """Exact histogram of the N matched cosines x̂_i·ŷ_i (O(N·D), block by block)."""
    counter = within_counter(bins, x.device)
    for start, xb in x.blocks(x.max_rows):
        yb = y.block(start, start + len(xb))
        wide = torch.float64 if torch.float64 in (xb.dtype, yb.dtype) else torch.float32
        counter.update((xb.to(wide) * yb.to(wide)).sum(1), 0, 0, diagonal=False)
    return counter.within.cpu().tolist()


def recall(x: Rows, y: Rows, names: Sequence[str], *, ks: Sequence[int], queries: int, seed: int,
           tile: int) -> tuple[dict[str, dict[str, float]], Uncertainty]:
    """recall@k both ways from sampled queries; values by ``recall@k`` then direction, uncertainty by path."""
    a, b = names
    directions = {f"{a}->{b}": sampled_recall(x, y, ks, queries=queries, seed=_seed(seed, 4), tile=tile),
                  f"{b}->{a}": sampled_recall(y, x, ks, queries=queries, seed=_seed(seed, 5), tile=tile)}
    values = {f"recall@{k}": {d: est[k].value for d, est in directions.items()} for k in ks}
    uncertainty = {f"recall@{k}.{d}": est[k].uncertainty() for k in ks for d, est in directions.items()}
    return values, uncertainty
