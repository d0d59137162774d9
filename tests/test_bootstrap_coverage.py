"""A small coverage check of compare's BCa intervals on data with a known change (the full simulation, percentile
vs BCa for every metric, is benchmarks/bootstrap_coverage.py; its table is in docs/compare.md)."""

from __future__ import annotations

import numpy as np

from embspace.compare import paired_bootstrap
from tests import reference as ref

DIM = 8


def draw(rng: np.random.Generator, n: int):
    """Before: a gap ±μ and noise 0.8; after: the same pairs with half the gap and noise 0.5 (paired)."""
    mu, c = np.zeros(DIM), np.zeros(DIM)
    mu[0], c[1] = 1.0, 1.0
    z, e1, e2 = (rng.normal(size=(n, DIM)) for _ in range(3))
    return ((ref.unit(z + c + mu + 0.8 * e1), ref.unit(z + c - mu + 0.8 * e2)),
            (ref.unit(z + c + mu / 2 + 0.5 * e1), ref.unit(z + c - mu / 2 + 0.5 * e2)))


def test_bca_intervals_cover_a_known_change(one_thread):
    rng = np.random.default_rng(7)
    n, reps = 80, 150
    (xb, yb), (xa, ya) = draw(rng, 400_000)
    truth = {"gap": ref.gap(xa, ya) - ref.gap(xb, yb), "matched_cosine": ref.matched_cosine(xa, ya)
             - ref.matched_cosine(xb, yb), "alignment": ref.alignment(xa, ya) - ref.alignment(xb, yb)}
    half = 200_000

    def joint(x: np.ndarray, y: np.ndarray) -> float:  # population joint uniformity of 2n points
        k = lambda a, b: float(np.exp(-2 * ((a - b) ** 2).sum(1)).mean())  # noqa: E731
        kxx, kyy, kxy = k(x[:half], x[half:]), k(y[:half], y[half:]), k(x[:half], y[half:])
        return float(np.log(((n - 1) * (kxx + kyy + 2 * kxy) + 2 * k(x, y)) / (4 * n - 2)))

    truth["uniformity.joint"] = joint(xa, ya) - joint(xb, yb)
    draws = [draw(rng, n) for _ in range(400)]  # recall@1 among n candidates depends on n: its mean over draws
    truth["recall@1.image->text"] = float(np.mean([ref.recall(*a, 1) - ref.recall(*b, 1) for b, a in draws]))
    covered = dict.fromkeys(truth, 0)
    for rep in range(reps):
        before, after = draw(rng, n)
        metrics = paired_bootstrap(before, after, resamples=200, seed=rep, recall_ks=(1,)).metrics
        for path, value in truth.items():
            covered[path] += metrics[path].ci[0] <= value <= metrics[path].ci[1]
    for path, count in covered.items():
        # nominal 0.95, Monte-Carlo ±0.036 at 150 repetitions; B = 200 and N = 80 add a little slack below
        assert 0.87 <= count / reps <= 1.0, (path, count / reps)
