"""The evaluation set as a model sees it: ``embed(model)`` functions for :class:`~embspace.callbacks.EmbeddingMonitor`.

:func:`clip_embedder` runs a CLIP-like model on fixed images and token ids in batches, without gradients and in
eval mode (restored afterwards), and returns the projected embeddings of both modalities.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import torch

__all__ = ["clip_embedder", "features_of"]


def features_of(output: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """(image, text) embeddings of one CLIP forward: a Hugging Face ``CLIPOutput`` (``image_embeds``,
    ``text_embeds``), open_clip's dict (``image_features``, ``text_features``) or its tuple (image, text, scale)."""
    if hasattr(output, "image_embeds"):
        return output.image_embeds, output.text_embeds
    if isinstance(output, Mapping):
        return output["image_features"], output["text_features"]
    return output[0], output[1]


def clip_embedder(images: torch.Tensor, texts: torch.Tensor, *, attention_mask: torch.Tensor | None = None,
                  batch_size: int = 256, names: tuple[str, str] = ("image", "text")
                  ) -> Callable[[Any], dict[str, torch.Tensor]]:
    """``embed(model)`` for a CLIP model: the embeddings of ``images`` (B, 3, H, W) and ``texts`` (B, L) row by row.

    A Hugging Face ``CLIPModel`` is called as ``model(pixel_values=…, input_ids=…, attention_mask=…)``, anything else
    (open_clip's ``CLIP``, :class:`embspace.finetune.integration.HuggingFaceClip`) as ``model(images, texts)``. The
    model runs on its own device and dtype.
    """
    if len(images) != len(texts):
        from embspace.errors import InputError

        raise InputError("clip_embedder", f"{len(images)} images but {len(texts)} texts; the rows are pairs")

    def embed(model: Any) -> dict[str, torch.Tensor]:
        parameter = next(model.parameters(), None)
        device = parameter.device if parameter is not None else torch.device("cpu")
        dtype = parameter.dtype if parameter is not None and parameter.is_floating_point() else torch.float32
        hugging_face = hasattr(model, "get_image_features") and hasattr(model, "config")
        training = model.training
        parts: list[tuple[torch.Tensor, torch.Tensor]] = []
        model.eval()
        try:
            with torch.no_grad():
                for start in range(0, len(images), batch_size):
                    image = images[start:start + batch_size].to(device, dtype)
                    text = texts[start:start + batch_size].to(device)
                    if hugging_face:
                        mask = attention_mask[start:start + batch_size].to(device) if attention_mask is not None \
                            else None
                        output = model(pixel_values=image, input_ids=text, attention_mask=mask)
                    else:
                        output = model(image, text)
                    a, b = features_of(output)
                    parts.append((a.float().cpu(), b.float().cpu()))
        finally:
            model.train(training)
        return {names[0]: torch.cat([a for a, _ in parts]), names[1]: torch.cat([b for _, b in parts])}

    return embed
