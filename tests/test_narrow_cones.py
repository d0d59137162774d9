"""Narrow cones keep their accuracy: every uniformity variant, every tile precision, against float64 brute force.

Data: two paired modalities of unit rows normalise(c + s·noise), normalise(c′ + s·noise′), from CLIP-like cones
(mean cosine 0.5) to collapsed ones (0.99999, as at random initialisation), where 1 − x̂·ŷ ≈ 10⁻⁵ and the
textbook exp(2t(x̂·ŷ − 1)) loses most of its digits (fp16: 18 %, bf16: several times U at cone 0.99998). The
engine computes the exponent from rows centred about a point of their cone (``Rows.centred``, ``ExpSum``), so
the guarantee of docs/precision.md holds: |U − U_float64| ≤ 10⁻³·|U| for every precision, every variant, exact and
streamed rows, any reductions sharing the pass; U ≤ 0 always. Sampled estimates hold the exact value.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.spatial.distance import cdist, pdist
from scipy.special import logsumexp

import embspace
from embspace.kernels.engine import stream_pairs
from embspace.kernels.pairwise import ExpSum, distance_terms
from embspace.kernels.rows import centre_block, prepare_rows

CPU = torch.device("cpu")
VARIANTS = ("image", "text", "mean", "joint", "cross")
GUARANTEE = 1e-3  # relative, every precision (docs/precision.md)
BOUND = {"fp64": 1e-9, "fp32": 1e-6, "bf16": 3e-4, "fp16": 5e-5}  # what each precision achieves here, with margin
CONES = (0.5, 0.99, 0.9999, 0.99998, 0.99999)


def cone_pairs(n: int, dim: int, cone: float, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Unit rows with mean cosine ≈ ``cone`` (noise s = √(1/cone − 1)) and partners about a centre 0.3·s away."""
    rng = np.random.default_rng(seed)
    s = np.sqrt(1 / cone - 1)
    c = rng.normal(size=dim)
    c /= np.linalg.norm(c)
    gap = rng.normal(size=dim)
    gap *= 0.3 * s / np.linalg.norm(gap)
    unit = lambda a: a / np.linalg.norm(a, axis=1, keepdims=True)  # noqa: E731
    return (unit(c + s * rng.normal(size=(n, dim)) / np.sqrt(dim)),
            unit(c + gap + s * rng.normal(size=(n, dim)) / np.sqrt(dim)))


def brute_force(x: np.ndarray, y: np.ndarray, t: float = 2.0) -> dict[str, float]:
    """Every variant from float64 squared distances (log-sum-exp, METHODS.md)."""
    def u(d2: np.ndarray) -> float:
        return float(logsumexp(-t * d2) - np.log(len(d2)))

    cross = cdist(x, y, "sqeuclidean")[~np.eye(len(x), dtype=bool)]
    ux, uy = u(pdist(x, "sqeuclidean")), u(pdist(y, "sqeuclidean"))
    return {"image": ux, "text": uy, "mean": (ux + uy) / 2, "joint": u(pdist(np.concatenate([x, y]), "sqeuclidean")),
            "cross": u(cross)}


def relative_errors(values: dict[str, float], expected: dict[str, float]) -> dict[str, float]:
    return {v: abs(values[v] - expected[v]) / abs(expected[v]) for v in VARIANTS}


@pytest.fixture(scope="module")
def spaces() -> dict[float, tuple[np.ndarray, np.ndarray, dict[str, float]]]:
    out = {}
    for cone in CONES:
        x, y = cone_pairs(150, 48, cone, seed=int(cone * 1e5) % 997)
        out[cone] = (x, y, brute_force(x, y))
    return out


def test_the_data_are_as_narrow_as_named(spaces):
    for cone, (x, _, _) in spaces.items():
        s = x @ x.T
        assert s[~np.eye(len(x), dtype=bool)].mean() == pytest.approx(cone, abs=0.05 * (1 - cone))


@pytest.mark.parametrize("precision", list(BOUND))
@pytest.mark.parametrize("cone", CONES)
def test_every_variant_at_every_precision_equals_float64(spaces, cone, precision):
    x, y, expected = spaces[cone]
    report = embspace.measure(image=x, text=y, metrics="uniformity", precision=precision, device="cpu")
    values = report.metrics["uniformity"]
    errors = relative_errors(values, expected)
    assert max(errors.values()) <= min(GUARANTEE, BOUND[precision]), errors
    assert all(values[v] <= 0 for v in VARIANTS)


@pytest.mark.parametrize("precision", ["fp32", "bf16", "fp16"])
def test_streamed_rows_keep_the_accuracy(spaces, precision):
    """Rows read from their source block by block (a tiny budget) are centred before rounding, as resident ones."""
    x, y, expected = spaces[0.99998]
    streamed = embspace.measure(image=x, text=y, metrics="uniformity", precision=precision, device="cpu", tile=64,
                                memory=1024)
    assert streamed.settings["memory"]["streamed"] == ["image", "text"]
    resident = embspace.measure(image=x, text=y, metrics="uniformity", precision=precision, device="cpu", tile=64)
    assert max(relative_errors(streamed.metrics["uniformity"], expected).values()) <= BOUND[precision]
    for v in VARIANTS:
        assert streamed[f"uniformity.{v}"] == pytest.approx(resident[f"uniformity.{v}"], rel=1e-9)


