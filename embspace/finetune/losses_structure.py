"""Latent modality structure losses (Jiang et al., CVPR 2023, "Understanding and constructing latent modality
structures in multi-modal representation learning").

Three regularisers, each a public term, combined with the CLIP loss by :class:`LatentStructureLoss`:

* deep feature separation (intra-modal): extra heads give "independent" features zᶦ; zᶦ_j is pushed orthogonal
  to z_j (:func:`feature_separation_loss`) and kept informative by an in-modal InfoNCE between two views of zᶦ
  (:func:`inmodal_infonce_loss`) and a uniformity term on zᶦ (:func:`independent_uniformity_loss`);
* Brownian bridge (inter-modal): an augmented image is pulled to a fixed point of the bridge between its
  image and its text (:func:`brownian_bridge_loss`);
* geometric consistency (both): the similarity structure must be symmetric across modalities
  (:func:`geometric_consistency_loss`).

The authors released no code; the definitions are those of METHODS.md, which fixes the two places where the
printed paper is ambiguous or wrong: the bridge loss is ‖x̂ᵃ − μ‖² = 2 − 2⟨x̂ᵃ, μ⟩ (the printed expansion has a
typo), and geometric consistency is divided by N (not N²).

Shapes: all feature tensors are (N, D), row j of each belonging to pair j; every function normalises its inputs
row by row unless ``normalized=True``.
"""

from __future__ import annotations

import torch
from torch import nn

from embspace.finetune.losses import (
    DEFAULT_LOGIT_SCALE,
    Scale,
    clip_loss,
    prepare,
    prepare_pair,
    resolve_scale,
    total_and_terms,
)
from embspace.kernels.dense import normalize, uniformity

__all__ = [
    "LatentStructureLoss",
    "bridge_target",
    "brownian_bridge_loss",
    "feature_separation_loss",
    "geometric_consistency_loss",
    "independent_uniformity_loss",
    "inmodal_infonce_loss",
]


def feature_separation_loss(z: torch.Tensor, z_indep: torch.Tensor, *, normalized: bool = False) -> torch.Tensor:
    """Deep feature separation for one modality (Jiang et al. 2023): L_sep = mean_j ⟨ẑ_j, ẑᶦ_j⟩².

    0 when every independent feature is orthogonal to its shared feature, 1 when they are parallel.
    Sum it over the modalities (as :class:`LatentStructureLoss` does).
    """
    z, z_indep = prepare_pair(z, z_indep, normalized)
    return (z * z_indep).sum(-1).pow(2).mean()


def inmodal_infonce_loss(
    z_indep: torch.Tensor,
    z_indep_view: torch.Tensor,
    logit_scale: Scale = DEFAULT_LOGIT_SCALE,
    *,
    normalized: bool = False,
) -> torch.Tensor:
    """In-modal InfoNCE on the independent features (Jiang et al. 2023): the symmetric InfoNCE of
    :func:`~embspace.finetune.losses.clip_loss` between two views (e.g. two augmentations) of the same modality.

    .. math::

        ½[CE(s·Ẑᶦ Ẑᶦ'ᵀ, I) + CE(s·Ẑᶦ' Ẑᶦᵀ, I)],  s = logit_scale
    """
    return clip_loss(z_indep, z_indep_view, logit_scale, normalized=normalized)


def independent_uniformity_loss(z_indep: torch.Tensor, t: float = 2.0, *, normalized: bool = False) -> torch.Tensor:
    """Uniformity of the independent features (Jiang et al. 2023; Wang & Isola 2020):
    U(Ẑᶦ) = log mean_{i<j} exp(−t‖ẑᶦ_i − ẑᶦ_j‖²), t = 2."""
    return uniformity(prepare(z_indep, normalized), t)


def bridge_target(x: torch.Tensor, y: torch.Tensor, t: float = 0.25, *, normalized: bool = False) -> torch.Tensor:
    """The Brownian-bridge anchor of each pair: μ_j = normalise(t·x̂_j + (1−t)·ŷ_j), (N, D).

    ``t`` weights the IMAGE endpoint x̂ (METHODS.md: μ_j = normalise(0.25·x̂_j + 0.75·ŷ_j)), so with t = 0.25
    the anchor lies three quarters of the way from the image to its text. In the usual bridge parametrisation
    E[z_s | z₀, z₁] = (1−s)·z₀ + s·z₁ this is s = 0.75 for a bridge that starts at the image (or s = 0.25 for
    one that starts at the text). The mix is linear then renormalised, not a slerp.
    """
    x, y = prepare_pair(x, y, normalized)
    return normalize(t * x + (1 - t) * y)


def brownian_bridge_loss(
    x_aug: torch.Tensor,
    x: torch.Tensor,
    y: torch.Tensor,
    t: float = 0.25,
    *,
    normalized: bool = False,
) -> torch.Tensor:
    """Brownian-bridge loss (Jiang et al. 2023): pull the augmented image onto the bridge of its pair.

    .. math::

        μ_j = normalise(t·x̂_j + (1−t)·ŷ_j),  t = 0.25
        L_br = mean_j ‖x̂ᵃ_j − μ_j‖² = mean_j (2 − 2⟨x̂ᵃ_j, μ_j⟩)

    ``x_aug`` is the feature of an augmented view of image j, ``x`` of the clean image, ``y`` of its text.
    Gradients flow into all three (μ is not detached). See :func:`bridge_target` for the endpoint convention.
    """
    x_aug = prepare(x_aug, normalized)
    mu = bridge_target(x, y, t, normalized=normalized)
    if x_aug.shape != mu.shape:
        raise ValueError(f"x_aug has shape {tuple(x_aug.shape)}, the pairs {tuple(mu.shape)}")
    return (2 - 2 * (x_aug * mu.to(x_aug.dtype)).sum(-1)).mean()


