"""Dense, differentiable definitions of the geometry terms, for batches that fit in memory.

These are the one-line definitions of Wang & Isola (2020) and their relatives, written over an explicit
similarity matrix. They serve as building blocks of the fine-tuning losses (gradients flow through them) and
as readable references; the streaming engine in :mod:`embspace.kernels.pairwise` computes the same numbers
for any N without building the N×N matrix.

Shapes: ``x`` is (N, D), ``y`` is (N, D); row i of ``x`` pairs with row i of ``y``. Unless a name says
otherwise, inputs must already be L2-normalised (use :func:`normalize`).
"""

from __future__ import annotations

import math

import torch


def normalize(x: torch.Tensor, eps: float = 1e-12) -> torch.Tensor:
    """x̂ = x / max(‖x‖₂, eps), row by row."""
    return x / x.norm(dim=-1, keepdim=True).clamp_min(eps)


def alignment(x: torch.Tensor, y: torch.Tensor, alpha: float = 2.0) -> torch.Tensor:
    """Alignment (Wang & Isola 2020, ``align_loss``): mean_i ‖x̂_i − ŷ_i‖^α."""
    return (x - y).norm(dim=1).pow(alpha).mean()


def uniformity(x: torch.Tensor, t: float = 2.0) -> torch.Tensor:
    """Uniformity (Wang & Isola 2020, ``uniform_loss``): log mean_{i<j} exp(−t‖x̂_i − x̂_j‖²).

    For unit rows ‖a − b‖² = 2 − 2a·b, so the exponent is 2t(a·b − 1) ≤ 0. Each unordered pair counts once,
    which gives the same mean as every ordered pair i ≠ j.
    """
    n = x.shape[0]
    sim = x @ x.T  # (N, N)
    iu = torch.triu_indices(n, n, offset=1, device=x.device)
    exponent = 2 * t * (sim[iu[0], iu[1]] - 1)  # (N(N−1)/2,)
    return torch.logsumexp(exponent, 0) - math.log(exponent.numel())


def uniformity_cross(x: torch.Tensor, y: torch.Tensor, t: float = 2.0) -> torch.Tensor:
    """Cross uniformity (Fahim et al. 2024, XU): log mean_{i≠j} exp(−t‖x̂_i − ŷ_j‖²)."""
    n = x.shape[0]
    exponent = 2 * t * (x @ y.T - 1)  # (N, N)
    off_diagonal = ~torch.eye(n, dtype=torch.bool, device=x.device)
    return torch.logsumexp(exponent[off_diagonal], 0) - math.log(n * (n - 1))


def uniformity_mean(x: torch.Tensor, y: torch.Tensor, t: float = 2.0) -> torch.Tensor:
    """Mean uniformity (Wang & Isola's examples; Fahim et al.): (U(X̂) + U(Ŷ)) / 2."""
    return (uniformity(x, t) + uniformity(y, t)) / 2


def uniformity_joint(x: torch.Tensor, y: torch.Tensor, t: float = 2.0) -> torch.Tensor:
    """Joint uniformity (Oh et al. 2023): U over the union of X̂ and Ŷ (2N points)."""
    return uniformity(torch.cat([x, y]), t)


def gap_vector(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Δ = mean(X̂) − mean(Ŷ), the means not renormalised (Liang et al. 2022)."""
    return x.mean(0) - y.mean(0)


def modality_gap(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Modality gap (Liang et al. 2022): ‖mean(X̂) − mean(Ŷ)‖₂."""
    return gap_vector(x, y).norm()


def centroid_cosine(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """cos(mean X̂, mean Ŷ) (Fahim et al. 2024)."""
    return torch.nn.functional.cosine_similarity(x.mean(0), y.mean(0), dim=0)


def cone(x: torch.Tensor) -> torch.Tensor:
    """Cone effect (Liang et al. 2022): mean over i ≠ j of x̂_i·x̂_j = (‖Σx̂‖² − Σ‖x̂_i‖²) / (N(N−1))."""
    n = x.shape[0]
    return (x.sum(0).pow(2).sum() - x.pow(2).sum()) / (n * (n - 1))


def matched_cosine(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Mean cosine of the true pairs: mean_i x̂_i·ŷ_i."""
    return (x * y).sum(1).mean()
