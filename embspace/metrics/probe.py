"""Few-shot linear probe: k labelled rows per class train a logistic regression, the rest test it.

For each k (1, 2, 4, 8, 16 by default) and each seed s: every class with at least k + 1 rows gives k rows drawn
by ``numpy.random.default_rng(s)`` (classes in increasing order, ``rng.choice(rows_of_class, k, replace=False)``)
to the training set; all other rows of those classes are the test set. scikit-learn
``LogisticRegression(C=1.0, max_iter=1000)`` (L2, lbfgs, multinomial) is fitted on the unit rows, and the test
accuracy recorded. A k is skipped when fewer than two classes have k + 1 rows. Reported: mean and sample standard
deviation (ddof = 1) over the seeds, the classes used and every seed's accuracy (the protocol of CLIP's few-shot
linear probes, Radford et al. 2021 §3.2, on cached features).
"""

from __future__ import annotations

import warnings

import numpy as np

PROBE_KS = (1, 2, 4, 8, 16)
PROBE_SEEDS = 5
PROBE_C = 1.0


def few_shot_split(labels: np.ndarray, k: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(train rows, test rows, classes used) for k shots per class with ``seed``."""
    rng = np.random.default_rng(seed)
    classes, counts = np.unique(labels, return_counts=True)
    used = classes[counts > k]
    train = [rng.choice(np.flatnonzero(labels == c), size=k, replace=False) for c in used]
    train_rows = np.sort(np.concatenate(train)) if train else np.empty(0, dtype=np.int64)
    test = np.setdiff1d(np.flatnonzero(np.isin(labels, used)), train_rows)
    return train_rows, test, used


def few_shot_probe(x: np.ndarray, labels: np.ndarray, ks: tuple[int, ...] = PROBE_KS, seeds: int = PROBE_SEEDS,
                   first_seed: int = 0, c: float = PROBE_C) -> dict[int, dict]:
    """k → {"mean", "std", "seeds": [accuracy per seed], "classes", "test_rows"}; a skipped k is absent."""
    from sklearn.linear_model import LogisticRegression

    out: dict[int, dict] = {}
    for k in ks:
        accuracies, used, tested = [], 0, 0
        for s in range(first_seed, first_seed + seeds):
            train, test, classes = few_shot_split(labels, k, s)
            if len(classes) < 2:
                break
            with warnings.catch_warnings():  # k = 1: one row per class is what few-shot means, not a regression
                warnings.filterwarnings("ignore", message="The number of unique classes is greater than 50%")
                model = LogisticRegression(C=c, max_iter=1000).fit(x[train], labels[train])
            accuracies.append(float((model.predict(x[test]) == labels[test]).mean()))
            used, tested = len(classes), len(test)
        if accuracies:
            spread = float(np.std(accuracies, ddof=1)) if len(accuracies) > 1 else 0.0
            out[k] = {"mean": float(np.mean(accuracies)), "std": spread, "seeds": accuracies, "classes": used,
                      "test_rows": tested}
    return out
