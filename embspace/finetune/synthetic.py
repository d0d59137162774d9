"""Xue et al.'s comparison on generated data: contrastive towers (CLIP's loss and its relatives) against a
supervised classifier, read with the diagnostics of known directions.

Xue et al. (ICLR 2024, arXiv 2310.04971) claim that on their data model (:mod:`embspace.data.synthetic`)
multimodal contrastive learning (MMCL) keeps the core features' within-class variance (*intra-class contrasting*),
so the over-represented spurious features do not overshadow them, and its zero-shot classifier stays accurate under
the shift, where supervised learning (SL) with cross-entropy — which needs only what separates the classes in
training, and the spurious feature does — loses accuracy.

:func:`fit` trains one method on one training split:

* ``"sl"``: an image tower (the same :class:`~embspace.finetune.heads.Projection`) and a linear classifier on its
  L2-normalised output, trained with cross-entropy at the same logit scale, optimiser and steps as the contrastive
  runs; its "zero-shot" classes are the classifier's weight rows (the prototypes it scores images against);
* ``"clip"``, ``"m2mix"``, ``"m3mix"``, ``"cua"``, ``"cuaxu"``, ``"latent"``: the two towers trained by
  :class:`~embspace.finetune.train.Trainer` with that objective (:mod:`embspace.finetune.objectives`); the classes
  are the text tower's embeddings of the class prompts.

:func:`evaluate` measures, on held-out splits: zero-shot accuracy in distribution and under the shift
(:func:`~embspace.finetune.zeroshot.zero_shot_accuracy`), the share of the image embeddings' variance — overall and
within class — along the core and the spurious directions (:func:`embspace.metrics.directions.subspace_variance`,
the directions estimated by :func:`~embspace.metrics.directions.latent_directions` on the in-distribution split),
and for two towers the share of the gap Δ in each subspace and :func:`spurious_core_coupling`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from embspace.data.synthetic import SyntheticData
from embspace.finetune.config import LOSSES, FitConfig
from embspace.finetune.heads import Projection, build_model
from embspace.finetune.train import Trainer, train
from embspace.finetune.zeroshot import zero_shot_accuracy
from embspace.metrics.directions import gap_share, latent_directions, subspace_variance

__all__ = ["METHODS", "Fitted", "evaluate", "fit"]

METHODS = ("sl", *LOSSES)


@dataclass
class Fitted:
    """A trained method: its image tower, its text tower (None for SL) and its class embeddings function."""

    method: str
    image: nn.Module
    text: nn.Module | None
    classifier: torch.Tensor | None = None  # (K, d) SL's weight rows

    @torch.no_grad()
    def embed_image(self, features: np.ndarray) -> np.ndarray:
        return self.image(torch.as_tensor(features, dtype=torch.float32)).double().numpy()

    @torch.no_grad()
    def embed_text(self, features: np.ndarray) -> np.ndarray:
        assert self.text is not None, "supervised learning has no text tower"
        return self.text(torch.as_tensor(features, dtype=torch.float32)).double().numpy()

    def classes(self, data: SyntheticData) -> np.ndarray:
        """(K, d) the class embeddings zero-shot scores images against."""
        if self.classifier is not None:
            return self.classifier.double().numpy()
        return self.embed_text(data.class_prompts)


def fit(method: str, data: SyntheticData, config: FitConfig) -> Fitted:
    """Train ``method`` (one of :data:`METHODS`) on ``data`` with ``config`` (its ``loss`` is replaced)."""
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; choose one of {', '.join(METHODS)}")
    image, text = torch.from_numpy(data.image), torch.from_numpy(data.text)
    if method == "sl":
        return _fit_supervised(data, config.replace(loss="clip"), image)
    config = config.replace(loss=method)
    model = build_model(image.shape[1], text.shape[1], config)
    train(Trainer(model, config, image, text), progress=False)
    model.eval()
    return Fitted(method, model.image, model.text)


def _fit_supervised(data: SyntheticData, config: FitConfig, image: torch.Tensor) -> Fitted:
    """Cross-entropy on scale·⟨ẑ_i, ŵ_c⟩: the image tower and the class weights, normalised like CLIP's logits."""
    dim = config.dim or 256
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        tower = Projection(image.shape[1], dim, config.head, config.hidden)
        weights = nn.Parameter(torch.randn(data.model.classes, dim) / dim**0.5)  # (K, d)
    labels = torch.from_numpy(data.labels)
    optimizer = torch.optim.AdamW([{"params": [*tower.parameters(), weights], "weight_decay": config.weight_decay}],
                                  lr=config.lr)
    shuffle = torch.Generator().manual_seed(config.seed)
    steps = max(1, len(labels) // config.batch_size)
    scale = config.init_logit_scale
    for _ in range(config.epochs):
        for rows in torch.tensor_split(torch.randperm(len(labels), generator=shuffle), steps):
            z = nn.functional.normalize(tower(image[rows]), dim=1)  # (B, d)
            logits = scale * z @ nn.functional.normalize(weights, dim=1).T  # (B, K)
            loss = nn.functional.cross_entropy(logits, labels[rows])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
    tower.eval()
    return Fitted("sl", tower, None, classifier=weights.detach().clone())


def evaluate(fitted: Fitted, test: SyntheticData, shift: SyntheticData) -> dict[str, Any]:
    """The diagnostics of one trained method on the in-distribution ``test`` split and the ``shift`` split."""
    z = fitted.embed_image(test.image)  # (N, d)
    directions = latent_directions(z, test.image_latents, test.model.blocks())
    out: dict[str, Any] = {
        "accuracy_id": zero_shot_accuracy(z, fitted.classes(test), test.labels),
        "accuracy_shift": zero_shot_accuracy(fitted.embed_image(shift.image), fitted.classes(shift), shift.labels),
    }
    for block in ("core", "spurious"):
        found = subspace_variance(z, directions[block], test.labels)
        out[f"{block}_share"] = found["share"]
        out[f"{block}_within_share"] = found["within_share"]
    if fitted.text is not None:
        y = fitted.embed_text(test.text)
        for block in ("core", "spurious", "detail"):
            out[f"gap_{block}_share"] = gap_share(z, y, directions[block])
        out["spurious_core_coupling"] = spurious_core_coupling(fitted, test)
    return out


def spurious_core_coupling(fitted: Fitted, data: SyntheticData) -> float:
    """How an image's spurious attribute c scores against the prompt of class c, relative to its core feature c.

    With M_ab[j, c] = f(Dᴵ_a e_j) · g(Dᵀ_core e_c) — the similarity that image latent coordinate j of block a
    (core or spurious) gives text core coordinate c — and contrast(M) = mean_c M[c, c] − mean_{j≠c} M[j, c] (a
    part the same for every class cannot change an argmax), the coupling is contrast(M_spurious) /
    contrast(M_core): positive, the spurious attribute votes for its class; negative, against it. Exact for linear
    towers without bias (f(Dᴵ e_j) = W·Dᴵ e_j).
    """
    text_core = fitted.embed_text(data.directions["text"]["core"])  # (K, d): g(Dᵀ e_c)
    core = fitted.embed_image(data.directions["image"]["core"]) @ text_core.T  # (K, K) M_core
    spurious = fitted.embed_image(data.directions["image"]["spurious"]) @ text_core.T  # (K, K) M_spurious
    core_contrast, spurious_contrast = _contrast(core), _contrast(spurious)
    return float(spurious_contrast / core_contrast) if core_contrast != 0 else 0.0


def _contrast(m: np.ndarray) -> float:
    """mean of the diagonal − mean of the off-diagonal entries of a square matrix."""
    k = len(m)
    diagonal = np.trace(m) / k
    return float(diagonal - (m.sum() - np.trace(m)) / (k * k - k))
