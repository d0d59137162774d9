"""Tests of embspace.finetune: slerp, the mixing helpers and the fine-tuning losses.

Every value is checked against an independent float64 computation written here with explicit loops over
NumPy arrays (not the library's own code), plus gradchecks, limits, symmetries and module/function agreement.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import stats

import embspace.finetune as ft
from embspace.finetune import losses as losses_module

# ---------------------------------------------------------------------------------------------- references


def _unit(a: np.ndarray) -> np.ndarray:
    return a / np.linalg.norm(a, axis=-1, keepdims=True)


def _np(t: torch.Tensor) -> np.ndarray:
    return t.detach().double().numpy()


def ref_slerp(a: np.ndarray, b: np.ndarray, lam: float) -> np.ndarray:
    """Textbook slerp of two unit vectors, λ on a."""
    theta = math.acos(float(np.clip(a @ b, -1.0, 1.0)))
    return (math.sin(lam * theta) * a + math.sin((1 - lam) * theta) * b) / math.sin(theta)


def ref_logsumexp(row: list[float]) -> float:
    m = max(row)
    return m + math.log(sum(math.exp(v - m) for v in row))


def ref_soft_ce(logits: np.ndarray, target: np.ndarray) -> float:
    """mean_i −Σ_j T_ij log softmax(L_i)_j, with loops."""
    n = logits.shape[0]
    total = 0.0
    for i in range(n):
        lse = ref_logsumexp(list(logits[i]))
        total += -sum(target[i, j] * (logits[i, j] - lse) for j in range(logits.shape[1]))
    return total / n


def ref_clip(x: np.ndarray, y: np.ndarray, scale: float) -> float:
    xh, yh = _unit(x), _unit(y)
    n = len(xh)
    logits = np.array([[scale * float(xh[i] @ yh[j]) for j in range(n)] for i in range(n)])
    eye = np.eye(n)
    return 0.5 * (ref_soft_ce(logits, eye) + ref_soft_ce(logits.T, eye))


def ref_m2mix_logits(x: np.ndarray, y: np.ndarray, lam: float, tau2: float) -> tuple[np.ndarray, np.ndarray]:
    """The m²-mix logit matrices built element by element."""
    xh, yh = _unit(x), _unit(y)
    n = len(xh)
    mixed = [ref_slerp(xh[j], yh[j], lam) for j in range(n)]
    image_side = np.zeros((n, n))
    text_side = np.zeros((n, n))
    for i in range(n):
        for j in range(n):
            if i == j:
                image_side[i, j] = float(xh[i] @ yh[i]) / tau2
                text_side[i, j] = float(yh[i] @ xh[i]) / tau2
            else:
                image_side[i, j] = float(xh[i] @ mixed[j]) / tau2
                text_side[i, j] = float(yh[i] @ mixed[j]) / tau2
    return image_side, text_side


def ref_m2mix(x: np.ndarray, y: np.ndarray, lam: float, tau2: float) -> float:
    image_side, text_side = ref_m2mix_logits(x, y, lam, tau2)
    eye = np.eye(len(x))
    return ref_soft_ce(image_side, eye) + ref_soft_ce(text_side, eye)


def ref_flip_target(n: int, lam: float) -> np.ndarray:
    target = np.zeros((n, n))
    for i in range(n):
        target[i, i] += lam
        target[i, n - 1 - i] += 1 - lam
    return target


def ref_unimix(x: np.ndarray, y: np.ndarray, lam: float, scale: float, mode: str) -> float:
    """V-mix ('v'), L-mix ('l') and VL-mix ('vl') with loops: reversed-batch slerp, soft targets."""
    xh, yh = _unit(x), _unit(y)
    n = len(xh)
    xm = np.array([ref_slerp(xh[i], xh[n - 1 - i], lam) if i != n - 1 - i else xh[i] for i in range(n)])
    ym = np.array([ref_slerp(yh[i], yh[n - 1 - i], lam) if i != n - 1 - i else yh[i] for i in range(n)])
    rows, cols = {"v": (xm, yh), "l": (xh, ym), "vl": (xm, ym)}[mode]
    logits = np.array([[scale * float(rows[i] @ cols[j]) for j in range(n)] for i in range(n)])
    if mode == "vl":
        target = np.zeros((n, n))
        for i in range(n):
            target[i, i] += 1.0
            target[i, n - 1 - i] += 1.0
    else:
        target = ref_flip_target(n, lam)
    return 0.5 * (ref_soft_ce(logits, target) + ref_soft_ce(logits.T, target.T))


def ref_uniformity(z: np.ndarray, t: float = 2.0) -> float:
    zh = _unit(z)
    vals = [math.exp(-t * float(np.sum((zh[i] - zh[j]) ** 2))) for i in range(len(zh)) for j in range(i + 1, len(zh))]
    return math.log(sum(vals) / len(vals))


def ref_cross_uniformity(x: np.ndarray, y: np.ndarray, t: float = 2.0) -> float:
    xh, yh = _unit(x), _unit(y)
    n = len(xh)
    vals = [math.exp(-t * float(np.sum((xh[i] - yh[j]) ** 2))) for i in range(n) for j in range(n) if i != j]
    return math.log(sum(vals) / len(vals))


def ref_alignment(x: np.ndarray, y: np.ndarray) -> float:
    xh, yh = _unit(x), _unit(y)
    return float(np.mean([np.sum((xh[i] - yh[i]) ** 2) for i in range(len(xh))]))


def ref_gc(x: np.ndarray, y: np.ndarray) -> float:
    xh, yh = _unit(x), _unit(y)
    n = len(xh)
    total = 0.0
    for j in range(n):
        for k in range(n):
            total += (float(xh[j] @ yh[k]) - float(xh[k] @ yh[j])) ** 2
            total += (float(xh[j] @ xh[k]) - float(yh[j] @ yh[k])) ** 2
    return total / n


def pair(n: int = 6, d: int = 5, seed: int = 0, dtype: torch.dtype = torch.float64):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, d, generator=g, dtype=dtype), torch.randn(n, d, generator=g, dtype=dtype)


# ---------------------------------------------------------------------------------------------- slerp


def test_slerp_endpoints():
    a, b = pair(7, 6)
    a, b = ft.slerp(a, a, 1.0), ft.slerp(b, b, 1.0)  # unit rows
    torch.testing.assert_close(ft.slerp(a, b, 1.0), a, atol=1e-12, rtol=0)
    torch.testing.assert_close(ft.slerp(a, b, 0.0), b, atol=1e-12, rtol=0)


def test_slerp_matches_textbook_formula():
    a, b = pair(5, 4, seed=1)
    for lam in (0.1, 0.37, 0.5, 0.9):
        out = _np(ft.slerp(a, b, lam))
        for i in range(5):
            np.testing.assert_allclose(out[i], ref_slerp(_unit(_np(a[i])), _unit(_np(b[i])), lam), atol=1e-12)


def test_slerp_orthogonal_closed_form():
    a = torch.tensor([[1.0, 0.0, 0.0]], dtype=torch.float64)
    b = torch.tensor([[0.0, 1.0, 0.0]], dtype=torch.float64)
    torch.testing.assert_close(ft.slerp(a, b, 0.5), (a + b) / math.sqrt(2), atol=1e-15, rtol=0)
    for lam in (0.0, 0.2, 0.7, 1.0):  # θ = π/2: sin(λπ/2)·a + cos(λπ/2)·b
        expected = math.sin(lam * math.pi / 2) * a + math.cos(lam * math.pi / 2) * b
        torch.testing.assert_close(ft.slerp(a, b, lam), expected, atol=1e-15, rtol=0)


def test_slerp_identical_inputs():
    a = torch.nn.functional.normalize(pair(4, 8)[0], dim=1)
    for lam in (0.0, 0.3, 1.0):
        torch.testing.assert_close(ft.slerp(a, a, lam), a, atol=1e-15, rtol=0)
    a32 = a.float().requires_grad_()
    ft.slerp(a32, a32.detach().clone(), 0.3).sum().backward()
    assert torch.isfinite(a32.grad).all()


def test_slerp_antipodal_ish_float64_matches_closed_form():
    phi = math.sqrt(2e-10)  # cos(a, b) = −cos φ ≈ −1 + 1e-10
    a = torch.tensor([[1.0, 0.0, 0.0]], dtype=torch.float64)
    b = torch.tensor([[-math.cos(phi), math.sin(phi), 0.0]], dtype=torch.float64)
    theta = math.pi - phi
    for lam in (0.3, 0.5, 0.8):
        angle = (1 - lam) * theta  # the point sits at angle (1−λ)θ from a, toward b
        expected = torch.tensor([[math.cos(angle), math.sin(angle), 0.0]], dtype=torch.float64)
        torch.testing.assert_close(ft.slerp(a, b, lam), expected, atol=1e-6, rtol=0)


def test_slerp_antipodal_float32_finite_and_unit():
    a = torch.tensor([[1.0, 0.0, 0.0]])
    b = torch.tensor([[-math.cos(1e-3), math.sin(1e-3), 0.0]])  # cos rounds to ≈ −1 in float32
    mid = ft.slerp(a, b, 0.5)
    assert torch.isfinite(mid).all()
    torch.testing.assert_close(mid.norm(dim=1), torch.ones(1), atol=1e-6, rtol=0)
    assert mid[0, 1] > 0.999  # the true midpoint is (sin(φ/2), cos(φ/2), 0)


@pytest.mark.parametrize("lam", [0.3, 0.5])
def test_slerp_gradients_finite_at_exact_antipodes_and_identity(lam):
    a = torch.tensor([[0.6, 0.8, 0.0], [0.0, 0.0, 1.0]], requires_grad=True)
    b = torch.tensor([[-0.6, -0.8, 0.0], [0.0, 0.0, 1.0]], requires_grad=True)
    out = ft.slerp(a, b, lam)
    assert torch.isfinite(out).all()
    (out * torch.randn(2, 3)).sum().backward()
    assert torch.isfinite(a.grad).all() and torch.isfinite(b.grad).all()


def test_slerp_unit_norm_and_per_row_lambda():
    a, b = pair(9, 16, seed=3, dtype=torch.float32)
    lam = torch.linspace(0, 1, 9)
    out = ft.slerp(a, b, lam)
    torch.testing.assert_close(out.norm(dim=1), torch.ones(9), atol=1e-6, rtol=0)
    for i in range(9):
        torch.testing.assert_close(out[i : i + 1], ft.slerp(a[i : i + 1], b[i : i + 1], float(lam[i])))


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_slerp_half_precision_nearly_identical_rows(dtype):
    a = torch.randn(64, 32, generator=torch.Generator().manual_seed(0)).to(dtype)
    b = (a.float() + 1e-4 * torch.randn(64, 32, generator=torch.Generator().manual_seed(1))).to(dtype)
    for lam in (0.0, 0.5, 0.93):
        out = ft.slerp(a, b, lam)
        assert out.dtype == dtype
        assert not torch.isnan(out).any()
        torch.testing.assert_close(out.float(), torch.nn.functional.normalize(a.float(), dim=1), atol=2e-2, rtol=0)
    assert not torch.isnan(ft.slerp(a, a, 0.5)).any()


def test_slerp_gradcheck_float64():
    a, b = pair(4, 3, seed=5)
    assert torch.autograd.gradcheck(lambda u, v: ft.slerp(u, v, 0.35), (a.requires_grad_(), b.requires_grad_()))


def test_slerp_rejects_shape_mismatch():
    with pytest.raises(ValueError):
        ft.slerp(torch.ones(2, 3), torch.ones(3, 3), 0.5)


def test_mix_with_reversed_and_flip_targets():
    x = torch.nn.functional.normalize(pair(5, 4)[0], dim=1)
    mixed = ft.mix_with_reversed(x, 0.3)
    for i in range(5):
        expected = _np(x[i]) if i == 2 else ref_slerp(_np(x[i]), _np(x[4 - i]), 0.3)
        np.testing.assert_allclose(_np(mixed[i]), expected, atol=1e-12)
    np.testing.assert_allclose(_np(ft.flip_targets(5, 0.3, dtype=torch.float64)), ref_flip_target(5, 0.3), atol=1e-15)


# ---------------------------------------------------------------------------------------------- λ sampling


@pytest.mark.parametrize("alpha", [0.2, 0.5, 2.0])
def test_sample_beta_distribution(alpha):
    draws = ft.sample_beta(alpha, 20000, generator=torch.Generator().manual_seed(11))
    assert ((draws >= 0) & (draws <= 1)).all()
    assert stats.kstest(draws.numpy(), stats.beta(alpha, alpha).cdf).pvalue > 1e-3


def test_sample_beta_seeded_and_validated():
    first = [ft.sample_beta(0.5, generator=torch.Generator().manual_seed(4)) for _ in range(2)]
    assert first[0] == first[1] and isinstance(first[0], float)
    with pytest.raises(ValueError):
        ft.sample_beta(0.0)


# ---------------------------------------------------------------------------------------------- CLIP loss


def test_clip_loss_value_symmetry_and_normalisation():
    x, y = pair(6, 5)
    got = ft.clip_loss(x, y, 7.5)
    assert got.item() == pytest.approx(ref_clip(_np(x), _np(y), 7.5), abs=1e-12)
    assert ft.clip_loss(y, x, 7.5).item() == pytest.approx(got.item(), abs=1e-12)
    assert ft.clip_loss(3 * x, y, 7.5).item() == pytest.approx(got.item(), abs=1e-12)
    unit = torch.nn.functional.normalize
    assert ft.clip_loss(unit(x, dim=1), unit(y, dim=1), 7.5, normalized=True).item() == pytest.approx(got.item())


def test_clip_module_matches_function_and_dict():
    x, y = pair()
    module = ft.ClipLoss(logit_scale=20.0)
    assert module(x, y).item() == pytest.approx(ft.clip_loss(x, y, 20.0).item(), abs=1e-12)
    out = module(x, y, torch.tensor(5.0, dtype=torch.float64), output_dict=True)
    assert set(out) == {"contrastive_loss"}
    assert out["contrastive_loss"].item() == pytest.approx(ref_clip(_np(x), _np(y), 5.0), abs=1e-12)


def test_half_precision_loss_is_float32_and_finite():
    x = torch.randn(16, 8).half()
    out = ft.m2mix_loss(x, x.clone(), 0.5)
    assert out.dtype == torch.float32 and torch.isfinite(out)


# ---------------------------------------------------------------------------------------------- m²-mix


@pytest.mark.parametrize("lam", [0.0, 0.25, 0.6, 1.0])
def test_m2mix_logits_and_loss_match_elementwise_reference(lam):
    x, y = pair(5, 4, seed=2)
    image_side, text_side = ft.m2mix_logits(x, y, lam, 0.07)
    ref_image, ref_text = ref_m2mix_logits(_np(x), _np(y), lam, 0.07)
    np.testing.assert_allclose(_np(image_side), ref_image, atol=1e-10)
    np.testing.assert_allclose(_np(text_side), ref_text, atol=1e-10)
    assert ft.m2mix_loss(x, y, lam).item() == pytest.approx(ref_m2mix(_np(x), _np(y), lam, 0.07), abs=1e-10)


def test_m2mix_divides_by_tau2():
    x, y = pair(5, 4, seed=3)
    got = ft.m2mix_loss(x, y, 0.4, tau2=0.07).item()
    assert got == pytest.approx(ref_m2mix(_np(x), _np(y), 0.4, 0.07), abs=1e-10)
    multiplied = ref_m2mix(_np(x), _np(y), 0.4, 1 / 0.07)  # the README preview's logits·τ₂
    assert abs(got - multiplied) > 1.0
    image_side, _ = ft.m2mix_logits(x, y, 0.4, 0.07)
    xh, yh = _unit(_np(x)), _unit(_np(y))
    assert image_side[0, 1].item() == pytest.approx(float(xh[0] @ ref_slerp(xh[1], yh[1], 0.4)) / 0.07, abs=1e-10)


def test_m2mix_limits_and_symmetry():
    x, y = pair(6, 5, seed=4)
    s = 1 / 0.07
    clip = ft.clip_loss(x, y, s)
    img_at_0, _ = ft.m2mix_logits(x, y, 0.0)  # m_j = ŷ_j: the image side is CLIP's
    _, txt_at_1 = ft.m2mix_logits(x, y, 1.0)  # m_j = x̂_j: the text side is CLIP's
    labels = torch.arange(6)
    ce = torch.nn.functional.cross_entropy
    assert (ce(img_at_0, labels) + ce(txt_at_1, labels)).item() == pytest.approx(2 * clip.item(), abs=1e-10)
    # identical pairs: m_j = x̂_j for every λ, both sides are X̂X̂ᵀ/τ₂
    for lam in (0.0, 0.3, 1.0):
        assert ft.m2mix_loss(x, x, lam).item() == pytest.approx(2 * ft.clip_loss(x, x, s).item(), abs=1e-9)
    # swapping the modalities and λ ↔ 1−λ swaps the two sides
    assert ft.m2mix_loss(x, y, 0.3).item() == pytest.approx(ft.m2mix_loss(y, x, 0.7).item(), abs=1e-10)


def test_m2mix_orthogonal_pairs():
    x = torch.eye(4, dtype=torch.float64)
    y = torch.roll(torch.eye(4, dtype=torch.float64), 1, dims=1)  # ŷ_i ⟂ x̂_i
    assert ft.m2mix_loss(x, y, 0.5).item() == pytest.approx(ref_m2mix(_np(x), _np(y), 0.5, 0.07), abs=1e-10)


# ---------------------------------------------------------------------------------------------- V/L/VL-mix


@pytest.mark.parametrize("n", [6, 7])
@pytest.mark.parametrize("lam", [0.2, 0.5, 0.85])
def test_unimodal_mixes_match_reference(n, lam):
    x, y = pair(n, 5, seed=n)
    for fn, mode in ((ft.vmix_loss, "v"), (ft.lmix_loss, "l"), (ft.vlmix_loss, "vl")):
        got = fn(x, y, lam, 3.0).item()
        assert got == pytest.approx(ref_unimix(_np(x), _np(y), lam, 3.0, mode), abs=1e-10), mode


def test_unimodal_mix_limits_and_symmetry():
    x, y = pair(6, 5, seed=9)
    clip = ft.clip_loss(x, y, 4.0).item()
    for lam in (0.0, 1.0):  # no mixing (λ=1) or a pure reversal with reversed targets (λ=0): the CLIP loss
        assert ft.vmix_loss(x, y, lam, 4.0).item() == pytest.approx(clip, abs=1e-10)
        assert ft.lmix_loss(x, y, lam, 4.0).item() == pytest.approx(clip, abs=1e-10)
    assert ft.vmix_loss(x, y, 0.3, 4.0).item() == pytest.approx(ft.lmix_loss(y, x, 0.3, 4.0).item(), abs=1e-10)
    assert ft.vlmix_loss(x, y, 0.3, 4.0).item() == pytest.approx(ft.vlmix_loss(y, x, 0.3, 4.0).item(), abs=1e-10)


def test_vlmix_target_is_unnormalised_i_plus_flip():
    x, y = pair(4, 3, seed=12)
    xm, ym = ft.mix_with_reversed(x, 0.4), ft.mix_with_reversed(y, 0.4)
    half = ref_soft_ce(2.0 * _np(xm @ ym.T), 0.5 * (np.eye(4) + np.eye(4)[::-1]))
    half_t = ref_soft_ce(2.0 * _np(ym @ xm.T), 0.5 * (np.eye(4) + np.eye(4)[::-1]))
    assert ft.vlmix_loss(x, y, 0.4, 2.0).item() == pytest.approx(half + half_t, abs=1e-10)  # 2 × ½(… + …)


def test_m3mix_loss_is_the_weighted_sum():
    x, y = pair(6, 4, seed=13)
    got = ft.m3mix_loss(x, y, 0.1, 0.2, 0.3, 0.4, 5.0, 0.07, w_m2=0.5, w_v=2.0, w_l=3.0, w_vl=4.0).item()
    expected = (
        0.5 * ref_m2mix(_np(x), _np(y), 0.1, 0.07)
        + 2.0 * ref_unimix(_np(x), _np(y), 0.2, 5.0, "v")
        + 3.0 * ref_unimix(_np(x), _np(y), 0.3, 5.0, "l")
        + 4.0 * ref_unimix(_np(x), _np(y), 0.4, 5.0, "vl")
    )
    assert got == pytest.approx(expected, abs=1e-9)


# ---------------------------------------------------------------------------------------------- mixup modules


def test_m2mix_module_matches_function_keys_and_decay():
    x, y = pair(6, 5, seed=14)
    module = ft.M2MixLoss(weight=0.02, decay=True)
    expected = ft.clip_loss(x, y, 100.0) + 0.02 * ft.m2mix_loss(x, y, 0.3)
    assert module(x, y, lam=0.3).item() == pytest.approx(expected.item(), abs=1e-10)
    out = module(x, y, 10.0, output_dict=True, lam=0.3, epoch=3)
    assert set(out) == {"contrastive_loss", "m2mix_loss"}
    assert out["m2mix_loss"].item() == pytest.approx(0.02 / 4 * ft.m2mix_loss(x, y, 0.3).item(), abs=1e-12)
    total = module(x, y, 10.0, lam=0.3, epoch=3).item()
    assert sum(v.item() for v in out.values()) == pytest.approx(total, abs=1e-12)
    module.epoch = 1
    halved = module(x, y, 10.0, output_dict=True, lam=0.3)["m2mix_loss"].item()
    assert halved == pytest.approx(0.01 * ft.m2mix_loss(x, y, 0.3).item(), abs=1e-12)


def test_m2mix_module_seeded_lambda_reproducible():
    x, y = pair(6, 5, seed=15)
    first, second = ft.M2MixLoss(seed=7), ft.M2MixLoss(seed=7)
    a = [first(x, y).item() for _ in range(3)]
    b = [second(x, y).item() for _ in range(3)]
    assert a == b
    expected_lam = ft.sample_beta(0.5, generator=torch.Generator().manual_seed(7))
    third = ft.M2MixLoss(seed=7)
    third(x, y)
    assert third.last_lam["m2"] == expected_lam
    shared = torch.Generator().manual_seed(7)
    assert ft.M2MixLoss(generator=shared)(x, y).item() == a[0]
    torch.manual_seed(0)
    c = ft.M2MixLoss()(x, y).item()
    torch.manual_seed(0)
    assert ft.M2MixLoss()(x, y).item() == c


def test_m3mix_module_matches_function_and_keys():
    x, y = pair(6, 5, seed=16)
    lams = {"m2": 0.1, "v": 0.2, "l": 0.3, "vl": 0.4}
    module = ft.M3MixLoss(seed=1)
    out = module(x, y, 20.0, output_dict=True, lam=lams)
    assert set(out) == {"contrastive_loss", "m2mix_loss", "vmix_loss", "lmix_loss", "vlmix_loss"}
    expected = ft.clip_loss(x, y, 20.0) + ft.m3mix_loss(
        x, y, 0.1, 0.2, 0.3, 0.4, 20.0, 0.07, w_m2=0.01, w_v=0.05, w_l=0.05, w_vl=0.1
    )
    assert sum(out.values()).item() == pytest.approx(expected.item(), abs=1e-10)
    assert module(x, y, 20.0, lam=lams).item() == pytest.approx(expected.item(), abs=1e-10)
    assert module.last_lam == lams
    assert ft.M3MixLoss(seed=3)(x, y).item() == ft.M3MixLoss(seed=3)(x, y).item()
    with pytest.raises(ValueError):
        module(x, y, lam={"mm": 0.5})


# ---------------------------------------------------------------------------------------------- CUA / CUAXU


def test_cua_and_cuaxu_match_reference():
    x, y = pair(6, 5, seed=17)
    xn, yn = _np(x), _np(y)
    cua = ref_clip(xn, yn, 10.0) + 0.5 * (ref_uniformity(xn) + ref_uniformity(yn)) + ref_alignment(xn, yn)
    assert ft.cua_loss(x, y, 10.0).item() == pytest.approx(cua, abs=1e-10)
    assert ft.cuaxu_loss(x, y, 10.0).item() == pytest.approx(cua + ref_cross_uniformity(xn, yn), abs=1e-10)
    assert ft.cua_loss(y, x, 10.0).item() == pytest.approx(cua, abs=1e-10)  # symmetric


def test_cua_modules_match_functions_and_keys():
    x, y = pair(6, 5, seed=18)
    out = ft.CUALoss()(x, y, 10.0, output_dict=True)
    assert set(out) == {"contrastive_loss", "uniformity_loss", "alignment_loss"}
    assert sum(out.values()).item() == pytest.approx(ft.cua_loss(x, y, 10.0).item(), abs=1e-12)
    out = ft.CUAXULoss(logit_scale=10.0)(x, y, output_dict=True)
    assert set(out) == {"contrastive_loss", "uniformity_loss", "alignment_loss", "cross_uniformity_loss"}
    assert sum(out.values()).item() == pytest.approx(ft.cuaxu_loss(x, y, 10.0).item(), abs=1e-12)
    assert out["alignment_loss"].item() == pytest.approx(ref_alignment(_np(x), _np(y)), abs=1e-12)


def test_cua_identical_pairs_have_zero_alignment():
    x, _ = pair(5, 4, seed=19)
    out = ft.CUALoss()(x, x.clone(), output_dict=True)
    assert out["alignment_loss"].item() == pytest.approx(0.0, abs=1e-14)


# ---------------------------------------------------------------------------------------------- Jiang et al.


def test_feature_separation():
    z, zi = pair(5, 4, seed=20)
    zh, zih = _unit(_np(z)), _unit(_np(zi))
    expected = sum(float(zh[j] @ zih[j]) ** 2 for j in range(5)) / 5
    assert ft.feature_separation_loss(z, zi).item() == pytest.approx(expected, abs=1e-12)
    eye = torch.eye(4, dtype=torch.float64)
    assert ft.feature_separation_loss(eye, eye.roll(1, dims=1)).item() == pytest.approx(0.0, abs=1e-15)
    assert ft.feature_separation_loss(eye, -3 * eye).item() == pytest.approx(1.0, abs=1e-15)


def test_inmodal_terms():
    z, zv = pair(6, 4, seed=21)
    assert ft.inmodal_infonce_loss(z, zv, 8.0).item() == pytest.approx(ref_clip(_np(z), _np(zv), 8.0), abs=1e-12)
    assert ft.independent_uniformity_loss(z).item() == pytest.approx(ref_uniformity(_np(z)), abs=1e-12)


def test_brownian_bridge_value_and_endpoint():
    xa, x = pair(5, 4, seed=22)
    _, y = pair(5, 4, seed=23)
    xah, xh, yh = _unit(_np(xa)), _unit(_np(x)), _unit(_np(y))
    mu = [_unit(0.25 * xh[j] + 0.75 * yh[j]) for j in range(5)]
    expected = sum(float(np.sum((xah[j] - mu[j]) ** 2)) for j in range(5)) / 5
    assert ft.brownian_bridge_loss(xa, x, y).item() == pytest.approx(expected, abs=1e-12)
    # 0.25 weights the IMAGE endpoint: with x ⟂ y and x_aug = x, ⟨x̂, μ⟩ = 0.25 / √(0.25² + 0.75²)
    e = torch.eye(2, dtype=torch.float64)
    got = ft.brownian_bridge_loss(e[:1], e[:1], e[1:]).item()
    assert got == pytest.approx(2 - 2 * 0.25 / math.sqrt(0.625), abs=1e-12)
    assert ft.brownian_bridge_loss(ft.bridge_target(x, y), x, y).item() == pytest.approx(0.0, abs=1e-12)


def test_geometric_consistency():
    x, y = pair(5, 4, seed=24)
    got = ft.geometric_consistency_loss(x, y).item()
    assert got == pytest.approx(ref_gc(_np(x), _np(y)), abs=1e-12)
    assert ft.geometric_consistency_loss(y, x).item() == pytest.approx(got, abs=1e-12)
    assert ft.geometric_consistency_loss(x, 2 * x).item() == pytest.approx(0.0, abs=1e-14)
    doubled = ft.geometric_consistency_loss(torch.cat([x, x]), torch.cat([y, y])).item()
    assert doubled == pytest.approx(2 * got, abs=1e-12)  # 4× the pairs over 2N: the 1/N normalisation


def test_latent_structure_module():
    x, y = pair(6, 5, seed=25)
    xa, xi = pair(6, 5, seed=26)
    yi, xv = pair(6, 5, seed=27)
    module = ft.LatentStructureLoss(w_clip=1.0, w_sep=2.0, w_inmodal=3.0, w_unif=4.0, w_bridge=5.0, w_gc=6.0)
    out = module(x, y, 9.0, output_dict=True, image_augmented=xa, image_independent=xi, text_independent=yi,
                 image_independent_view=xv)
    assert set(out) == {"contrastive_loss", "separation_loss", "inmodal_loss",
                        "independent_uniformity_loss", "bridge_loss", "geometric_consistency_loss"}
    expected = (
        ft.clip_loss(x, y, 9.0)
        + 2.0 * (ft.feature_separation_loss(x, xi) + ft.feature_separation_loss(y, yi))
        + 3.0 * ft.inmodal_infonce_loss(xi, xv, 9.0)
        + 4.0 * (ft.independent_uniformity_loss(xi) + ft.independent_uniformity_loss(yi))
        + 5.0 * ft.brownian_bridge_loss(xa, x, y)
        + 6.0 * ft.geometric_consistency_loss(x, y)
    )
    assert sum(out.values()).item() == pytest.approx(expected.item(), abs=1e-10)
    assert set(ft.LatentStructureLoss()(x, y, output_dict=True)) == {"contrastive_loss", "geometric_consistency_loss"}
    plain = ft.LatentStructureLoss()(x, y).item()
    expected_plain = ft.clip_loss(x, y, 100.0).item() + ref_gc(_np(x), _np(y))
    assert plain == pytest.approx(expected_plain, abs=1e-10)


# ---------------------------------------------------------------------------------------------- gradients, API


GRAD_CASES = {
    "clip": lambda x, y: ft.clip_loss(x, y, 3.0),
    "m2mix": lambda x, y: ft.m2mix_loss(x, y, 0.3, 0.5),
    "vmix": lambda x, y: ft.vmix_loss(x, y, 0.3, 3.0),
    "lmix": lambda x, y: ft.lmix_loss(x, y, 0.3, 3.0),
    "vlmix": lambda x, y: ft.vlmix_loss(x, y, 0.3, 3.0),
    "cua": lambda x, y: ft.cua_loss(x, y, 3.0),
    "cuaxu": lambda x, y: ft.cuaxu_loss(x, y, 3.0),
    "separation": ft.feature_separation_loss,
    "bridge": lambda x, y: ft.brownian_bridge_loss(x + y, x, y),
    "gc": ft.geometric_consistency_loss,
}


@pytest.mark.parametrize("name", sorted(GRAD_CASES))
def test_gradcheck_float64(name):
    x, y = pair(4, 3, seed=30)
    assert torch.autograd.gradcheck(GRAD_CASES[name], (x.requires_grad_(), y.requires_grad_()))


def test_learnable_logit_scale_gets_a_gradient():
    x, y = pair(5, 4, seed=31)
    scale = torch.tensor(3.0, dtype=torch.float64, requires_grad=True)
    ft.M3MixLoss(seed=0)(x, y, scale).backward()
    assert scale.grad is not None and torch.isfinite(scale.grad)


def test_losses_module_reexports_everything():
    for name in ("M2MixLoss", "CUALoss", "LatentStructureLoss", "geometric_consistency_loss", "clip_loss"):
        assert getattr(losses_module, name) is getattr(ft, name)
    with pytest.raises(AttributeError):
        losses_module.no_such_loss  # noqa: B018


def test_mismatched_pairs_rejected():
    with pytest.raises(ValueError):
        ft.clip_loss(torch.ones(3, 4), torch.ones(4, 4))
