"""Tests of the training-free baselines: Liang et al.'s gap shift and per-modality centring."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from embspace.finetune import center_modalities, shift_gap


def mirrored(angle: float = 0.6, dtype: torch.dtype = torch.float64) -> tuple[torch.Tensor, torch.Tensor]:
    """x̂_i = cos a·e₀ + sin a·v_i, ŷ_i = −cos a·e₀ + sin a·v_i with v_i ∈ {±e₁, ±e₂} (mean 0): Δ = 2 cos a·e₀."""
    v = torch.tensor([[0, 1, 0], [0, -1, 0], [0, 0, 1], [0, 0, -1]], dtype=dtype)
    u = torch.tensor([1, 0, 0], dtype=dtype)
    return math.cos(angle) * u + math.sin(angle) * v, -math.cos(angle) * u + math.sin(angle) * v


def gap(x: torch.Tensor, y: torch.Tensor) -> float:
    return float(np.linalg.norm(x.double().numpy().mean(0) - y.double().numpy().mean(0)))


@pytest.mark.parametrize("lam", [0.0, 0.25, 0.5, 0.75, 1.0, -0.5])
def test_shift_gap_closed_form_on_mirrored_data(lam):
    a = 0.6
    x, y = mirrored(a)
    xs, ys = shift_gap(x, y, lam)
    # rows become ((1−2λ)cos a, sin a·v) / r, r = √((1−2λ)² cos² a + sin² a); gap = 2|1−2λ| cos a / r
    r = math.sqrt((1 - 2 * lam) ** 2 * math.cos(a) ** 2 + math.sin(a) ** 2)
    assert gap(xs, ys) == pytest.approx(2 * abs(1 - 2 * lam) * math.cos(a) / r, abs=1e-12)


def test_shift_gap_half_meets_and_one_swaps():
    x, y = mirrored()
    xs, ys = shift_gap(x, y, 0.5)
    assert gap(xs, ys) == pytest.approx(0.0, abs=1e-15)
    torch.testing.assert_close(xs, ys, atol=1e-15, rtol=0)
    xs, ys = shift_gap(x, y, 1.0)  # λ = 1 exchanges the centroids: here it maps each row onto its partner
    torch.testing.assert_close(xs, y, atol=1e-15, rtol=0)
    torch.testing.assert_close(ys, x, atol=1e-15, rtol=0)


def test_shift_gap_elementwise_reference_unit_norm_and_inputs_untouched():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(7, 5, generator=g, dtype=torch.float64) + 1.0
    y = torch.randn(9, 5, generator=g, dtype=torch.float64) - 1.0  # the two modalities need not pair
    x0, y0 = x.clone(), y.clone()
    xs, ys = shift_gap(x, y, 0.3)
    xn, yn = x.numpy(), y.numpy()
    xh = xn / np.linalg.norm(xn, axis=1, keepdims=True)
    yh = yn / np.linalg.norm(yn, axis=1, keepdims=True)
    delta = xh.mean(0) - yh.mean(0)
    for i in range(7):
        row = xh[i] - 0.3 * delta
        np.testing.assert_allclose(xs[i].numpy(), row / np.linalg.norm(row), atol=1e-12)
    for j in range(9):
        row = yh[j] + 0.3 * delta
        np.testing.assert_allclose(ys[j].numpy(), row / np.linalg.norm(row), atol=1e-12)
    torch.testing.assert_close(xs.norm(dim=1), torch.ones(7, dtype=torch.float64))
    torch.testing.assert_close(ys.norm(dim=1), torch.ones(9, dtype=torch.float64))
    assert torch.equal(x, x0) and torch.equal(y, y0)
    assert gap(xs, ys) < gap(torch.nn.functional.normalize(x, dim=1), torch.nn.functional.normalize(y, dim=1))


def test_shift_gap_liang_unit_direction_mapping():
    g = torch.Generator().manual_seed(1)
    x = torch.nn.functional.normalize(torch.randn(6, 4, generator=g, dtype=torch.float64) + 1, dim=1)
    y = torch.nn.functional.normalize(torch.randn(6, 4, generator=g, dtype=torch.float64) - 1, dim=1)
    delta = x.mean(0) - y.mean(0)
    unit = delta / delta.norm()
    step = 1.75  # Liang et al.'s `delta`: image − ½·step·û, text + ½·step·û
    liang_x = torch.nn.functional.normalize(x - 0.5 * step * unit, dim=1)
    liang_y = torch.nn.functional.normalize(y + 0.5 * step * unit, dim=1)
    xs, ys = shift_gap(x, y, step / (2 * float(delta.norm())))
    torch.testing.assert_close(xs, liang_x, atol=1e-12, rtol=0)
    torch.testing.assert_close(ys, liang_y, atol=1e-12, rtol=0)
    xs, ys = shift_gap(x, y, 0.5 * step, direction=unit)
    torch.testing.assert_close(xs, liang_x, atol=1e-12, rtol=0)
    torch.testing.assert_close(ys, liang_y, atol=1e-12, rtol=0)


def test_shift_gap_normalized_flag_and_half_precision():
    x, y = mirrored()
    torch.testing.assert_close(shift_gap(3 * x, y, 0.2)[0], shift_gap(x, y, 0.2, normalized=True)[0])
    xs, ys = shift_gap(x.half(), y.half(), 0.5)
    assert xs.dtype == torch.float16 and ys.dtype == torch.float16
    assert torch.isfinite(xs).all() and torch.isfinite(ys).all()


def test_shift_gap_large_n_never_builds_n_by_n():
    n = 300_000  # an N×N matrix would need 360 GB in float32
    x = torch.randn(n, 8) + 1
    y = torch.randn(n, 8) - 1
    xs, ys = shift_gap(x, y, 0.5)
    assert xs.shape == (n, 8) and ys.shape == (n, 8)
    assert gap(xs, ys) < 0.1 * gap(torch.nn.functional.normalize(x, dim=1), torch.nn.functional.normalize(y, dim=1))


def test_center_modalities_reference_and_symmetric_case():
    g = torch.Generator().manual_seed(2)
    x = torch.randn(8, 5, generator=g, dtype=torch.float64) + 2
    y = torch.randn(6, 5, generator=g, dtype=torch.float64)
    x0 = x.clone()
    xc, yc = center_modalities(x, y)
    xn = x.numpy() / np.linalg.norm(x.numpy(), axis=1, keepdims=True)
    for i in range(8):
        row = xn[i] - xn.mean(0)
        np.testing.assert_allclose(xc[i].numpy(), row / np.linalg.norm(row), atol=1e-12)
    torch.testing.assert_close(xc.norm(dim=1), torch.ones(8, dtype=torch.float64))
    torch.testing.assert_close(yc.norm(dim=1), torch.ones(6, dtype=torch.float64))
    assert torch.equal(x, x0)
    xm, ym = mirrored()
    xc, yc = center_modalities(xm, ym)  # each modality's mean is ±cos a·e₀: centring leaves v_i in both
    torch.testing.assert_close(xc, yc, atol=1e-15, rtol=0)
    assert gap(xc, yc) == pytest.approx(0.0, abs=1e-15)


def test_center_modalities_dtype_and_shape_check():
    x, y = mirrored(dtype=torch.float32)
    xc, yc = center_modalities(x.bfloat16(), y.bfloat16())
    assert xc.dtype == yc.dtype == torch.bfloat16 and torch.isfinite(xc.float()).all()
    with pytest.raises(ValueError):
        center_modalities(torch.ones(3), torch.ones(3))
