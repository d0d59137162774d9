"""Linear separability of two modalities (Fahim et al. 2024).

A logistic regression learns to tell rows of A (label 0) from rows of B (label 1); the metric is its accuracy on
held-out pairs: 0.5 means the modalities are indistinguishable to a linear probe, 1.0 that a hyperplane
separates them. Pairs are split 80/20 (both rows of a pair fall on the same side, so the probe never sees the
partner of a test row). Above ``max_pairs`` pairs a seeded random subset is used and reported.
"""

from __future__ import annotations

import numpy as np
import torch

from embspace.kernels.budget import MAX_BLOCK_ROWS
from embspace.kernels.rows import Rows

MAX_PAIRS = 20_000
TEST_FRACTION = 0.2


def gather_rows(rows: Rows, index: np.ndarray, chunk_rows: int = MAX_BLOCK_ROWS) -> np.ndarray:
    """Rows ``index`` (sorted) of a Rows as a float64 numpy array, read chunk by chunk."""
    out = np.empty((len(index), rows.dim), dtype=np.float64)
    for start, block in rows.blocks(chunk_rows):
        lo, hi = np.searchsorted(index, [start, start + len(block)])
        if hi > lo:
            local = torch.from_numpy(index[lo:hi] - start).to(block.device)
            out[lo:hi] = block[local].double().cpu().numpy()
    return out


def probe_pairs(n: int, *, seed: int = 0, max_pairs: int = MAX_PAIRS) -> np.ndarray:
    """The sorted pair indices the probe uses: all N, or a seeded subset of ``max_pairs``."""
    return np.sort(np.random.default_rng(seed).choice(n, size=min(n, max_pairs), replace=False))


def fit_probe(index: np.ndarray, xs: np.ndarray, ys: np.ndarray, *, seed: int = 0, n: int | None = None,
              c: float = 1.0) -> dict[str, float]:
    """Held-out accuracy of a logistic regression (scikit-learn, L2, ``C`` = c, lbfgs) telling the rows ``xs``
    (label 0) from ``ys`` (label 1), the pairs ``index`` (of ``n``) split 80/20 by the seeded random stream that
    drew them (:func:`probe_pairs`)."""
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(seed)
    rng.choice(n if n is not None else len(index), size=len(index), replace=False)  # the draw of probe_pairs
    order = rng.permutation(len(index))
    n_test = max(1, round(TEST_FRACTION * len(index)))
    test, train = order[:n_test], order[n_test:]

    def stack(part: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        features = np.concatenate([xs[part], ys[part]])  # (2P, D)
        labels = np.concatenate([np.zeros(len(part)), np.ones(len(part))])
        return features, labels

    probe = LogisticRegression(C=c, max_iter=1000)
    probe.fit(*stack(train))
    return {"accuracy": float(probe.score(*stack(test))), "pairs_used": len(index), "test_pairs": int(n_test)}


def linear_separability(x: Rows, y: Rows, *, seed: int = 0, max_pairs: int = MAX_PAIRS) -> dict[str, float]:
    """Held-out accuracy of a logistic regression (scikit-learn, L2, C = 1, lbfgs) telling X̂ rows from Ŷ rows."""
    index = probe_pairs(x.n, seed=seed, max_pairs=max_pairs)
    return fit_probe(index, gather_rows(x, index), gather_rows(y, index), seed=seed, n=x.n)
