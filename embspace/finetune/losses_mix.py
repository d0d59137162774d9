"""Geodesic multimodal mixup losses: m²-mix and its uni-modal relatives (Oh et al., NeurIPS 2023).

Conventions follow the authors' training code (github.com/changdaeoh/multimodal-mixup, ``main.py`` and
``loss.py``) and METHODS.md:

* slerp puts λ on its first argument (:func:`embspace.finetune.mixup.slerp`);
* m²-mix hard negatives m_j = slerp(x̂_j, ŷ_j, λ) — λ on the image;
* the m²-mix logits are DIVIDED by τ₂ = 0.07 (the ``--sep_scale`` path of ``main.py``, temperature2 = 1/τ₂);
  the README's open_clip preview multiplies by ``m_tau`` instead, and also scales its diagonal by the CLIP
  logit scale: both are bugs, not followed here;
* CE_img and CE_txt are added (``clip_loss2`` in ``loss.py``), not averaged as in the README preview;
* V-/L-/VL-mix use the CLIP scale 1/τ (``temperature1``), the same one as L_clip;
* the optional decay divides the whole mixing part by (epoch + 1) (``--schedule`` in ``main.py``).

Shapes: x (image) and y (text) are (N, D), row i paired with row i; N ≥ 2.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn

from embspace.finetune.losses import (
    DEFAULT_LOGIT_SCALE,
    Scale,
    clip_loss,
    prepare_pair,
    resolve_scale,
    soft_cross_entropy,
    total_and_terms,
)
from embspace.finetune.mixup import flip_targets, mix_with_reversed, sample_beta, slerp

__all__ = [
    "M2MixLoss",
    "M3MixLoss",
    "lmix_loss",
    "m2mix_logits",
    "m2mix_loss",
    "m3mix_loss",
    "vlmix_loss",
    "vmix_loss",
]

Lam = float | torch.Tensor


def m2mix_logits(
    x: torch.Tensor, y: torch.Tensor, lam: Lam, tau2: float = 0.07, *, normalized: bool = False
) -> tuple[torch.Tensor, torch.Tensor]:
    """The two m²-mix logit matrices (image side, text side), each (N, N).

    .. math::

        m_j = slerp(x̂_j, ŷ_j, λ)
        image side:  Lᴵ_ij = x̂_i·ŷ_i / τ₂ if i = j,   x̂_i·m_j / τ₂ if i ≠ j
        text side:   Lᵀ_ij = ŷ_i·x̂_i / τ₂ if i = j,   ŷ_i·m_j / τ₂ if i ≠ j

    Each anchor keeps its true positive on the diagonal; every other column is a geodesic hard negative.
    Divided by τ₂ (Oh et al. 2023, ``main.py --sep_scale``); the README preview's multiplication is a bug.
    """
    x, y = prepare_pair(x, y, normalized)
    mixed = slerp(x, y, lam, normalized=True)  # (N, D) hard negatives, λ on the image
    positive = torch.diag((x * y).sum(-1))  # (N, N), x̂_i·ŷ_i on the diagonal
    eye = torch.eye(x.shape[0], dtype=torch.bool, device=x.device)
    image_side = torch.where(eye, positive, x @ mixed.T) / tau2  # (N, N)
    text_side = torch.where(eye, positive, y @ mixed.T) / tau2  # (N, N)
    return image_side, text_side


def m2mix_loss(
    x: torch.Tensor, y: torch.Tensor, lam: Lam, tau2: float = 0.07, *, normalized: bool = False
) -> torch.Tensor:
    """The m²-mix term CE_img + CE_txt (Oh et al., NeurIPS 2023), without L_clip and without its weight.

    .. math::

        L_m² = CE(Lᴵ, I) + CE(Lᵀ, I)

    with Lᴵ, Lᵀ from :func:`m2mix_logits` (divided by τ₂ = 0.07) and CE(L, I) = mean_i −log softmax(L_i)_i.
    The two sides are summed as in the authors' ``clip_loss2`` (the README preview halves them).
    """
    image_side, text_side = m2mix_logits(x, y, lam, tau2, normalized=normalized)
    labels = torch.arange(image_side.shape[0], device=image_side.device)
    ce = nn.functional.cross_entropy
    return ce(image_side, labels) + ce(text_side, labels)


def _soft_clip(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """½[CE(L, T) + CE(Lᵀ, Tᵀ)] with soft targets: the authors' ``clip_loss(logits, targets)``."""
    return (soft_cross_entropy(logits, target) + soft_cross_entropy(logits.T, target.T)) / 2


