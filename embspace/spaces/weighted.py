"""Linear CKA and per-row means under bootstrap weights, for the paired bootstrap of :mod:`embspace.compare`.

Weights w ∈ ℕˢ (row i drawn w_i times) mean the plain formula on the resampled rows, row i repeated w_i times,
where two different copies of one row are not similar (their kernel entry is 0; each copy's own diagonal entry
K_ii stays): the convention of the bootstrap's uniformity and cone ("two copies of one pair are not a pair"). A
copy–copy entry K_ii = 1 would otherwise add a bias of order Σw²/n² to every resampled HSIC, larger than the
spread of a CKA change on 1,000 pairs (on the bundled sample the resampled changes all fell on one side of the
measured change). CKA then takes the S×S linear kernels K = X Xᵀ, L = Y Yᵀ of the subsample once and costs
O(S²) per resample (matrix-vector products with w) instead of the O(S·D²) of weighted D×D sums. With n = Σw,
K⁰ = K with its diagonal zeroed and (Kw)_i = Σ_{j≠i} w_j K_ij + K_ii (a resampled row's kernel sum, itself once):

- biased (Gretton et al. 2005; Kornblith et al. 2019), tr(KHLH) on the n resampled rows::

      tr(KL) − (2/n) Σ_i w_i (Kw)_i (Lw)_i + (Σ_i w_i (Kw)_i)(Σ_i w_i (Lw)_i)/n²,
      tr(KL) = Σ_ij w_i w_j K⁰_ij L⁰_ij + Σ_i w_i K_ii L_ii

- unbiased (Song et al. 2012, eq. 5; K̃, L̃ the resampled kernels with zeroed diagonals)::

      tr(K̃L̃)  = Σ_ij w_i w_j K⁰_ij L⁰_ij
      1ᵀK̃1    = wᵀK⁰w
      1ᵀK̃L̃1  = Σ_i w_i (K⁰w)_i (L⁰w)_i
      HSIC_u   = [tr(K̃L̃) + (1ᵀK̃1)(1ᵀL̃1)/((n−1)(n−2)) − 2/(n−2)·1ᵀK̃L̃1] / (n(n−3))

CKA = HSIC(K, L)/√(HSIC(K, K)·HSIC(L, L)); with w = 1 these are :mod:`embspace.spaces.cka`'s exact values.
"""

from __future__ import annotations

import torch


class Kernels:
    """What :func:`weighted_cka` needs of the two modalities' linear kernels, computed once per subsample: the
    diagonals k = diag K, l = diag L (float64), and the five (S, S) matrices K⁰, L⁰, K⁰∘L⁰, K⁰∘K⁰, L⁰∘L⁰. The kernels
    are formed in float64; the five keep the rows' dtype (float32 for ``compare``'s rows: the products twice as fast,
    CKA within ~1e-7 of float64 on the bundled sample, against a resampling spread of ~1e-2), and everything after
    the products is float64. Memory: 5·S² of the rows' dtype (S ≤ 2,000: 80 MB in float32)."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor) -> None:
        kx, ky = x.double() @ x.double().T, y.double() @ y.double().T  # (S, S)
        self.dx, self.dy = kx.diagonal().clone(), ky.diagonal().clone()
        kx.fill_diagonal_(0)
        ky.fill_diagonal_(0)
        self.n = kx.shape[0]
        self.matrices = [m.to(x.dtype) for m in (kx, ky)]
        self.matrices += [(a * b).to(x.dtype) for a, b in ((kx, ky), (kx, kx), (ky, ky))]


def _hsic(w: torch.Tensor, n: torch.Tensor, kw: torch.Tensor, lw: torch.Tensor, dk: torch.Tensor,
          dl: torch.Tensor, off_kl: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(biased, unbiased) HSIC under weights ``w`` (b, S): ``kw``, ``lw`` (b, S) each resampled row's kernel sum,
    itself included; ``dk``, ``dl`` (S,) the diagonals; ``off_kl`` (b,) = Σ_{i≠j} w_i w_j K_ij L_ij."""
    total_k, total_l = (kw * w).sum(1), (lw * w).sum(1)  # 1ᵀK1, 1ᵀL1 of the resampled rows
    both = off_kl + w @ (dk * dl)  # tr(KL) of the resampled rows
    biased = both - 2 / n * (w * kw * lw).sum(1) + total_k * total_l / n**2
    ones_k, ones_l = total_k - w @ dk, total_l - w @ dl
    ones_kl = (w * (kw - dk) * (lw - dl)).sum(1)
    unbiased = (off_kl + ones_k * ones_l / ((n - 1) * (n - 2)) - 2 * ones_kl / (n - 2)) / (n * (n - 3))
    return biased, unbiased


def _ratio(kl: torch.Tensor, kk: torch.Tensor, ll: torch.Tensor) -> torch.Tensor:
    denominator = kk * ll
    return torch.where(denominator > 0, kl / denominator.clamp_min(1e-300).sqrt(), torch.nan)


def weighted_cka(kernels: Kernels, w: torch.Tensor) -> dict[str, torch.Tensor]:
    """``{"unbiased": (b,), "biased": (b,)}`` linear CKA of the resampled rows under the weights ``w`` (b, S),
    from the subsample's :class:`Kernels`; O(b·S²), five (b, S) × (S, S) products."""
    dtype = kernels.matrices[0].dtype
    low, w = w.to(dtype), w.to(torch.float64)
    kw = (low @ kernels.matrices[0]).double() + kernels.dx  # (b, S): Σ_{j≠i} w_j K_ij + K_ii
    lw = (low @ kernels.matrices[1]).double() + kernels.dy
    # Σ_{i≠j} w_i w_j (K⁰∘L⁰)_ij, (K⁰∘K⁰)…, (L⁰∘L⁰)…, one (b, S) product at a time
    off = [((low @ m).double() * w).sum(1) for m in kernels.matrices[2:]]
    n = w.sum(1)
    kl = _hsic(w, n, kw, lw, kernels.dx, kernels.dy, off[0])
    kk = _hsic(w, n, kw, kw, kernels.dx, kernels.dx, off[1])
    ll = _hsic(w, n, lw, lw, kernels.dy, kernels.dy, off[2])
    return {"unbiased": _ratio(kl[1], kk[1], ll[1]), "biased": _ratio(kl[0], kk[0], ll[0])}


def weighted_mean(values: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """Σ_i w_i v_i / Σw of per-row values ``values`` (S,) under weights ``w`` (b, S), float64 (b,)."""
    w = w.to(torch.float64)
    return (w @ values.to(torch.float64)) / w.sum(1)
