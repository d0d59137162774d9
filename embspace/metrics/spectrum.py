"""Singular-value spectrum and the ranks built on it, from a D×D Gram matrix streamed in float64.

G = Σ_i x̂_iᵀx̂_i (uncentred) and C = G − N·μμᵀ (centred, μ = mean x̂); σ_k = √eig_k. Only the first min(N, D)
singular values exist (min(N−1, D) after centring); the rest are numerical zeros and are left out.

- RankMe (Garrido et al. 2023): exp(−Σ p_k log p_k), p_k = σ_k/Σσ + 1e-7, σ of the UNcentred matrix.
- effective rank (Roy & Vetterli 2007): the same entropy with p_k = σ_k/Σσ and no ε; reported uncentred
  (``effective_rank``) and centred (``effective_rank_centered``).
- RankMe on the covariance (reptrix's ``get_rankme``, Agrawal et al.'s library): the same entropy with ε = 1e-7 on
  p_k = λ_k/Σλ, λ_k = σ_k²(centred), the eigenvalues of the centred covariance (sklearn PCA's explained variance),
  min(N, D) of them as PCA keeps (after centring the last one is zero when N ≤ D). Not the paper's variant: σ² of
  the centred matrix instead of σ of the uncentred one.
- participation ratio: (Σλ)²/Σλ² on the covariance eigenvalues λ_k = σ_k²(centred)/(N−1).
- α-ReQ (Agrawal et al. 2022): α = −slope of a line fitted to log λ_k against log k, λ = covariance eigenvalues:

  - ``fit="reptrix"`` (the default, the authors' code: reptrix ``get_powerlaw``, after Stringer & Pachitariu):
    weighted least squares with weights w_k = 1/k over k = 11 … 100 (reptrix's ``fit_range = np.arange(10, 100)``,
    0-based), i.e. b = (XᵀWX)⁻¹XᵀWy with X = [−log k, 1], y = log λ_k, α = b₀;
  - ``fit="ols"``: unweighted least squares over every eigenvalue above 1e-12·λ₁ (k = 1 … K).

  A range the caller gives (1-based, inclusive) replaces either default range. A spectrum shorter than reptrix's
  range (K < 100 eigenvalues, where reptrix itself fails) is fitted over k = 11 … K, or k = 1 … K when K ≤ 11, and
  says so (:func:`default_range`). Where the range holds fewer than two non-zero eigenvalues α is NaN and
  :func:`alpha_req` says why.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from embspace.kernels.budget import MAX_BLOCK_ROWS
from embspace.kernels.rows import Rows

RANKME_EPS = 1e-7
ALPHA_REQ_FLOOR = 1e-12
ALPHA_REQ_FITS = ("reptrix", "ols")
REPTRIX_RANGE = (11, 100)  # reptrix get_alpha: fit_range = np.arange(10, 100), 0-based, i.e. k = 11 … 100


@dataclass
class Gram:
    """Σx̂ᵀx̂ (D×D) and Σx̂ (D), float64; merged by addition (also across processes)."""

    n: int
    gram: torch.Tensor
    total: torch.Tensor

    @staticmethod
    def of_rows(rows: Rows, chunk_rows: int = MAX_BLOCK_ROWS) -> Gram:
        gram = torch.zeros((rows.dim, rows.dim), dtype=torch.float64, device=rows.device)  # (D, D)
        total = torch.zeros(rows.dim, dtype=torch.float64, device=rows.device)  # (D,)
        for _, block in rows.blocks(chunk_rows):
            wide = block.double()
            gram.addmm_(wide.T, wide)
            total += wide.sum(0)
        return Gram(rows.n, gram.cpu(), total.cpu())

    def merge(self, other: Gram) -> Gram:
        """Add another shard's rows (same dimension); returns self."""
        self.n += other.n
        self.gram = self.gram + other.gram.to(self.gram)
        self.total = self.total + other.total.to(self.total)
        return self

    def singular_values(self, centered: bool) -> np.ndarray:
        """σ_1 ≥ σ_2 ≥ …, min(N, D) of them (min(N−1, D) when centred)."""
        from scipy.linalg import eigh

        matrix = self.gram - torch.outer(self.total, self.total) / self.n if centered else self.gram
        eig = np.clip(eigh(matrix.numpy(), eigvals_only=True, driver="evd")[::-1], 0, None)
        keep = min(self.n - 1 if centered else self.n, len(eig))
        return np.sqrt(eig[:keep])


def spectral_entropy_rank(sigma: np.ndarray, eps: float = 0.0) -> float:
    """exp(−Σ p_k log p_k) with p_k = σ_k/Σσ + eps (0·log 0 = 0)."""
    total = sigma.sum()
    if total <= 0:
        return 0.0
    p = sigma / total + eps
    p = p[p > 0]
    return float(math.exp(-(p * np.log(p)).sum()))


def rankme(sigma_uncentered: np.ndarray) -> float:
    """RankMe (Garrido et al. 2023), ε = 1e-7, on the singular values of the uncentred matrix."""
    return spectral_entropy_rank(sigma_uncentered, RANKME_EPS)