@pytest.mark.parametrize("precision", ["fp32", "fp16"])
def test_the_value_does_not_depend_on_the_other_families(spaces, precision):
    x, y, _ = spaces[0.99998]
    alone = embspace.measure(image=x, text=y, metrics="uniformity", precision=precision, device="cpu", tile=64)
    shared = embspace.measure(image=x, text=y, metrics="uniformity,histograms,retrieval,hubness,gap",
                              precision=precision, device="cpu", tile=64)
    assert alone.metrics["uniformity"] == shared.metrics["uniformity"]


@pytest.mark.parametrize("t", [0.5, 30.0, 200.0])  # 4t > 80: the running log-shift
def test_every_temperature_on_a_collapsed_space(spaces, t):
    x, y, _ = spaces[0.99998]
    expected = brute_force(x, y, t)
    for precision in ("fp32", "fp16"):
        report = embspace.measure(image=x, text=y, metrics="uniformity", precision=precision, device="cpu", t=t)
        assert max(relative_errors(report.metrics["uniformity"], expected).values()) <= 1e-4


@pytest.mark.parametrize("cone", [0.5, 0.99998])
def test_sampled_estimates_hold_the_exact_value(spaces, cone):
    """The sampled estimate (from centred squared distances) lies within 4 standard errors of the exact value."""
    x, y, expected = spaces[cone]
    report = embspace.measure(image=x, text=y, metrics="uniformity", estimate="sampled", pairs=20_000,
                              precision="fp16", device="cpu", seed=3)
    for v in VARIANTS:
        low, high = report.uncertainty[f"uniformity.{v}"]["ci"]
        half = (high - low) / 2
        assert abs(report[f"uniformity.{v}"] - expected[v]) <= 4 * half / 1.96, v
        assert half < 0.02 * abs(expected[v])  # an interval that says something
        assert report[f"uniformity.{v}"] <= 0


def test_dot_form_fails_where_the_engine_does_not(spaces):
    """The textbook exp(2t(s − 1)) from tiles of fp16 similarities is off by percents at cone 0.99998 (the test
    can tell the two apart); the engine's centred form is not."""
    x, _, expected = spaces[0.99998]
    rows = prepare_rows(x, CPU, torch.float16)
    dot = ExpSum(2.0, symmetric=True, exclude_diagonal=True)
    sim = rows.block(0, rows.n).float() @ rows.block(0, rows.n).float().T
    dot.update(sim, 0, 0, diagonal=True)
    centred = ExpSum(2.0, symmetric=True, exclude_diagonal=True)
    stream_pairs(rows, None, [centred])
    pairs = np.log(rows.n * (rows.n - 1) / 2)
    assert abs(dot.log_sum() - pairs - expected["image"]) > 0.01 * abs(expected["image"])
    assert abs(centred.log_sum() - pairs - expected["image"]) < BOUND["fp16"] * abs(expected["image"])


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32, torch.float16, torch.bfloat16])
def test_distance_terms_give_squared_distances_about_any_centres(dtype):
    """Q_i + Q'_j − 2 w_i w_j v_i·v_j = ‖x̂_i − ŷ_j‖² of the stored offsets, whatever the two centres."""
    rng = np.random.default_rng(5)
    x, y = cone_pairs(30, 16, 0.999, seed=1)
    a = centre_block(torch.from_numpy(x), torch.from_numpy(rng.normal(size=16)), dtype)
    b = centre_block(torch.from_numpy(y), torch.from_numpy(rng.normal(size=16)), dtype)
    q_a, q_b = distance_terms(a, b)
    points_a = (a.offsets() + a.centre).numpy()
    points_b = (b.offsets() + b.centre).numpy()
    d2 = q_a.numpy()[:, None] + q_b.numpy()[None, :] - 2 * a.offsets().numpy() @ b.offsets().numpy().T
    np.testing.assert_allclose(d2, cdist(points_a, points_b, "sqeuclidean"), rtol=1e-9, atol=1e-9)
    if dtype in (torch.float16, torch.bfloat16):  # scaled to the full mantissa: the largest |v| is in [½, 1)
        peak = a.vectors.abs().amax(1).double()
        assert bool(((peak >= 0.5) & (peak < 1)).all())


def test_exp_sum_of_identical_rows_is_exactly_zero_uniformity():
    """Duplicated rows: every distance is 0, so U = 0 exactly (never above, whatever the rounding)."""
    row = cone_pairs(1, 32, 0.9, seed=2)[0]
    x = np.repeat(row, 20, axis=0)
    for precision in ("fp64", "fp32", "bf16", "fp16"):
        report = embspace.measure(image=x, text=x, metrics="uniformity", precision=precision, device="cpu")
        for v in VARIANTS:
            assert report[f"uniformity.{v}"] == 0.0, (precision, v)
