"""Contrastive-gap regularisers CUA and CUAXU (Fahim, Murphy & Fyshe 2024, "It's not a modality gap").

Built from the dense terms of :mod:`embspace.kernels.dense`; the conventions match the authors'
``compute_CUA_loss`` / ``compute_CUAXU_loss``:

* L_clip: symmetric InfoNCE with the logit scale 1/τ (their ``temperature`` multiplies the cosines);
* U_mean = (U(X̂) + U(Ŷ)) / 2 with U(Z) = log mean_{i<j} exp(−t‖ẑ_i − ẑ_j‖²), t = 2 (their ``torch.pdist``
  form; here a logsumexp over the similarity matrix — the same value, without pdist's size limits);
* A = mean_i ‖x̂_i − ŷ_i‖^α, α = 2;
* U_cross = log mean_{i≠j} exp(−t‖x̂_i − ŷ_j‖²) (the XU term);
* all weights 1.

Shapes: x (image) and y (text) are (N, D), row i paired with row i; N ≥ 2.
"""

from __future__ import annotations

import torch
from torch import nn

from embspace.finetune.losses import (
    DEFAULT_LOGIT_SCALE,
    Scale,
    clip_loss,
    prepare_pair,
    resolve_scale,
    total_and_terms,
)
from embspace.kernels.dense import alignment, uniformity_cross, uniformity_mean
from embspace.options import check_loss_options

__all__ = ["CUALoss", "CUAXULoss", "cua_loss", "cuaxu_loss"]


def _cua_terms(
    x: torch.Tensor, y: torch.Tensor, logit_scale: Scale, t: float, alpha: float, cross: bool
) -> dict[str, torch.Tensor]:
    terms = {
        "contrastive_loss": clip_loss(x, y, logit_scale, normalized=True),
        "uniformity_loss": uniformity_mean(x, y, t),
        "alignment_loss": alignment(x, y, alpha),
    }
    if cross:
        terms["cross_uniformity_loss"] = uniformity_cross(x, y, t)
    return terms


def cua_loss(
    x: torch.Tensor,
    y: torch.Tensor,
    logit_scale: Scale = DEFAULT_LOGIT_SCALE,
    t: float = 2.0,
    alpha: float = 2.0,
    *,
    normalized: bool = False,
) -> torch.Tensor:
    """CUA = L_clip + U_mean + A (Fahim et al. 2024).

    .. math::

        CUA = ½[CE(S·s, I) + CE(Sᵀ·s, I)] + ½[U(X̂) + U(Ŷ)] + mean_i ‖x̂_i − ŷ_i‖^α
        S = X̂Ŷᵀ,  s = logit_scale,  U(Z) = log mean_{i<j} exp(−t‖ẑ_i − ẑ_j‖²),  t = 2,  α = 2
    """
    x, y = prepare_pair(x, y, normalized)
    return torch.stack(list(_cua_terms(x, y, logit_scale, t, alpha, cross=False).values())).sum()


def cuaxu_loss(
    x: torch.Tensor,
    y: torch.Tensor,
    logit_scale: Scale = DEFAULT_LOGIT_SCALE,
    t: float = 2.0,
    alpha: float = 2.0,
    *,
    normalized: bool = False,
) -> torch.Tensor:
    """CUAXU = CUA + U_cross (Fahim et al. 2024).

    .. math::

        CUAXU = CUA + log mean_{i≠j} exp(−t‖x̂_i − ŷ_j‖²)
    """
    x, y = prepare_pair(x, y, normalized)
    return torch.stack(list(_cua_terms(x, y, logit_scale, t, alpha, cross=True).values())).sum()


class CUALoss(nn.Module):
    """Module form of :func:`cua_loss` (open_clip ``forward`` signature).

    Args:
        logit_scale: 1/τ used when ``forward`` gets none.
        t: uniformity temperature (2). alpha: alignment exponent (2).
        normalized: the features are already unit rows.

    ``output_dict=True`` gives ``{"contrastive_loss", "uniformity_loss", "alignment_loss"}``.
    """

    cross = False

    def __init__(
        self, logit_scale: float = DEFAULT_LOGIT_SCALE, t: float = 2.0, alpha: float = 2.0, normalized: bool = False
    ) -> None:
        super().__init__()
        check_loss_options(t=t, alpha=alpha)
        self.logit_scale = logit_scale
        self.t = t
        self.alpha = alpha
        self.normalized = normalized

    def forward(
        self,
        image_features: torch.Tensor,
        text_features: torch.Tensor,
        logit_scale: Scale | None = None,
        output_dict: bool = False,
    ) -> torch.Tensor | dict[str, torch.Tensor]:
        x, y = prepare_pair(image_features, text_features, self.normalized)
        scale = resolve_scale(logit_scale, self.logit_scale)
        return total_and_terms(_cua_terms(x, y, scale, self.t, self.alpha, self.cross), output_dict)


class CUAXULoss(CUALoss):
    """Module form of :func:`cuaxu_loss`; ``output_dict`` adds ``"cross_uniformity_loss"`` to CUA's keys."""

    cross = True