def participation_ratio(eigenvalues: np.ndarray) -> float:
    """(Σλ)²/Σλ² (scale-free, so the 1/(N−1) of the covariance does not matter)."""
    squares = float((eigenvalues**2).sum())
    return float(eigenvalues.sum() ** 2 / squares) if squares > 0 else 0.0


def rankme_covariance(sigma_centered: np.ndarray, n: int, dim: int) -> float:
    """RankMe as reptrix computes it: ε = 1e-7 on p_k = λ_k/Σλ, λ_k = σ_k² of the centred matrix, min(N, D) of them
    (zeros appended where centring removed one)."""
    eig = np.zeros(min(n, dim))
    eig[: len(sigma_centered)] = sigma_centered[: len(eig)] ** 2
    return spectral_entropy_rank(eig, RANKME_EPS)


@dataclass(frozen=True)
class AlphaReq:
    """An α-ReQ fit: α (NaN where undefined), the 1-based inclusive range fitted, why α is NaN, and a note where the
    default range was shortened to the spectrum."""

    alpha: float
    fit_range: tuple[int, int]
    undefined: str | None = None
    note: str | None = None


def default_range(fit: str, positive: int) -> tuple[tuple[int, int], str | None]:
    """The default fit range over a spectrum of ``positive`` eigenvalues above 1e-12·λ₁, and a note if shortened.

    ``ols``: k = 1 … K. ``reptrix``: k = 11 … 100; a shorter spectrum (reptrix itself would fail) is fitted over
    k = 11 … K when K ≥ 12, else over k = 1 … K, and the note says so."""
    if fit == "ols":
        return (1, positive), None
    first, last = REPTRIX_RANGE
    if positive >= last:
        return REPTRIX_RANGE, None
    if positive > first:
        return (first, positive), (f"the spectrum has {positive} eigenvalues < {last}: fitted over "
                                   f"k = {first}…{positive}")
    return (1, positive), (f"the spectrum has {positive} eigenvalues ≤ {first}: no tail beyond k = {first}, fitted "
                           f"over k = 1…{positive}")


def alpha_req(eigenvalues: np.ndarray, fit_range: tuple[int, int] | None = None, fit: str = "reptrix") -> AlphaReq:
    """α-ReQ of descending covariance eigenvalues: the line log λ_k = −α log k + c over ``fit_range``.

    ``fit="reptrix"``: 1/k-weighted least squares, default k = 11 … 100; ``fit="ols"``: unweighted, default every
    λ above 1e-12·λ₁ (see :func:`default_range`). NaN, with the reason, where the range holds fewer than two
    eigenvalues above 1e-12·λ₁.
    """
    if fit not in ALPHA_REQ_FITS:
        raise ValueError(f"unknown α-ReQ fit {fit!r}; choose one of {', '.join(ALPHA_REQ_FITS)}")
    top = eigenvalues[0] if len(eigenvalues) else 0.0
    positive = int((eigenvalues > ALPHA_REQ_FLOOR * top).sum()) if top > 0 else 0
    note = None
    if fit_range is None:
        fit_range, note = default_range(fit, positive)
    first, last = fit_range
    if last - first < 1:
        return AlphaReq(math.nan, fit_range, f"the spectrum has {positive} eigenvalue(s) above 1e-12·λ₁: a line "
                                             "needs two")
    if last > positive:
        return AlphaReq(math.nan, fit_range, f"the fit over k = {first}…{last} needs {last} eigenvalues above "
                                             f"1e-12·λ₁, the spectrum has {positive}")
    k = np.arange(first, last + 1, dtype=np.float64)
    log_k, log_lam = np.log(k), np.log(eigenvalues[first - 1 : last])
    if fit == "ols":
        return AlphaReq(float(-np.polyfit(log_k, log_lam, 1)[0]), fit_range, None, note)
    design = np.stack([-log_k, np.ones_like(log_k)], axis=1)  # (K, 2): X = [−log k, 1]
    weighted = design / k[:, None]  # W·X, w_k = 1/k
    coef = np.linalg.solve(design.T @ weighted, weighted.T @ log_lam)  # (XᵀWX)⁻¹ XᵀWy
    return AlphaReq(float(coef[0]), fit_range, None, note)


def spectrum_metrics(gram: Gram, fit_range: tuple[int, int] | None = None,
                     fit: str = "reptrix") -> dict[str, object]:
    """RankMe (both variants), effective ranks, participation ratio, α-ReQ and both singular-value spectra of one
    modality."""
    sigma = gram.singular_values(centered=False)
    sigma_c = gram.singular_values(centered=True)
    eigenvalues = sigma_c**2 / max(gram.n - 1, 1)
    fitted = alpha_req(eigenvalues, fit_range, fit)
    return {
        "rankme": rankme(sigma),
        "rankme_covariance": rankme_covariance(sigma_c, gram.n, len(gram.total)),
        "effective_rank": spectral_entropy_rank(sigma),
        "effective_rank_centered": spectral_entropy_rank(sigma_c),
        "participation_ratio": participation_ratio(eigenvalues),
        "alpha_req": fitted.alpha,
        "alpha_req_range": fitted.fit_range,
        "alpha_req_undefined": fitted.undefined,
        "alpha_req_note": fitted.note,
        "singular_values": sigma,
        "singular_values_centered": sigma_c,
    }
