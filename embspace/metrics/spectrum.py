"""Singular-value spectrum and the ranks built on it, from a D×D Gram matrix streamed in float64.

G = Σ_i x̂_iᵀx̂_i (uncentred) and C = G − N·μμᵀ (centred, μ = mean x̂); σ_k = √eig_k. Only the first min(N, D)
singular values exist (min(N−1, D) after centring); the rest are numerical zeros and are left out.

- RankMe (Garrido et al. 2023): exp(−Σ p_k log p_k), p_k = σ_k/Σσ + 1e-7, σ of the UNcentred matrix.
- effective rank (Roy & Vetterli 2007): the same entropy with p_k = σ_k/Σσ and no ε; reported uncentred
  (``effective_rank``) and centred (``effective_rank_centered``).
- participation ratio: (Σλ)²/Σλ² on the covariance eigenvalues λ_k = σ_k²(centred)/(N−1).
- α-ReQ (Agrawal et al. 2022): α = −slope of the least-squares line of log λ_k against log k, over
  k = 1 … K where K counts the eigenvalues above 1e-12·λ₁ (or a range the caller gives).
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


def alpha_req(eigenvalues: np.ndarray, fit_range: tuple[int, int] | None = None) -> tuple[float, tuple[int, int]]:
    """α = −slope of log λ_k vs log k (k from 1) over ``fit_range`` (1-based, inclusive) or every λ > 1e-12·λ₁."""
    if fit_range is None:
        kept = int((eigenvalues > ALPHA_REQ_FLOOR * eigenvalues[0]).sum()) if len(eigenvalues) else 0
        fit_range = (1, kept)
    first, last = fit_range
    if last - first < 1:
        return math.nan, fit_range
    k = np.arange(first, last + 1, dtype=np.float64)
    slope = np.polyfit(np.log(k), np.log(eigenvalues[first - 1 : last]), 1)[0]
    return float(-slope), fit_range


def spectrum_metrics(gram: Gram, fit_range: tuple[int, int] | None = None) -> dict[str, object]:
    """RankMe, effective ranks, participation ratio, α-ReQ and both singular-value spectra of one modality."""
    sigma = gram.singular_values(centered=False)
    sigma_c = gram.singular_values(centered=True)
    eigenvalues = sigma_c**2 / max(gram.n - 1, 1)
    alpha, used = alpha_req(eigenvalues, fit_range)
    return {
        "rankme": rankme(sigma),
        "effective_rank": spectral_entropy_rank(sigma),
        "effective_rank_centered": spectral_entropy_rank(sigma_c),
        "participation_ratio": participation_ratio(eigenvalues),
        "alpha_req": alpha,
        "alpha_req_range": used,
        "singular_values": sigma,
        "singular_values_centered": sigma_c,
    }