def vmix_loss(
    x: torch.Tensor, y: torch.Tensor, lam: Lam, logit_scale: Scale = DEFAULT_LOGIT_SCALE, *, normalized: bool = False
) -> torch.Tensor:
    """V-mix: images mixed with the reversed batch, contrasted with the plain texts (Oh et al. 2023).

    .. math::

        x̃_i = slerp(x̂_i, x̂_{N−1−i}, λ),   L = logit_scale · X̃Ŷᵀ,   T = λI + (1−λ)·flip(I)
        L_V = ½ [CE(L, T) + CE(Lᵀ, Tᵀ)],   CE(L, T) = mean_i −Σ_j T_ij log softmax(L_i)_j

    Row i (mixed image i) has target λ on text i and 1−λ on text N−1−i. As in the authors' ``main.py``
    (``mix_logits = pos1 @ text_features.T * temperature1``; ``calc_mix_loss``).
    """
    x, y = prepare_pair(x, y, normalized)
    logits = logit_scale * (mix_with_reversed(x, lam, normalized=True) @ y.T)  # (N, N)
    return _soft_clip(logits, flip_targets(x.shape[0], lam, device=x.device, dtype=logits.dtype))


def lmix_loss(
    x: torch.Tensor, y: torch.Tensor, lam: Lam, logit_scale: Scale = DEFAULT_LOGIT_SCALE, *, normalized: bool = False
) -> torch.Tensor:
    """L-mix: texts mixed with the reversed batch, contrasted with the plain images (Oh et al. 2023).

    .. math::

        ỹ_i = slerp(ŷ_i, ŷ_{N−1−i}, λ),   L = logit_scale · X̂Ỹᵀ,   T = λI + (1−λ)·flip(I)
        L_L = ½ [CE(L, T) + CE(Lᵀ, Tᵀ)]

    Rows are images, columns mixed texts (authors: ``image_features @ pos1.T``).
    """
    x, y = prepare_pair(x, y, normalized)
    logits = logit_scale * (x @ mix_with_reversed(y, lam, normalized=True).T)  # (N, N)
    return _soft_clip(logits, flip_targets(x.shape[0], lam, device=x.device, dtype=logits.dtype))


def vlmix_loss(
    x: torch.Tensor, y: torch.Tensor, lam: Lam, logit_scale: Scale = DEFAULT_LOGIT_SCALE, *, normalized: bool = False
) -> torch.Tensor:
    """VL-mix: both modalities mixed with the reversed batch by the same λ (Oh et al. 2023).

    .. math::

        x̃_i = slerp(x̂_i, x̂_{N−1−i}, λ),   ỹ_i = slerp(ŷ_i, ŷ_{N−1−i}, λ),   L = logit_scale · X̃Ỹᵀ
        L_VL = ½ [CE(L, I + flip(I)) + CE(Lᵀ, I + flip(I))]

    The target is the authors' ``I + I_R`` (``clip_loss(mix_logits, I + I_R)`` in ``main.py``): mixed image i
    counts both mixed text i and mixed text N−1−i as positives, each with weight 1. It is NOT normalised, so
    this term is twice the cross-entropy against the distribution ½(I + flip(I)); the paper's VL-mix weights
    were tuned with this scale, and it is kept. With odd N the middle row's target is 2 on the diagonal.
    """
    x, y = prepare_pair(x, y, normalized)
    x_mixed = mix_with_reversed(x, lam, normalized=True)
    y_mixed = mix_with_reversed(y, lam, normalized=True)
    logits = logit_scale * (x_mixed @ y_mixed.T)  # (N, N)
    eye = torch.eye(x.shape[0], device=x.device, dtype=logits.dtype)
    return _soft_clip(logits, eye + eye.flip(0))


