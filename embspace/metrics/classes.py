"""Class structure of one modality (or of two, per class) from integer labels, on unit rows x̂_i.

With classes c of n_c rows, class means μ_c = mean_{i∈c} x̂_i (not renormalised) and the overall mean μ:

- **between / within variance ratio** (trace form of Fisher's criterion, tr S_B / tr S_W):
  B = (1/N) Σ_c n_c ‖μ_c − μ‖², W = (1/N) Σ_c Σ_{i∈c} ‖x̂_i − μ_c‖², ratio = B / W (B + W is the total variance
  (1/N) Σ_i ‖x̂_i − μ‖²; Fisher 1936, Duda, Hart & Stork §3.8);
- **class-centroid cosine**: the C×C matrix cos(μ_c, μ_c'), and its mean over c ≠ c';
- **per-class gap** of two modalities: ‖μ_c(X̂) − μ_c(Ŷ)‖ for each class present in both (Liang et al.'s gap
  taken within a class), summarised by mean, median and max;
- **k-means agreement**: scikit-learn ``KMeans(n_clusters = number of classes present, n_init=10,
  random_state=seed)`` on the unit rows, scored against the labels by V-measure (Rosenberg & Hirschberg 2007) and
  adjusted mutual information (Vinh et al. 2010), both 1 for a perfect match and ≈ 0 by chance (AMI).

Rows are float64 numpy arrays (N, D); labels (N,) non-negative integers.
"""

from __future__ import annotations

import numpy as np

KMEANS_N_INIT = 10


def class_means(x: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(classes present (K,), counts (K,), means (K, D)) of the rows of each class."""
    classes, inverse, counts = np.unique(labels, return_inverse=True, return_counts=True)
    sums = np.zeros((len(classes), x.shape[1]))
    np.add.at(sums, inverse, x)
    return classes, counts, sums / counts[:, None]


def variance_ratio(x: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """{"between", "within", "ratio"}: B, W and B / W (trace form; inf when W = 0)."""
    classes, counts, means = class_means(x, labels)
    inverse = np.searchsorted(classes, labels)
    overall = x.mean(0)
    between = float((counts * ((means - overall) ** 2).sum(1)).sum() / len(x))
    within = float(((x - means[inverse]) ** 2).sum() / len(x))
    return {"between": between, "within": within, "ratio": between / within if within > 0 else float("inf")}


def centroid_cosines(x: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
    """(classes, C×C matrix of cos(μ_c, μ_c'), mean of its off-diagonal; nan for one class)."""
    classes, _, means = class_means(x, labels)
    unit = means / np.linalg.norm(means, axis=1, keepdims=True)
    matrix = unit @ unit.T
    off = ~np.eye(len(classes), dtype=bool)
    return classes, matrix, float(matrix[off].mean()) if off.any() else float("nan")


def class_gaps(x: np.ndarray, x_labels: np.ndarray, y: np.ndarray, y_labels: np.ndarray) -> dict[int, float]:
    """class → ‖μ_c(X̂) − μ_c(Ŷ)‖ for every class present in both modalities."""
    cx, _, mx = class_means(x, x_labels)
    cy, _, my = class_means(y, y_labels)
    both = np.intersect1d(cx, cy)
    return {int(c): float(np.linalg.norm(mx[np.searchsorted(cx, c)] - my[np.searchsorted(cy, c)])) for c in both}


def kmeans_agreement(x: np.ndarray, labels: np.ndarray, seed: int = 0,
                     n_init: int = KMEANS_N_INIT) -> dict[str, float]:
    """{"v_measure", "ami"} of seeded k-means clusters (k = classes present) against the labels."""
    from sklearn.cluster import KMeans
    from sklearn.metrics import adjusted_mutual_info_score, v_measure_score

    k = len(np.unique(labels))
    if k < 2 or k >= len(x):
        return {"v_measure": float("nan"), "ami": float("nan")}
    clusters = KMeans(n_clusters=k, n_init=n_init, random_state=seed).fit_predict(x)
    return {"v_measure": float(v_measure_score(labels, clusters)),
            "ami": float(adjusted_mutual_info_score(labels, clusters))}
