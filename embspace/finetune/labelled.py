"""Zero-shot evaluation during fine-tuning: class prompts through the current text tower, every epoch.

With the evaluation pairs' class labels (N_eval,) and the raw text features of one prompt per class (C, D_text),
each epoch's report holds zero-shot top-1/top-5 accuracy and ECE (:mod:`embspace.families.zeroshot`) of the image
embeddings against ``normalise(text_tower(prompts))``, at the model's own logit scale of that epoch (1/τ, recorded
in ``settings["labels"]["logit_scale"]``); the before/after comparison bootstraps them with the prompts of the first
and of the last epoch.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from embspace.errors import InputError
from embspace.kernels.dense import normalize
from embspace.labels import LabelArray, RowShape, check_label_inputs


def check_eval_labels(labels: Any, image: str, n: int, dim: int) -> None:
    """Refuse labels that do not fit the evaluation pairs before anything is trained or written."""
    if labels is not None:
        check_label_inputs(image_labels(labels, image), None, 1.0, {image: RowShape(n, dim)})


def prompt_features(prompts: Any, text_dim: int) -> torch.Tensor:
    """The raw prompt features as a float32 (C, D_text) tensor, checked against the text tower's input."""
    table = torch.as_tensor(np.asarray(prompts, dtype=np.float32))
    if table.ndim != 2 or table.shape[1] != text_dim:
        raise InputError("prompts", f"expected (classes, {text_dim}) raw text features (the text tower's input), "
                                    f"got shape {tuple(table.shape)}")
    return table


@torch.no_grad()
def class_prompts(model: torch.nn.Module, prompts: torch.Tensor, device: torch.device) -> np.ndarray:
    """(C, d) unit rows: the prompts through the model's current text tower."""
    model.eval()
    return normalize(model.text(prompts.to(device)).float()).cpu().numpy()


def image_labels(labels: Any, image: str) -> dict[str, Any]:
    """``{image: labels}`` (a :class:`~embspace.labels.LabelArray` keeps its source for messages)."""
    return {image: labels if isinstance(labels, LabelArray) else np.asarray(labels)}


def label_options(model: torch.nn.Module, labels: Any, prompts: torch.Tensor | None, device: torch.device,
                  image: str = "image") -> dict[str, Any]:
    """``measure``'s labels=, prompts= and logit_scale= for the model now (nothing without labels)."""
    if labels is None or prompts is None:
        return {}
    return {"labels": image_labels(labels, image), "prompts": class_prompts(model, prompts, device),
            "logit_scale": float(model.scale().detach())}


def with_zeroshot(metrics: str) -> str:
    """The per-epoch families plus zero-shot (``all`` already has it when labels are given)."""
    names = [m.strip() for m in metrics.split(",") if m.strip()]
    return metrics if names == ["all"] or "zeroshot" in names else ",".join([*names, "zeroshot"])
