"""Fine-tuning losses for CLIP-like two-tower models: the common base and the public index.

Every loss exists twice, in the style of lightly's ``loss/`` and open_clip's ``loss.py``:

* a pure function of features, built from public terms (:mod:`embspace.kernels.dense`, :func:`slerp`);
* an ``nn.Module`` whose constructor holds hyperparameters only and whose
  ``forward(image_features, text_features, logit_scale=None, output_dict=False)`` returns a scalar, or with
  ``output_dict=True`` a dict of the weighted addends under open_clip-style keys (``"contrastive_loss"``,
  ``"m2mix_loss"``, …) whose values sum to the scalar loss. There is no ``"loss"`` key: open_clip's
  ``train_one_epoch`` computes ``total_loss = sum(losses.values())`` itself.

Shapes: ``x``/``image_features`` and ``y``/``text_features`` are (N, D); row i of one pairs with row i of the
other. Inputs are L2-normalised row by row inside every function unless ``normalized=True`` is passed (the
modules take the same flag in their constructor). Half-precision inputs are computed in float32; the result is
a float32 (float64 for float64 inputs) scalar.

``logit_scale`` is the multiplier 1/τ applied to cosine similarities (open_clip's ``logit_scale.exp()``);
modules fall back to their constructor's ``logit_scale`` (default 100 = 1/0.01, the τ of Oh et al.) when
``forward`` gets None.

Drop-in use in an open_clip training loop (``open_clip_train.train.train_one_epoch`` calls
``losses = loss(**model_out, output_dict=True)`` with ``model_out = {"image_features", "text_features",
"logit_scale"}``, the scale already exponentiated, then sums the dict)::

    loss = embspace.finetune.M2MixLoss(seed=0)   # instead of open_clip.ClipLoss()

In a Hugging Face ``CLIPModel`` step, pass ``out.image_embeds, out.text_embeds, model.logit_scale.exp()``.
See :mod:`embspace.finetune.integration` and ``examples/finetune_clip_model.py``.

Where the losses live (all importable from here and from :mod:`embspace.finetune`):

* this module: :func:`clip_loss`, :func:`soft_cross_entropy`, :class:`ClipLoss`;
* :mod:`.losses_mix`: m²-mix, V-/L-/VL-mix, m³-mix (Oh et al., NeurIPS 2023);
* :mod:`.losses_gap`: CUA, CUAXU (Fahim et al. 2024);
* :mod:`.losses_structure`: feature separation, Brownian bridge, geometric consistency (Jiang et al., CVPR 2023).
"""

from __future__ import annotations

import importlib
from typing import Any

import torch
from torch import nn

from embspace.kernels.dense import normalize

__all__ = ["ClipLoss", "clip_loss", "soft_cross_entropy"]

DEFAULT_LOGIT_SCALE = 100.0

Scale = float | torch.Tensor


def prepare(x: torch.Tensor, normalized: bool = False) -> torch.Tensor:
    """Upcast fp16/bf16 to float32 and L2-normalise rows unless ``normalized``."""
    if x.ndim != 2:
        raise ValueError(f"expected an (N, D) tensor, got shape {tuple(x.shape)}")
    if x.dtype not in (torch.float32, torch.float64):
        x = x.float()
    return x if normalized else normalize(x)


def prepare_pair(
    x: torch.Tensor, y: torch.Tensor, normalized: bool = False
) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`prepare` both modalities and check that they pair row by row."""
    if x.shape != y.shape:
        raise ValueError(f"paired features must have the same shape, got {tuple(x.shape)} and {tuple(y.shape)}")
    x, y = prepare(x, normalized), prepare(y, normalized)
    dtype = torch.promote_types(x.dtype, y.dtype)
    return x.to(dtype), y.to(dtype)


def resolve_scale(logit_scale: Scale | None, default: Scale) -> Scale:
    """The forward-time ``logit_scale`` if given, else the constructor's."""
    return default if logit_scale is None else logit_scale


def soft_cross_entropy(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Cross-entropy with a target matrix: mean_i −Σ_j T_ij · log softmax(logits_i)_j.

    With T = I this is ``F.cross_entropy(logits, arange(N))``. T is used as given (rows need not sum to 1),
    as in the ``cross_entropy`` helper of the m²-mix authors' ``loss.py``.
    """
    return -(target * logits.log_softmax(-1)).sum(-1).mean()


def clip_loss(
    x: torch.Tensor,
    y: torch.Tensor,
    logit_scale: Scale = DEFAULT_LOGIT_SCALE,
    *,
    normalized: bool = False,
) -> torch.Tensor:
    """CLIP's symmetric InfoNCE (Radford et al. 2021; open_clip ``ClipLoss``).

    .. math::

        S = X̂Ŷᵀ,  L_clip = ½ [CE(S/τ, I) + CE(Sᵀ/τ, I)],  1/τ = logit_scale

    where CE(L, I) = mean_i −log softmax(L_i)_i: row i's positive is column i.
    """
    x, y = prepare_pair(x, y, normalized)
    logits = logit_scale * (x @ y.T)  # (N, N), row = image, column = text
    labels = torch.arange(x.shape[0], device=x.device)
    ce = nn.functional.cross_entropy
    return (ce(logits, labels) + ce(logits.T, labels)) / 2


def total_and_terms(terms: dict[str, torch.Tensor], output_dict: bool) -> torch.Tensor | dict[str, torch.Tensor]:
    """The sum of the weighted addends, or (``output_dict``) the addends themselves, which sum to it.

    No ``"loss"`` entry is added: open_clip sums every value of the dict, so a total in it would count twice.
    """
    if output_dict:
        return dict(terms)
    return torch.stack(list(terms.values())).sum()


class ClipLoss(nn.Module):
    """Module form of :func:`clip_loss` with open_clip's ``forward`` signature.

    Args:
        logit_scale: 1/τ used when ``forward`` gets no ``logit_scale``.
        normalized: the features are already unit rows (skip the normalisation).

    ``output_dict=True`` returns ``{"contrastive_loss"}``.
    """

    def __init__(self, logit_scale: float = DEFAULT_LOGIT_SCALE, normalized: bool = False) -> None:
        super().__init__()
        self.logit_scale = logit_scale
        self.normalized = normalized

    def forward(
        self,
        image_features: torch.Tensor,
        text_features: torch.Tensor,
        logit_scale: Scale | None = None,
        output_dict: bool = False,
    ) -> torch.Tensor | dict[str, torch.Tensor]:
        scale = resolve_scale(logit_scale, self.logit_scale)
        terms = {"contrastive_loss": clip_loss(image_features, text_features, scale, normalized=self.normalized)}
        return total_and_terms(terms, output_dict)


_ELSEWHERE = {
    "losses_mix": [
        "M2MixLoss", "M3MixLoss", "lmix_loss", "m2mix_logits", "m2mix_loss", "m3mix_loss", "vlmix_loss",
        "vmix_loss",
    ],
    "losses_gap": ["CUALoss", "CUAXULoss", "cua_loss", "cuaxu_loss"],
    "losses_structure": [
        "LatentStructureLoss", "bridge_target", "brownian_bridge_loss", "feature_separation_loss",
        "geometric_consistency_loss", "independent_uniformity_loss", "inmodal_infonce_loss",
    ],
}
_WHERE = {name: module for module, names in _ELSEWHERE.items() for name in names}


def __getattr__(name: str) -> Any:
    """Resolve the losses defined in the sibling modules lazily (PEP 562), so there is no import cycle."""
    if name in _WHERE:
        return getattr(importlib.import_module(f"{__package__}.{_WHERE[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_WHERE])