def geometric_consistency_loss(x: torch.Tensor, y: torch.Tensor, *, normalized: bool = False) -> torch.Tensor:
    """Geometric consistency (Jiang et al. 2023), divided by N (METHODS.md):

    .. math::

        L_gc = 1/N Σ_j Σ_k [(⟨x̂_j, ŷ_k⟩ − ⟨x̂_k, ŷ_j⟩)² + (⟨x̂_j, x̂_k⟩ − ⟨ŷ_j, ŷ_k⟩)²]
             = (‖C − Cᵀ‖²_F + ‖X̂X̂ᵀ − ŶŶᵀ‖²_F) / N,   C = X̂Ŷᵀ

    The first part asks image→text and text→image similarities to agree, the second the two modalities'
    internal similarity structures. Symmetric in (x, y); 0 for identical modalities.
    """
    x, y = prepare_pair(x, y, normalized)
    cross = x @ y.T  # (N, N)
    within = x @ x.T - y @ y.T  # (N, N)
    return ((cross - cross.T).pow(2).sum() + within.pow(2).sum()) / x.shape[0]


class LatentStructureLoss(nn.Module):
    """CLIP loss plus the latent-structure regularisers of Jiang et al. (CVPR 2023).

    .. math::

        L = w_clip·L_clip + w_sep·Σ_m L_sep(z_m, zᶦ_m) + w_inmodal·Σ_m InfoNCE(zᶦ_m, zᶦ'_m)
            + w_unif·Σ_m U(zᶦ_m) + w_br·L_br(x̂ᵃ, x̂, ŷ) + w_gc·L_gc(x̂, ŷ),   m ∈ {image, text}

    A term whose inputs are not passed to ``forward`` is left out (and absent from the dict); L_clip and
    L_gc need only the two feature batches. All weights default to 1 and the bridge to t = 0.25: the paper's
    per-term weights could not be checked against released code (there is none), so set them explicitly
    when reproducing a run.

    ``forward(image_features, text_features, logit_scale=None, output_dict=False, *, image_augmented=None,
    image_independent=None, text_independent=None, image_independent_view=None, text_independent_view=None)``.
    ``output_dict=True`` gives the weighted addends ``contrastive_loss``, ``separation_loss``,
    ``inmodal_loss``, ``independent_uniformity_loss``, ``bridge_loss``, ``geometric_consistency_loss``
    (those computed).
    """

    def __init__(
        self,
        w_clip: float = 1.0,
        w_sep: float = 1.0,
        w_inmodal: float = 1.0,
        w_unif: float = 1.0,
        w_bridge: float = 1.0,
        w_gc: float = 1.0,
        bridge_t: float = 0.25,
        t: float = 2.0,
        logit_scale: float = DEFAULT_LOGIT_SCALE,
        normalized: bool = False,
    ) -> None:
        super().__init__()
        self.w_clip, self.w_sep, self.w_inmodal = w_clip, w_sep, w_inmodal
        self.w_unif, self.w_bridge, self.w_gc = w_unif, w_bridge, w_gc
        self.bridge_t = bridge_t
        self.t = t
        self.logit_scale = logit_scale
        self.normalized = normalized

    def forward(
        self,
        image_features: torch.Tensor,
        text_features: torch.Tensor,
        logit_scale: Scale | None = None,
        output_dict: bool = False,
        *,
        image_augmented: torch.Tensor | None = None,
        image_independent: torch.Tensor | None = None,
        text_independent: torch.Tensor | None = None,
        image_independent_view: torch.Tensor | None = None,
        text_independent_view: torch.Tensor | None = None,
    ) -> torch.Tensor | dict[str, torch.Tensor]:
        norm = self.normalized
        x, y = prepare_pair(image_features, text_features, norm)
        scale = resolve_scale(logit_scale, self.logit_scale)
        terms = {"contrastive_loss": self.w_clip * clip_loss(x, y, scale, normalized=True)}
        pairs = [(x, image_independent, image_independent_view), (y, text_independent, text_independent_view)]
        given = [(z, zi, zv) for z, zi, zv in pairs if zi is not None]
        if given:
            terms["separation_loss"] = self.w_sep * sum(
                feature_separation_loss(z, zi, normalized=norm) for z, zi, _ in given
            )
            views = [(zi, zv) for _, zi, zv in given if zv is not None]
            if views:
                terms["inmodal_loss"] = self.w_inmodal * sum(
                    inmodal_infonce_loss(zi, zv, scale, normalized=norm) for zi, zv in views
                )
            terms["independent_uniformity_loss"] = self.w_unif * sum(
                independent_uniformity_loss(zi, self.t, normalized=norm) for _, zi, _ in given
            )
        if image_augmented is not None:
            terms["bridge_loss"] = self.w_bridge * brownian_bridge_loss(
                image_augmented, x, y, self.bridge_t, normalized=norm
            )
        terms["geometric_consistency_loss"] = self.w_gc * geometric_consistency_loss(x, y, normalized=True)
        return total_and_terms(terms, output_dict)
