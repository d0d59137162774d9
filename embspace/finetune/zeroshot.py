"""Zero-shot classification: each image takes the class whose prompt embedding is most similar (CLIP's protocol).

.. math::

    \\hat c_i = \\arg\\max_c \\; \\hat x_i \\cdot \\hat p_c, \\qquad
    \\text{accuracy} = \\frac{1}{N} \\sum_i [\\hat c_i = c_i]

x̂_i is image i's embedding and p̂_c the embedding of class c's prompt (e.g. "an emoji of food" through the text
tower), both L2-normalised, so the score is the cosine similarity (Radford et al. 2021, "Learning transferable visual
models from natural language supervision", §3.1.2). Ties go to the lower class index (``argmax``'s rule).

Shapes: images (N, D), classes (C, D), labels (N,) integers in [0, C). Memory is O(chunk·C): the N×C score matrix
is never built whole. Scores are computed in float64 whatever the input dtype; inputs are never modified.

>>> import numpy as np
>>> classes = np.eye(3)
>>> images = np.array([[0.9, 0.1, 0.0], [0.0, 0.2, 1.0], [0.5, 0.4, 0.0]])
>>> zero_shot_predict(images, classes).tolist()
[0, 2, 0]
>>> zero_shot_accuracy(images, classes, [0, 2, 1])
0.6666666666666666
"""

from __future__ import annotations

import numpy as np
import torch

__all__ = ["zero_shot_accuracy", "zero_shot_predict"]

ArrayLike = np.ndarray | torch.Tensor
CHUNK_ROWS = 4096


def _matrix(a: ArrayLike, name: str) -> torch.Tensor:
    t = torch.as_tensor(np.asarray(a) if not isinstance(a, torch.Tensor) else a.detach())
    if t.ndim != 2 or t.shape[0] < 1 or t.shape[1] < 1:
        raise ValueError(f"{name}: expected a non-empty (rows, dim) matrix, got shape {tuple(t.shape)}")
    if not t.is_floating_point():
        raise ValueError(f"{name}: expected floating-point values, got {t.dtype}")
    t = t.to(device="cpu", dtype=torch.float64)
    if not torch.isfinite(t).all():
        raise ValueError(f"{name}: contains NaN or Inf (first at row {int((~torch.isfinite(t)).any(1).nonzero()[0])})")
    norms = t.norm(dim=1)
    if (norms == 0).any():
        raise ValueError(f"{name}: row {int((norms == 0).nonzero()[0])} is all zeros (no direction to compare)")
    return t / norms[:, None]


def zero_shot_predict(images: ArrayLike, classes: ArrayLike, *, chunk_rows: int = CHUNK_ROWS) -> np.ndarray:
    """The predicted class of every image: argmax_c cos(x_i, p_c). Returns (N,) int64.

    Args:
        images: (N, D) image embeddings (normalised here).
        classes: (C, D) class-prompt embeddings in the same space (normalised here).
        chunk_rows: images scored at a time.
    """
    return _predict(*_pair(images, classes), chunk_rows)


def _pair(images: ArrayLike, classes: ArrayLike) -> tuple[torch.Tensor, torch.Tensor]:
    x, p = _matrix(images, "images"), _matrix(classes, "classes")  # (N, D), (C, D) float64 unit rows
    if x.shape[1] != p.shape[1]:
        raise ValueError(f"images have dimension {x.shape[1]} but classes have {p.shape[1]}")
    return x, p


def _predict(x: torch.Tensor, p: torch.Tensor, chunk_rows: int) -> np.ndarray:
    if chunk_rows < 1:
        raise ValueError(f"chunk_rows must be ≥ 1, got {chunk_rows}")
    predictions = [(x[start : start + chunk_rows] @ p.T).argmax(1)  # (chunk, C) → (chunk,)
                   for start in range(0, x.shape[0], chunk_rows)]
    return torch.cat(predictions).numpy().astype(np.int64)


def zero_shot_accuracy(images: ArrayLike, classes: ArrayLike, labels: ArrayLike | list[int], *,
                       chunk_rows: int = CHUNK_ROWS) -> float:
    """Fraction of images whose most similar class prompt (cosine) is their own class.

    Args:
        images: (N, D) image embeddings; classes: (C, D) class-prompt embeddings; labels: (N,) true class indices
            into ``classes``.
    """
    x, p = _pair(images, classes)
    truth = np.asarray(labels.detach().cpu() if isinstance(labels, torch.Tensor) else labels)
    n_images, n_classes = x.shape[0], p.shape[0]
    if truth.ndim != 1 or len(truth) != n_images:
        raise ValueError(f"labels: expected {n_images} labels (one per image), got shape {truth.shape}")
    if not np.issubdtype(truth.dtype, np.integer):
        raise ValueError(f"labels: expected integer class indices, got {truth.dtype}")
    bad = np.flatnonzero((truth < 0) | (truth >= n_classes))
    if bad.size:
        raise ValueError(f"labels: row {bad[0]} has class {truth[bad[0]]}, outside [0, {n_classes})")
    return float(np.mean(_predict(x, p, chunk_rows) == truth))
