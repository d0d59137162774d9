"""The diagnostics of known directions recover the variances of constructed data exactly (float64 closed forms)."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from embspace.errors import InputError
from embspace.metrics.directions import (
    class_mean_directions,
    from_moments,
    gap_share,
    latent_directions,
    orthonormal_basis,
    subspace_variance,
)

D = 7
SIGMAS = (3.0, 2.0, 0.5)  # standard deviations along u1, u2, u3


def rotation(seed: int) -> np.ndarray:
    q, _ = np.linalg.qr(np.random.default_rng(seed).standard_normal((D, D)))
    return q  # (D, D), columns u1 … u7 orthonormal


def sign_design(sigmas) -> np.ndarray:
    """Every sign pattern of (±σ1, ±σ2, …): mean exactly 0, population variance exactly σ_j², no covariance."""
    return np.array(list(itertools.product(*[(-s, s) for s in sigmas])))  # (2^k, k)


def constructed(seed: int = 0, means=(0.0, 4.0, -2.0)):
    """Three classes whose means differ along u1 only; inside each class the sign design along u1, u2, u3."""
    u = rotation(seed)
    within = sign_design(SIGMAS)  # (8, 3)
    rows, labels = [], []
    for c, m in enumerate(means):
        coords = within.copy()
        coords[:, 0] += m
        rows.append(coords @ u[:, :3].T)
        labels += [c] * len(coords)
    return np.vstack(rows), np.array(labels), u


def test_variance_along_a_subspace_is_the_sum_of_its_variances():
    x, labels, u = constructed()
    between = np.var([0.0, 4.0, -2.0])  # equal class sizes: the between-class variance along u1
    total = sum(s**2 for s in SIGMAS) + between
    # a non-orthonormal spanning set of span(u1, u2)
    found = subspace_variance(x, np.stack([2 * u[:, 0] + u[:, 1], -u[:, 1]]), labels, normalize=False)
    assert found["variance"] == pytest.approx(9.0 + between + 4.0, abs=1e-12)
    assert found["total"] == pytest.approx(total, abs=1e-12)
    assert found["share"] == pytest.approx((13.0 + between) / total, abs=1e-12)
    assert found["within"] == pytest.approx(13.0, abs=1e-12)
    assert found["within_total"] == pytest.approx(13.25, abs=1e-12)
    assert found["within_share"] == pytest.approx(13.0 / 13.25, abs=1e-12)
    # along u3 only, and along a direction that carries none of the variance
    assert subspace_variance(x, u[:, 2], labels, normalize=False)["within"] == pytest.approx(0.25, abs=1e-12)
    assert subspace_variance(x, u[:, 5], labels, normalize=False)["variance"] == pytest.approx(0.0, abs=1e-12)


def test_normalised_rows_of_equal_norm_scale_every_variance_by_one_over_the_squared_norm():
    u = rotation(1)
    x = sign_design(SIGMAS) @ u[:, :3].T  # every row has the norm r
    r2 = sum(s**2 for s in SIGMAS)
    found = subspace_variance(x, u[:, :1].T)
    assert found["variance"] == pytest.approx(9.0 / r2, abs=1e-12)
    assert found["total"] == pytest.approx(1.0, abs=1e-12)


def test_from_moments_equals_the_row_formula():
    x, _, u = constructed(2)
    basis = orthonormal_basis(u[:, [0, 2]].T)
    variance, total = from_moments(x.T @ x, x.sum(0), len(x), basis)
    assert variance == pytest.approx(9.0 + np.var([0.0, 4.0, -2.0]) + 0.25, abs=1e-10)
    assert total == pytest.approx(sum(s**2 for s in SIGMAS) + np.var([0.0, 4.0, -2.0]), abs=1e-10)


def test_gap_share_is_the_squared_projection_of_the_centroid_difference():
    u = rotation(3)
    base = sign_design((1.0, 1.0)) @ u[:, 3:5].T  # centred, orthogonal to u1, u2
    x = base + 3.0 * u[:, 0]
    y = base - 4.0 * u[:, 1]  # Δ = 3 u1 + 4 u2, ‖Δ‖² = 25
    assert gap_share(x, y, u[:, :1].T, normalize=False) == pytest.approx(9 / 25, abs=1e-12)
    assert gap_share(x, y, u[:, 1:2].T, normalize=False) == pytest.approx(16 / 25, abs=1e-12)
    assert gap_share(x, y, u[:, :2].T, normalize=False) == pytest.approx(1.0, abs=1e-12)
    assert gap_share(x, y, u[:, 5:7].T, normalize=False) == pytest.approx(0.0, abs=1e-12)


def test_latent_directions_of_a_linear_tower_are_its_map_of_the_true_directions():
    rng = np.random.default_rng(4)
    latents = rng.standard_normal((200, 5))
    d = np.linalg.qr(rng.standard_normal((9, 5)))[0]  # (9, 5) the encoder
    w = rng.standard_normal((6, 9))  # (6, 9) the tower
    z = latents @ d.T @ w.T  # (200, 6)
    found = latent_directions(z, latents, {"a": slice(0, 2), "b": slice(2, 5)}, normalize=False)
    np.testing.assert_allclose(found["a"], (w @ d[:, :2]).T, atol=1e-10)
    np.testing.assert_allclose(found["b"], (w @ d[:, 2:]).T, atol=1e-10)


def test_class_mean_directions_span_the_between_class_subspace():
    x, labels, u = constructed(5)
    means = class_mean_directions(x, labels, normalize=False)
    np.testing.assert_allclose(means, np.outer([0.0 - 2 / 3, 4.0 - 2 / 3, -2.0 - 2 / 3], u[:, 0]), atol=1e-12)
    assert orthonormal_basis(means).shape == (1, D)


@pytest.mark.parametrize(("directions", "message"), [
    (np.zeros((2, D)), "every direction is zero"), (np.full((1, D), np.nan), "NaN"), (np.ones((1, 3)), "dimension"),
])
def test_bad_directions_are_input_errors(directions, message):
    x, labels, _ = constructed()
    with pytest.raises(InputError, match=message):
        subspace_variance(x, directions, labels)


def test_labels_must_be_one_per_row():
    x, labels, u = constructed()
    with pytest.raises(InputError, match="labels"):
        subspace_variance(x, u[:, 0], labels[:-1])
