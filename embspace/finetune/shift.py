"""Training-free baselines that move the two modalities without fine-tuning.

* :func:`shift_gap` — Liang et al. (NeurIPS 2022, "Mind the gap"), Table 1: translate both modalities along the
  gap vector and renormalise.
* :func:`center_modalities` — subtract each modality's own mean and renormalise.

Shapes: x (modality A, e.g. image) and y (modality B, e.g. text) are (N, D) and (M, D); they need not pair.
Memory is O((N + M)·D): nothing N×N is built. Inputs are never modified; fp16/bf16 inputs are computed in
float32 and returned in their own dtype.
"""

from __future__ import annotations

import torch

from embspace.defaults import SHIFT_LAM
from embspace.kernels.dense import gap_vector, normalize

__all__ = ["center_modalities", "shift_gap"]


def _prepare(z: torch.Tensor, normalized: bool) -> torch.Tensor:
    if z.ndim != 2:
        raise ValueError(f"expected an (N, D) tensor, got shape {tuple(z.shape)}")
    z = z if z.dtype in (torch.float32, torch.float64) else z.float()
    return z if normalized else normalize(z)


def shift_gap(
    x: torch.Tensor,
    y: torch.Tensor,
    lam: float = SHIFT_LAM,
    *,
    direction: torch.Tensor | None = None,
    normalized: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Shift both modalities along the modality gap and renormalise (Liang et al. 2022).

    .. math::

        Δ = mean(X̂) − mean(Ŷ)        (the means not renormalised; :func:`embspace.kernels.dense.gap_vector`)
        x̂′_i = normalise(x̂_i − λΔ),   ŷ′_j = normalise(ŷ_j + λΔ)

    Sign convention: λ > 0 moves the two modalities toward each other. Before the renormalisation the
    centroids move to mean(X̂) − λΔ and mean(Ŷ) + λΔ, i.e. they meet at the midpoint for λ = 0.5; λ = 1 swaps
    them; λ < 0 widens the gap. The renormalisation rescales rows unevenly, so after it the gap at λ = 0.5 is
    exactly zero for symmetric data (e.g. the two modalities mirror images of each other across the hyperplane
    ⟂ Δ through the origin) and only approximately zero in general.

    Liang et al.'s code (``Table_1_Implications_CLIP_Zero_Shot/shifting/shift_features.ipynb``,
    ``move_features``) uses the UNIT direction
    Δ/‖Δ‖ and a sweep ``delta``: image − ½·delta·Δ/‖Δ‖, text + ½·delta·Δ/‖Δ‖ — that is λ = delta / (2‖Δ‖) here.

    Args:
        x, y: (N, D) and (M, D); normalised inside unless ``normalized=True``.
        lam: the step λ along Δ.
        direction: use this (D,) vector instead of Δ (e.g. a gap measured on another data set, as Liang et al.
            do with a COCO direction on classification data); it is used as given, not renormalised.

    Returns:
        (x′, y′): unit rows with the input shapes and dtypes.
    """
    xh, yh = _prepare(x, normalized), _prepare(y, normalized)
    delta = gap_vector(xh, yh) if direction is None else direction.to(device=xh.device, dtype=xh.dtype)  # (D,)
    return normalize(xh - lam * delta).to(x.dtype), normalize(yh + lam * delta).to(y.dtype)


def center_modalities(
    x: torch.Tensor, y: torch.Tensor, *, normalized: bool = False
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-modality mean-centring, then renormalisation.

    .. math::

        x̂′_i = normalise(x̂_i − mean(X̂)),   ŷ′_j = normalise(ŷ_j − mean(Ŷ))

    Both centroids move to the origin before renormalising, which removes the gap vector Δ and each
    modality's cone; afterwards the centroids are small but not zero in general. A row equal to its
    modality's mean becomes the zero vector (there is no direction to keep).

    Returns:
        (x′, y′): unit rows with the input shapes and dtypes.
    """
    xh, yh = _prepare(x, normalized), _prepare(y, normalized)
    return normalize(xh - xh.mean(0)).to(x.dtype), normalize(yh - yh.mean(0)).to(y.dtype)
