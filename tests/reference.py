"""Independent float64 references: numpy / scipy brute force, written from the definitions in METHODS.md."""

from __future__ import annotations

import numpy as np
from scipy.spatial.distance import cdist, pdist
from scipy.stats import skew


def unit(a: np.ndarray) -> np.ndarray:
    a = np.asarray(a, dtype=np.float64)
    return a / np.linalg.norm(a, axis=1, keepdims=True)


def uniformity(x: np.ndarray, t: float = 2.0) -> float:
    return float(np.log(np.mean(np.exp(-t * pdist(unit(x), "sqeuclidean")))))


def uniformity_cross(x: np.ndarray, y: np.ndarray, t: float = 2.0) -> float:
    d = cdist(unit(x), unit(y), "sqeuclidean")
    off = ~np.eye(len(x), dtype=bool)
    return float(np.log(np.mean(np.exp(-t * d[off]))))


def uniformity_joint(x: np.ndarray, y: np.ndarray, t: float = 2.0) -> float:
    return uniformity(np.concatenate([unit(x), unit(y)]), t)


def gap(x: np.ndarray, y: np.ndarray) -> float:
    return float(np.linalg.norm(unit(x).mean(0) - unit(y).mean(0)))


def centroid_cosine(x: np.ndarray, y: np.ndarray) -> float:
    a, b = unit(x).mean(0), unit(y).mean(0)
    return float(a @ b / np.linalg.norm(a) / np.linalg.norm(b))


def cone(x: np.ndarray) -> float:
    s = unit(x) @ unit(x).T
    return float(s[~np.eye(len(x), dtype=bool)].mean())


def matched_cosine(x: np.ndarray, y: np.ndarray) -> float:
    return float(np.mean(np.sum(unit(x) * unit(y), axis=1)))


def alignment(x: np.ndarray, y: np.ndarray, alpha: float = 2.0) -> float:
    return float(np.mean(np.linalg.norm(unit(x) - unit(y), axis=1) ** alpha))


def rmg(x: np.ndarray, y: np.ndarray, floor: str = "source") -> float:
    """Schrodi et al.'s compute_rmg: 1e-3 replaces d_m only where d_m ≤ 0 (``floor="source"``); ``"clamp"``: max."""
    d_m = 1 - (matched_cosine(x, y) + 1) / 2
    d_m = max(d_m, 1e-3) if floor == "clamp" else (d_m if d_m > 0 else 1e-3)
    d_a, d_b = 1 - (cone(x) + 1) / 2, 1 - (cone(y) + 1) / 2
    return d_m / (d_m + (d_a + d_b) / 2)


def recall(x: np.ndarray, y: np.ndarray, k: int) -> float:
    """Fraction of rows whose partner is in the top-k by cosine (full sort; ties broken for the partner)."""
    s = unit(x) @ unit(y).T
    hits = 0
    for i, row in enumerate(s):
        better = np.sum(np.delete(row, i) > row[i])
        hits += better < k
    return hits / len(s)


def hubness(x: np.ndarray, y: np.ndarray, k: int = 10) -> float:
    s = unit(x) @ unit(y).T
    top = np.argsort(-s, axis=1, kind="stable")[:, :k]
    return float(skew(np.bincount(top.ravel(), minlength=len(y)).astype(float)))


def singular_values(x: np.ndarray, centered: bool) -> np.ndarray:
    a = unit(x)
    if centered:
        a = a - a.mean(0)
    return np.linalg.svd(a, compute_uv=False)


def entropy_rank(sigma: np.ndarray, eps: float) -> float:
    p = sigma / sigma.sum() + eps
    p = p[p > 0]
    return float(np.exp(-np.sum(p * np.log(p))))


def rankme(x: np.ndarray) -> float:
    sigma = singular_values(x, centered=False)
    return entropy_rank(sigma, 1e-7)


def effective_rank(x: np.ndarray, centered: bool) -> float:
    sigma = singular_values(x, centered)
    if centered:
        sigma = sigma[: min(len(x) - 1, x.shape[1])]
    return entropy_rank(sigma, 0.0)


def rankme_covariance(x: np.ndarray) -> float:
    """reptrix get_rankme: sklearn PCA's explained-variance ratios of the centred rows, ε = 1e-7."""
    from sklearn.decomposition import PCA

    a = unit(x)
    eig = PCA(n_components=min(2048, *a.shape), svd_solver="full").fit(a - a.mean(0)).explained_variance_ratio_
    p = eig / np.abs(eig).sum() + 1e-7
    return float(np.exp(-np.sum(p * np.log(p))))


def alpha_req_reptrix(x: np.ndarray, first: int = 11, last: int = 100) -> float:
    """reptrix get_alpha / get_powerlaw, transcribed: PCA explained-variance ratios of the centred rows, then the
    1/k-weighted normal equations of log λ_k = −α log k + c over k = first … last."""
    from sklearn.decomposition import PCA

    a = unit(x)
    eig = PCA(n_components=min(2048, *a.shape), svd_solver="full").fit(a - a.mean(0)).explained_variance_ratio_
    trange = np.arange(first - 1, last)
    y = np.log(np.abs(eig))[trange][:, np.newaxis]
    trange = trange + 1
    design = np.concatenate((-np.log(trange)[:, np.newaxis], np.ones((trange.size, 1))), axis=1)
    w = 1.0 / trange.astype(np.float32)[:, np.newaxis]
    return float(np.linalg.solve(design.T @ (design * w), (w * design).T @ y).flatten()[0])


def participation_ratio(x: np.ndarray) -> float:
    lam = np.linalg.eigvalsh(np.cov(unit(x), rowvar=False))
    return float(lam.sum() ** 2 / (lam**2).sum())


def cone_data(n: int, d: int, spread: float, seed: int) -> np.ndarray:
    """Rows clustered around one direction (a narrow cone, like real CLIP embeddings)."""
    rng = np.random.default_rng(seed)
    axis = rng.normal(size=d)
    return unit(axis / np.linalg.norm(axis) + spread * rng.normal(size=(n, d)) / np.sqrt(d))


def clustered_data(n: int, d: int, clusters: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(clusters, d))
    return unit(centers[rng.integers(0, clusters, n)] + 0.3 * rng.normal(size=(n, d)))


def paired_data(kind: str, n: int, d: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Two modalities with a gap: y_i is a noisy copy of x_i shifted along a common direction."""
    rng = np.random.default_rng(seed + 1)
    if kind == "random":
        x = unit(rng.normal(size=(n, d)))
    elif kind == "cone":
        x = cone_data(n, d, 2.0, seed)
    else:
        x = clustered_data(n, d, 5, seed)
    shift = rng.normal(size=d)
    y = unit(x + 0.8 * rng.normal(size=(n, d)) / np.sqrt(d) + 0.6 * shift / np.linalg.norm(shift))
    return x, y