def m3mix_loss(
    x: torch.Tensor,
    y: torch.Tensor,
    lam_m2: Lam,
    lam_v: Lam,
    lam_l: Lam,
    lam_vl: Lam,
    logit_scale: Scale = DEFAULT_LOGIT_SCALE,
    tau2: float = 0.07,
    *,
    w_m2: float = 1.0,
    w_v: float = 1.0,
    w_l: float = 1.0,
    w_vl: float = 1.0,
    normalized: bool = False,
) -> torch.Tensor:
    """The mixing part of m³-mix (Oh et al. 2023): w_m²·L_m² + w_V·L_V + w_L·L_L + w_VL·L_VL.

    Each term takes its own λ (the authors draw one per term and batch). L_clip is not included; the module
    :class:`M3MixLoss` adds it.
    """
    x, y = prepare_pair(x, y, normalized)
    return (
        w_m2 * m2mix_loss(x, y, lam_m2, tau2, normalized=True)
        + w_v * vmix_loss(x, y, lam_v, logit_scale, normalized=True)
        + w_l * lmix_loss(x, y, lam_l, logit_scale, normalized=True)
        + w_vl * vlmix_loss(x, y, lam_vl, logit_scale, normalized=True)
    )


class _MixupModule(nn.Module):
    """Shared plumbing: a seedable generator for λ ~ Beta(α, α) and the 1/(epoch+1) decay."""

    def __init__(
        self,
        logit_scale: float,
        decay: bool,
        normalized: bool,
        generator: torch.Generator | None,
        seed: int | None,
    ) -> None:
        super().__init__()
        self.logit_scale = logit_scale
        self.decay = decay
        self.normalized = normalized
        if generator is None:
            generator = torch.Generator()
            # without a seed, derive one from the global RNG so that torch.manual_seed(...) reproduces a run
            generator.manual_seed(int(torch.randint(2**62, ())) if seed is None else seed)
        self.generator = generator
        self.epoch = 0
        self.last_lam: dict[str, float] = {}

    def _draw(self, alpha: float) -> float:
        return float(sample_beta(alpha, generator=self.generator))

    def _decay_factor(self, epoch: int | None) -> float:
        epoch = self.epoch if epoch is None else epoch
        return 1.0 / (epoch + 1) if self.decay else 1.0


class M2MixLoss(_MixupModule):
    """CLIP loss plus geodesic multimodal mixup (m²-mix; Oh et al., NeurIPS 2023).

    .. math::

        L = L_clip(X̂, Ŷ; logit_scale) + c · w · (CE_img + CE_txt),   λ ~ Beta(α, α) once per call,
        c = 1/(epoch + 1) if ``decay`` else 1

    with CE_img + CE_txt from :func:`m2mix_loss` (logits divided by τ₂).

    Args:
        alpha: Beta(α, α) parameter of λ (0.5 in the paper's m²-mix runs, 0.2 in its m³-mix runs).
        weight: w; 0.01 by default (the paper sweeps 0.001–0.05).
        tau2: τ₂ of the mixed logits (0.07).
        decay: divide the mixing term by (epoch + 1); set ``.epoch`` or pass ``epoch=`` to ``forward``.
        logit_scale: 1/τ of L_clip when ``forward`` gets none (100, i.e. τ = 0.01 as in the paper).
        normalized: the features are already unit rows.
        generator, seed: the source of λ: a given ``torch.Generator`` (shared state), or a new one seeded
            with ``seed`` (or from the global RNG when no seed is given).

    ``forward(image_features, text_features, logit_scale=None, output_dict=False, *, lam=None, epoch=None)``;
    ``lam`` overrides the draw (no random number is consumed). The λ used is kept in ``self.last_lam["m2"]``.
    ``output_dict=True`` gives ``{"contrastive_loss", "m2mix_loss"}`` (weighted addends).
    """

    def __init__(
        self,
        alpha: float = 0.5,
        weight: float = 0.01,
        tau2: float = 0.07,
        decay: bool = False,
        logit_scale: float = DEFAULT_LOGIT_SCALE,
        normalized: bool = False,
        generator: torch.Generator | None = None,
        seed: int | None = None,
    ) -> None:
        super().__init__(logit_scale, decay, normalized, generator, seed)
        self.alpha = alpha
        self.weight = weight
        self.tau2 = tau2

    def forward(
        self,
        image_features: torch.Tensor,
        text_features: torch.Tensor,
        logit_scale: Scale | None = None,
        output_dict: bool = False,
        *,
        lam: float | None = None,
        epoch: int | None = None,
    ) -> torch.Tensor | dict[str, torch.Tensor]:
        x, y = prepare_pair(image_features, text_features, self.normalized)
        lam = self._draw(self.alpha) if lam is None else float(lam)
        self.last_lam = {"m2": lam}
        scale = resolve_scale(logit_scale, self.logit_scale)
        factor = self._decay_factor(epoch) * self.weight
        terms = {
            "contrastive_loss": clip_loss(x, y, scale, normalized=True),
            "m2mix_loss": factor * m2mix_loss(x, y, lam, self.tau2, normalized=True),
        }
        return total_and_terms(terms, output_dict)


