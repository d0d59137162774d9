"""Linear CKA between two spaces over the same rows (Kornblith et al. 2019), biased and unbiased, from
:class:`~embspace.spaces.sums.SpaceSums` — exact at any N, never an N×N matrix.

With K = A Aᵀ and L = B Bᵀ (linear kernels of the unit rows) and K̃, L̃ the same with their diagonals set to 0:

- **unbiased** HSIC (Song et al. 2012, eq. 5; the form of Nguyen et al. 2021 and of platonic-rep's
  ``hsic_unbiased``)::

      HSIC_u(K, L) = [tr(K̃L̃) + (1ᵀK̃1)(1ᵀL̃1)/((n−1)(n−2)) − 2/(n−2)·1ᵀK̃L̃1] / (n(n−3))

  and every term is a function of the sums (s = Σa, G = Σ a bᵀ, ν = Σ‖a‖², q = Σ‖a‖²‖b‖², u = Σ‖a‖² b, …;
  the diagonal K_ii = ‖a_i‖²)::

      tr(K̃L̃)  = ‖G_ab‖_F² − q_ab
      1ᵀK̃1    = ‖s_a‖² − ν_a
      1ᵀK̃L̃1  = s_aᵀ G_ab s_b − u_ab·s_b − u_ba·s_a + q_ab        ((K̃1)_i = a_i·s_a − ‖a_i‖²)

  HSIC_u is unchanged by a translation of either space, so the sums may be taken about any fixed centre.
- **biased** HSIC (Gretton et al. 2005; Kornblith's ``feature_space_linear_cka``, platonic-rep's
  ``hsic_biased`` = tr(KHLH)) on the centred features: tr(KHLH) = ‖Ãᵀ B̃‖_F², Ãᵀ B̃ = G_ab − s_a s_bᵀ/n.

CKA = HSIC(K, L) / √(HSIC(K, K)·HSIC(L, L)) (no ε in the denominator, unlike platonic-rep's +1e-6).
"""

from __future__ import annotations

import math

import torch

from embspace.spaces.sums import SpaceSums

CKA_CONVENTION = ("linear CKA (Kornblith et al. 2019) on unit rows (L2-normalised, no outlier clamp): 'unbiased' = "
                  "HSIC of Song et al. 2012 (eq. 5; K, L with zeroed diagonals), 'biased' = tr(KHLH) on centred "
                  "rows; exact from D×D sums in one pass, no ε")


def _hsic_unbiased(n: float, s_x: torch.Tensor, s_y: torch.Tensor, g: torch.Tensor, nu_x: float, nu_y: float,
                   q: float, u_xy: torch.Tensor, u_yx: torch.Tensor) -> float:
    """HSIC_u of X and Y from their sums (``u_xy`` = Σ‖x‖² y, ``u_yx`` = Σ‖y‖² x)."""
    trace = float(g.pow(2).sum()) - q  # tr(K̃L̃)
    ones_k = float(s_x @ s_x) - nu_x  # 1ᵀK̃1
    ones_l = float(s_y @ s_y) - nu_y  # 1ᵀL̃1
    ones_kl = float(s_x @ g @ s_y) - float(u_xy @ s_y) - float(u_yx @ s_x) + q  # 1ᵀK̃L̃1
    return (trace + ones_k * ones_l / ((n - 1) * (n - 2)) - 2 * ones_kl / (n - 2)) / (n * (n - 3))


def hsic_unbiased(sums: SpaceSums) -> tuple[float, float, float]:
    """(HSIC_u(K, L), HSIC_u(K, K), HSIC_u(L, L))."""
    s = sums
    kl = _hsic_unbiased(s.n, s.s_a, s.s_b, s.g_ab, s.nu_a, s.nu_b, s.q_ab, s.u_ab, s.u_ba)
    kk = _hsic_unbiased(s.n, s.s_a, s.s_a, s.g_aa, s.nu_a, s.nu_a, s.q_aa, s.u_aa, s.u_aa)
    ll = _hsic_unbiased(s.n, s.s_b, s.s_b, s.g_bb, s.nu_b, s.nu_b, s.q_bb, s.u_bb, s.u_bb)
    return kl, kk, ll


def hsic_biased(sums: SpaceSums) -> tuple[float, float, float]:
    """(tr(KHLH), tr(KHKH), tr(LHLH)) = squared Frobenius norms of the centred cross- and self-Grams."""
    s = sums
    centred = lambda g, x, y: g - torch.outer(x, y) / s.n  # noqa: E731
    return (float(centred(s.g_ab, s.s_a, s.s_b).pow(2).sum()), float(centred(s.g_aa, s.s_a, s.s_a).pow(2).sum()),
            float(centred(s.g_bb, s.s_b, s.s_b).pow(2).sum()))


def _ratio(kl: float, kk: float, ll: float) -> float:
    denominator = kk * ll
    return kl / math.sqrt(denominator) if denominator > 0 else math.nan


def cka_from_sums(sums: SpaceSums) -> dict[str, float]:
    """``{"unbiased": …, "biased": …}`` linear CKA (NaN where a space has no variance)."""
    return {"unbiased": _ratio(*hsic_unbiased(sums)), "biased": _ratio(*hsic_biased(sums))}
