"""The training objective of a run: a loss module by name, and what each batch feeds it.

=========  =====================================================================================================
name       loss (all add CLIP's symmetric InfoNCE at the towers' learned logit scale)
=========  =====================================================================================================
clip       L_clip only (:class:`~embspace.finetune.ClipLoss`)
m2mix      L_clip + w·(CE_img + CE_txt) on geodesic hard negatives (Oh et al. 2023, :class:`M2MixLoss`)
m3mix      L_clip + m²-mix + V-, L-, VL-mix (Oh et al. 2023, :class:`M3MixLoss`)
cua        L_clip + U_mean + A (Fahim et al. 2024, :class:`CUALoss`)
cuaxu      CUA + U_cross (Fahim et al. 2024, :class:`CUAXULoss`)
latent     L_clip + feature separation + Brownian bridge + geometric consistency (Jiang et al. 2023,
           :class:`LatentStructureLoss`)
=========  =====================================================================================================

On cached features the "augmented image" of the Brownian bridge and the second view of the independent features
are the same towers applied to the features after a seeded feature dropout (p = ``augment_dropout``, rescaled by
1/(1−p)): the stand-in for image augmentation when only the encoder's output is at hand.

Randomness: λ draws come from the loss module's own ``torch.Generator`` and the dropout masks from the
objective's; both states are part of every checkpoint (:meth:`Objective.rng_state`).
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from embspace.finetune.config import LOSSES, FitConfig
from embspace.finetune.heads import TwoTower
from embspace.finetune.losses import ClipLoss
from embspace.finetune.losses_gap import CUALoss, CUAXULoss
from embspace.finetune.losses_mix import M2MixLoss, M3MixLoss
from embspace.finetune.losses_structure import LatentStructureLoss

LOSS_CLASSES: dict[str, type[nn.Module]] = {
    "clip": ClipLoss, "m2mix": M2MixLoss, "m3mix": M3MixLoss, "cua": CUALoss, "cuaxu": CUAXULoss,
    "latent": LatentStructureLoss,
}
_NOT_OPTIONS = {"self", "generator", "seed", "normalized", "logit_scale"}


def loss_options(name: str) -> list[str]:
    """The hyperparameters a loss takes (its constructor's keywords, minus plumbing)."""
    params = inspect.signature(LOSS_CLASSES[name].__init__).parameters
    return [p for p in params if p not in _NOT_OPTIONS and params[p].kind is not inspect.Parameter.VAR_KEYWORD]


def make_loss(name: str, options: Mapping[str, Any] | None = None, *, seed: int = 0) -> nn.Module:
    """The loss module ``name`` with ``options`` (checked against its signature); mixup losses draw λ from a
    generator seeded with ``seed``."""
    if name not in LOSS_CLASSES:
        raise ValueError(f"unknown loss {name!r}; choose one of {', '.join(LOSSES)}")
    options = dict(options or {})
    allowed = loss_options(name)
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        raise ValueError(f"loss {name!r} has no option {', '.join(unknown)}; it takes {', '.join(allowed)}")
    if name in ("m2mix", "m3mix"):
        options["generator"] = torch.Generator().manual_seed(seed)
    return LOSS_CLASSES[name](**options)


class Objective:
    """Turns a batch of cached features into the loss terms of ``config.loss`` for a :class:`TwoTower`."""

    def __init__(self, config: FitConfig) -> None:
        self.config = config
        self.loss = make_loss(config.loss, config.loss_options, seed=config.seed + 1)
        self.augment_generator = torch.Generator().manual_seed(config.seed + 2)

    def terms(self, model: TwoTower, image: torch.Tensor, text: torch.Tensor, epoch: int) -> dict[str, torch.Tensor]:
        """The weighted loss terms (they sum to the loss) for one batch: image (B, D_img), text (B, D_txt)."""
        x, y = model(image, text)  # (B, d) each
        scale = model.scale()
        if isinstance(self.loss, M2MixLoss | M3MixLoss):
            return self.loss(x, y, scale, output_dict=True, epoch=epoch)
        if isinstance(self.loss, LatentStructureLoss):
            return self.loss(x, y, scale, output_dict=True, **self._latent_inputs(model, image, text))
        return self.loss(x, y, scale, output_dict=True)

    def _latent_inputs(self, model: TwoTower, image: torch.Tensor, text: torch.Tensor) -> dict[str, torch.Tensor]:
        image_aug, text_aug = self._dropout(image), self._dropout(text)
        image_head, text_head = model.independent
        return {
            "image_augmented": model.image(image_aug),
            "image_independent": image_head(image),
            "text_independent": text_head(text),
            "image_independent_view": image_head(image_aug),
            "text_independent_view": text_head(text_aug),
        }

    def _dropout(self, features: torch.Tensor) -> torch.Tensor:
        p = self.config.augment_dropout
        if p == 0:
            return features
        keep = torch.rand(features.shape, generator=self.augment_generator) >= p  # (B, D), drawn on the CPU
        return features * keep.to(features.device) / (1 - p)

    # ---- RNG state, for checkpoints -------------------------------------------------------------------------
    def rng_state(self) -> dict[str, torch.Tensor]:
        state = {"augment": self.augment_generator.get_state()}
        generator = getattr(self.loss, "generator", None)
        if generator is not None:
            state["lambda"] = generator.get_state()
        return state

    def set_rng_state(self, state: Mapping[str, torch.Tensor]) -> None:
        self.augment_generator.set_state(state["augment"])
        generator = getattr(self.loss, "generator", None)
        if generator is not None:
            generator.set_state(state["lambda"])