class M3MixLoss(_MixupModule):
    """CLIP loss plus m³-mix = m²-mix + V-mix + L-mix + VL-mix (Oh et al., NeurIPS 2023).

    .. math::

        L = L_clip + c · (w_m²·L_m²(λ₁) + w_V·L_V(λ₂) + w_L·L_L(λ₃) + w_VL·L_VL(λ₄))
        λ₁ ~ Beta(α_m², α_m²),  λ₂, λ₃ ~ Beta(α_uni, α_uni),  λ₄ ~ Beta(α_vl, α_vl),  c as in :class:`M2MixLoss`

    Defaults are the authors' ``scripts/m3mix.sh``: α_m² = 0.2 (``--beta2``), α_uni = α_vl = 0.5
    (``--betavariate``, ``--beta1``), w_m² = 0.01, w_V = w_L = 0.05 (``--vmix``/``--lmix``), w_VL = 0.1 (the
    middle of the swept 0.05/0.1/0.2), τ₂ = 0.07. λ is drawn in the authors' order V, L, VL, m².

    ``forward(..., *, lam=None, epoch=None)``: ``lam`` maps any of ``"m2"``, ``"v"``, ``"l"``, ``"vl"`` to a
    fixed value (those are not drawn). ``output_dict=True`` gives ``{"contrastive_loss", "m2mix_loss",
    "vmix_loss", "lmix_loss", "vlmix_loss"}`` (weighted addends).
    """

    def __init__(
        self,
        alpha_m2: float = 0.2,
        alpha_uni: float = 0.5,
        alpha_vl: float = 0.5,
        w_m2: float = 0.01,
        w_v: float = 0.05,
        w_l: float = 0.05,
        w_vl: float = 0.1,
        tau2: float = 0.07,
        decay: bool = False,
        logit_scale: float = DEFAULT_LOGIT_SCALE,
        normalized: bool = False,
        generator: torch.Generator | None = None,
        seed: int | None = None,
    ) -> None:
        super().__init__(logit_scale, decay, normalized, generator, seed)
        self.alpha_m2, self.alpha_uni, self.alpha_vl = alpha_m2, alpha_uni, alpha_vl
        self.w_m2, self.w_v, self.w_l, self.w_vl = w_m2, w_v, w_l, w_vl
        self.tau2 = tau2

    def forward(
        self,
        image_features: torch.Tensor,
        text_features: torch.Tensor,
        logit_scale: Scale | None = None,
        output_dict: bool = False,
        *,
        lam: Mapping[str, float] | None = None,
        epoch: int | None = None,
    ) -> torch.Tensor | dict[str, torch.Tensor]:
        x, y = prepare_pair(image_features, text_features, self.normalized)
        fixed = dict(lam or {})
        unknown = set(fixed) - {"m2", "v", "l", "vl"}
        if unknown:
            raise ValueError(f"M3MixLoss: unknown λ keys {sorted(unknown)}; use 'm2', 'v', 'l', 'vl'")
        alphas = {"v": self.alpha_uni, "l": self.alpha_uni, "vl": self.alpha_vl, "m2": self.alpha_m2}
        lams = {k: float(fixed[k]) if k in fixed else self._draw(a) for k, a in alphas.items()}
        self.last_lam = lams
        scale = resolve_scale(logit_scale, self.logit_scale)
        c = self._decay_factor(epoch)
        terms = {
            "contrastive_loss": clip_loss(x, y, scale, normalized=True),
            "m2mix_loss": c * self.w_m2 * m2mix_loss(x, y, lams["m2"], self.tau2, normalized=True),
            "vmix_loss": c * self.w_v * vmix_loss(x, y, lams["v"], scale, normalized=True),
            "lmix_loss": c * self.w_l * lmix_loss(x, y, lams["l"], scale, normalized=True),
            "vlmix_loss": c * self.w_vl * vlmix_loss(x, y, lams["vl"], scale, normalized=True),
        }
        return total_and_terms(terms, output_dict)
