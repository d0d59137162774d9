"""How much of an embedding space lies along known directions: variance kept per subspace, and the gap's share.

Given a subspace S of the embedding space (rows of a (k, D) matrix of directions, orthonormalised here into a basis
Q, r × D, r = rank) and unit rows x̂_i (every row L2-normalised first, the convention of every embspace metric):

.. math::

    \\Sigma = \\frac1N \\sum_i (\\hat x_i - \\bar x)(\\hat x_i - \\bar x)^\\top, \\qquad
    V_S = \\operatorname{tr}(Q \\Sigma Q^\\top), \\qquad \\text{share}_S = V_S / \\operatorname{tr}\\Sigma

(population covariance, divided by N). Within class, Σ is replaced by the pooled within-class covariance
W = (1/N) Σ_i (x̂_i − x̄_{y_i})(x̂_i − x̄_{y_i})ᵀ: the variance a representation keeps *inside* a class along S —
the quantity Xue et al. (ICLR 2024, arXiv 2310.04971) call the mechanism of *intra-class contrasting* when S is the
core subspace. The gap direction Δ = mean(X̂) − mean(Ŷ) (Liang et al. 2022, not renormalised) splits as
‖Δ‖² = ‖QΔ‖² + ‖(I − QᵀQ)Δ‖²; ``gap_share`` is ‖QΔ‖² / ‖Δ‖².

The subspaces of several blocks need not be orthogonal to each other (a learned tower mixes them), so their
shares need not add up to 1 or less; each is exact for its own subspace.

Where the directions come from: on :mod:`embspace.data.synthetic` data they are known in the input space, and a
learned tower's images of them are estimated here by least squares (:func:`latent_directions`: for a linear tower
z = Wx without normalisation they are exactly W·D). On real dumps, a user's estimates serve: class-mean differences
(:func:`class_mean_directions`), the mean differences of an attribute (a background, a style), probe weights.

>>> import numpy as np
>>> x = np.array([[1.0, 1.0], [1.0, -1.0], [-1.0, 1.0], [-1.0, -1.0]]) * [3.0, 1.0]
>>> report = subspace_variance(x, np.array([[1.0, 0.0]]), normalize=False)
>>> report["variance"], report["total"], report["share"]
(9.0, 10.0, 0.9)
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from embspace.errors import InputError

__all__ = ["class_mean_directions", "from_moments", "gap_share", "latent_directions", "orthonormal_basis",
           "subspace_variance", "within_class_covariance"]

RANK_TOLERANCE = 1e-10
"""Singular values below this fraction of the largest are not part of the subspace."""


def orthonormal_basis(directions: np.ndarray, where: str = "directions") -> np.ndarray:
    """An orthonormal basis (r, D) of the span of the rows of ``directions`` (k, D), float64, r = numerical rank."""
    d = np.asarray(directions, dtype=np.float64)
    if d.ndim == 1:
        d = d[None, :]
    if d.ndim != 2 or d.shape[0] < 1 or d.shape[1] < 1:
        raise InputError(where, f"expected a (k, D) matrix of directions, got shape {d.shape}")
    if not np.isfinite(d).all():
        raise InputError(where, "contains NaN or Inf")
    _, s, vt = np.linalg.svd(d, full_matrices=False)
    if s.size == 0 or s[0] == 0:
        raise InputError(where, "every direction is zero: no subspace")
    return vt[s > RANK_TOLERANCE * s[0]]  # (r, D)


def _rows(x: np.ndarray, normalize: bool, where: str) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 2 or len(x) < 1:
        raise InputError(where, f"expected an (N, D) matrix, got shape {x.shape}")
    if not normalize:
        return x
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    if (norms == 0).any():
        raise InputError(where, f"row {int(np.flatnonzero(norms[:, 0] == 0)[0])} is all zeros (no direction)")
    return x / norms


def within_class_covariance(x: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """W = (1/N) Σ_i (x_i − x̄_{y_i})(x_i − x̄_{y_i})ᵀ, (D, D) float64 (x used as given)."""
    labels = np.asarray(labels)
    centred = np.array(x, dtype=np.float64)
    for c in np.unique(labels):
        rows = labels == c
        centred[rows] -= centred[rows].mean(0)
    return centred.T @ centred / len(centred)


def _check_labels(labels: np.ndarray, n: int) -> np.ndarray:
    labels = np.asarray(labels)
    if labels.ndim != 1 or len(labels) != n:
        raise InputError("labels", f"expected {n} labels (one per row), got shape {labels.shape}")
    return labels


def subspace_variance(x: np.ndarray, directions: np.ndarray, labels: np.ndarray | None = None, *,
                      normalize: bool = True) -> dict[str, float]:
    """Variance of ``x`` (N, D) along the span of ``directions`` (k, D), overall and (with ``labels``) within class.

    Returns ``variance`` V_S, ``total`` tr Σ, ``share`` V_S / tr Σ and, with labels, ``within``, ``within_total``,
    ``within_share`` — the same with the pooled within-class covariance. Rows are L2-normalised first unless
    ``normalize=False``.
    """
    rows = _rows(x, normalize, "embeddings")
    q = orthonormal_basis(directions)
    if q.shape[1] != rows.shape[1]:
        raise InputError("directions", f"have dimension {q.shape[1]} but the embeddings have {rows.shape[1]}")
    centred = rows - rows.mean(0)
    projected = centred @ q.T  # (N, r)
    total = float((centred**2).sum() / len(rows))
    variance = float((projected**2).sum() / len(rows))
    out = {"variance": variance, "total": total, "share": variance / total if total > 0 else 0.0}
    if labels is not None:
        w = within_class_covariance(rows, _check_labels(labels, len(rows)))
        within, within_total = float(np.trace(q @ w @ q.T)), float(np.trace(w))
        out.update(within=within, within_total=within_total,
                   within_share=within / within_total if within_total > 0 else 0.0)
    return out


def gap_share(x: np.ndarray, y: np.ndarray, directions: np.ndarray, *, normalize: bool = True) -> float:
    """‖QΔ‖² / ‖Δ‖², Δ = mean(X̂) − mean(Ŷ): the share of the squared gap that lies in the span of ``directions``."""
    rx, ry = _rows(x, normalize, "image"), _rows(y, normalize, "text")
    if rx.shape != ry.shape:
        raise InputError("pairs", f"paired embeddings must have one shape, got {rx.shape} and {ry.shape}")
    q = orthonormal_basis(directions)
    delta = rx.mean(0) - ry.mean(0)  # (D,)
    squared = float(delta @ delta)
    return float(((q @ delta) ** 2).sum() / squared) if squared > 0 else 0.0


def from_moments(gram: np.ndarray, total: np.ndarray, n: int, basis: np.ndarray) -> tuple[float, float]:
    """(V_S, tr Σ) from streamed sums: Σ = G/N − μμᵀ with G = Σ x̂ᵀx̂ (D, D), μ = Σx̂ / N (how the family computes
    them without holding the rows)."""
    mean = np.asarray(total, dtype=np.float64) / n
    g = np.asarray(gram, dtype=np.float64) / n
    projected_mean = basis @ mean
    variance = float(np.einsum("rd,de,re->", basis, g, basis) - projected_mean @ projected_mean)
    return max(variance, 0.0), max(float(np.trace(g) - mean @ mean), 0.0)


def latent_directions(embeddings: np.ndarray, latents: np.ndarray, blocks: Mapping[str, slice], *,
                      normalize: bool = True) -> dict[str, np.ndarray]:
    """Each latent block's directions in an embedding space, by least squares: z ≈ b + μ·A, A (k, D); block B's
    directions are the rows A[B]. Exactly W·D for a linear tower z = Wx, x = Dμ (``normalize=False``)."""
    z = _rows(embeddings, normalize, "embeddings")
    mu = np.asarray(latents, dtype=np.float64)
    design = np.hstack([mu, np.ones((len(mu), 1))])  # (N, k + 1)
    coefficients, *_ = np.linalg.lstsq(design, z, rcond=None)  # (k + 1, D)
    return {name: coefficients[where] for name, where in blocks.items()}


def class_mean_directions(embeddings: np.ndarray, labels: np.ndarray, *, normalize: bool = True) -> np.ndarray:
    """The class means minus the overall mean, (C, D): an estimate of the class (core) subspace on real dumps
    (its span has rank C − 1)."""
    z = _rows(embeddings, normalize, "embeddings")
    labels = _check_labels(labels, len(z))
    means = np.stack([z[labels == c].mean(0) for c in np.unique(labels)])
    return means - z.mean(0)
