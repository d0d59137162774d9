"""Drop the gap-closing losses into a whole-model CLIP training step (open_clip, Hugging Face ``transformers``).

Every loss module (:class:`ClipLoss`, :class:`M2MixLoss`, :class:`M3MixLoss`, :class:`CUALoss`, :class:`CUAXULoss`,
:class:`LatentStructureLoss`) has open_clip's signature
``forward(image_features, text_features, logit_scale=None, output_dict=False)``, where ``logit_scale`` is the
multiplier 1/τ (already exponentiated), and with ``output_dict=True`` returns only the weighted terms under
open_clip-style keys (``contrastive_loss``, ``m2mix_loss``, …), which sum to the loss.

**open_clip** (``open_clip_train.train.train_one_epoch`` calls ``losses = loss(**model_out, output_dict=True)``,
``total_loss = sum(losses.values())``, with ``model_out = {"image_features", "text_features", "logit_scale"}``)::

    from embspace.finetune import M2MixLoss
    loss = M2MixLoss(seed=0)          # instead of open_clip.create_loss(args) / ClipLoss()
    # per epoch, for the optional 1/(epoch+1) decay (M2MixLoss(decay=True)):  loss.epoch = epoch

SigLIP models (``model_out`` with ``logit_bias``) train a sigmoid loss: these InfoNCE-based losses do not apply
and :func:`open_clip_step` refuses them.

**Hugging Face** ``CLIPModel``: ``outputs.image_embeds`` / ``outputs.text_embeds`` are the projected features and
``model.logit_scale`` is log(1/τ)::

    outputs = model(input_ids=ids, attention_mask=mask, pixel_values=pixels)
    total = loss(outputs.image_embeds, outputs.text_embeds, model.logit_scale.exp())

(:func:`hf_clip_loss` does exactly that; :class:`HuggingFaceClip` wraps the model so that :func:`open_clip_step`
trains it). The losses normalise the features themselves, so normalised or raw
projections both work.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

MAX_LOG_SCALE = math.log(100)


def _model_outputs(out: Any) -> dict[str, torch.Tensor]:
    """open_clip's forward output as a dict (it returns a dict with ``output_dict=True``, else a tuple)."""
    if isinstance(out, dict):
        return dict(out)
    if isinstance(out, tuple | list) and len(out) == 3:
        return {"image_features": out[0], "text_features": out[1], "logit_scale": out[2]}
    raise TypeError(f"expected open_clip's (image_features, text_features, logit_scale) output, got {type(out)}")


def open_clip_step(
    model: nn.Module,
    loss: nn.Module,
    images: torch.Tensor,
    texts: torch.Tensor,
    optimizer: torch.optim.Optimizer,
) -> dict[str, float]:
    """One optimiser step as open_clip's ``train_one_epoch`` takes it (``accum_freq = 1``, no autocast).

    ``losses = loss(**model_out, output_dict=True)``; ``total = sum(losses.values())``; backward; step; then the
    learned log-scale is clamped to [0, log 100] as open_clip does. Returns each term and ``"loss"`` as floats.
    """
    model.train()
    model_out = _model_outputs(model(images, texts))
    if "logit_bias" in model_out:
        raise ValueError("this model has a logit_bias (SigLIP): the InfoNCE-based losses do not apply to it")
    optimizer.zero_grad()
    losses = loss(**model_out, output_dict=True)
    total = sum(losses.values())
    total.backward()
    optimizer.step()
    with torch.no_grad():
        scale = getattr(model, "logit_scale", None)
        if isinstance(scale, torch.Tensor):
            scale.clamp_(0, MAX_LOG_SCALE)
    return {**{k: float(v.detach()) for k, v in losses.items()}, "loss": float(total.detach())}


class HuggingFaceClip(nn.Module):
    """A Hugging Face ``CLIPModel`` seen through open_clip's interface, so :func:`open_clip_step` trains it.

    ``forward(images, texts)`` takes pixel values (B, 3, H, W) and token ids (B, L) (and an optional attention
    mask) and returns ``{"image_features", "text_features", "logit_scale"}`` with the projected embeddings and
    1/τ = exp(``model.logit_scale``); ``logit_scale`` is the wrapped model's learned log-scale, which the step clamps.
    """

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    @property
    def logit_scale(self) -> torch.Tensor:
        return self.model.logit_scale

    def forward(self, images: torch.Tensor, texts: torch.Tensor,
                attention_mask: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        outputs = self.model(input_ids=texts, pixel_values=images, attention_mask=attention_mask)
        return {"image_features": outputs.image_embeds, "text_features": outputs.text_embeds,
                "logit_scale": self.model.logit_scale.exp()}


def hf_clip_loss(loss: nn.Module, outputs: Any, model: nn.Module, output_dict: bool = False) -> Any:
    """The loss of a Hugging Face ``CLIPModel`` forward: features ``outputs.image_embeds`` / ``text_embeds`` and
    1/τ = ``model.logit_scale.exp()``."""
    return loss(outputs.image_embeds, outputs.text_embeds, model.logit_scale.exp(), output_dict=output_dict)
