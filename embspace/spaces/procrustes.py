"""Orthogonal Procrustes residual between two spaces over the same rows (Schönemann 1966), from
:class:`~embspace.spaces.sums.SpaceSums`.

Each space's unit rows are centred and scaled to unit Frobenius norm (Ã = (A − mean A)/‖A − mean A‖_F; the
normalisation of ``scipy.spatial.procrustes``, without its extra scaling of the rotated matrix). Then

    min over orthogonal R of ‖Ã R − B̃‖_F² = 2 − 2‖ÃᵀB̃‖_*,     ‖·‖_* = the sum of the singular values,

from the SVD of the centred cross-Gram ÃᵀB̃ = (G_ab − s_a s_bᵀ/n)/(‖Ã‖_F‖B̃‖_F) (D_A × D_B). Spaces of different
dimensions are zero-padded to the larger one (the padding leaves the singular values unchanged; R is orthogonal in
the padded space). 0 = one space is a rotation of the other (after centring and scaling); 2 = uncorrelated.
"""

from __future__ import annotations

import math

import torch

from embspace.spaces.sums import SpaceSums

PROCRUSTES_CONVENTION = ("orthogonal Procrustes residual min_R ‖ÃR − B̃‖_F², R orthogonal, on unit rows centred and "
                         "scaled to ‖Ã‖_F = ‖B̃‖_F = 1 (0 = a rotation, 2 = unrelated); the smaller space zero-padded "
                         "when the dimensions differ")


def procrustes_from_sums(sums: SpaceSums, *, exact: bool = True) -> float:
    """2 − 2‖ÃᵀB̃‖_* (clamped to [0, 2] against rounding); NaN where a space has no variance.

    ``exact=False`` takes the singular values as √eig(MᵀM) of the smaller side (a symmetric eigenproblem, about 3×
    faster than the SVD; each σ then carries an absolute error of order √ε·σ_max ≈ 1e-8): for resampling."""
    s = sums
    norm_a = s.nu_a - float(s.s_a @ s.s_a) / s.n  # ‖A − mean A‖_F²
    norm_b = s.nu_b - float(s.s_b @ s.s_b) / s.n
    return _residual(s.g_ab - torch.outer(s.s_a, s.s_b) / s.n, norm_a, norm_b, exact)


def procrustes_of_rows(a: torch.Tensor, b: torch.Tensor, *, exact: bool = True) -> float:
    """The residual of two blocks of rows held whole, ``a`` (R, D_A) and ``b`` (R, D_B) float64 (row i of one
    paired with row i of the other): the same formula with the centred cross-Gram (A − Ā)ᵀ(B − B̄) computed from
    the centred rows (no D×D sums besides it)."""
    a, b = a - a.mean(0), b - b.mean(0)
    return _residual(a.T @ b, float(a.pow(2).sum()), float(b.pow(2).sum()), exact)


def _residual(centred_cross: torch.Tensor, norm_a: float, norm_b: float, exact: bool) -> float:
    """2 − 2‖C‖_*/√(norm_a·norm_b) for the centred cross-Gram C and the squared Frobenius norms of the centred
    spaces, clamped to [0, 2]; NaN where a norm is not positive."""
    if norm_a <= 0 or norm_b <= 0:
        return math.nan
    cross = centred_cross / math.sqrt(norm_a * norm_b)  # ÃᵀB̃ (D_A, D_B)
    if exact:
        nuclear = float(torch.linalg.svdvals(cross).sum())
    else:
        small = cross.T @ cross if cross.shape[1] <= cross.shape[0] else cross @ cross.T
        nuclear = float(torch.linalg.eigvalsh(small).clamp(min=0).sqrt().sum())
    return min(2.0, max(0.0, 2.0 - 2.0 * nuclear))
