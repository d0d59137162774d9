"""Zero-shot classification scores: every row against one prompt embedding per class (Radford et al. 2021, §3.1.2).

.. math::

    s_{ic} = \\hat x_i \\cdot \\hat p_c, \\qquad
    \\text{rank}_i = \\#\\{c : s_{ic} > s_{i,y_i}\\} + \\#\\{c < y_i : s_{ic} = s_{i,y_i}\\}, \\qquad
    \\text{top-}k = \\frac{1}{N}\\sum_i [\\text{rank}_i < k]

x̂_i is row i and p̂_c the embedding of class c's prompt ("a photo of a {class}" through the text tower), both
L2-normalised, so s is the cosine similarity. A tie goes to the lower class index — ``argmax``'s rule, the rule of
:func:`embspace.finetune.zeroshot.zero_shot_predict` — so top-1 is exactly the accuracy of the argmax prediction.
The logits of the softmax are ``logit_scale · s`` (CLIP's learned scale, ≈ 100 for the released models).

Shapes: rows (N, D), prompts (C, D), labels (N,) in [0, C). Memory O(N·C) for the scores (kept for calibration),
computed ``chunk_rows`` rows at a time, float64.

>>> import torch
>>> s = class_scores(torch.eye(3, dtype=torch.float64), torch.eye(3, dtype=torch.float64))
>>> true_class_ranks(s, torch.tensor([0, 2, 1])).tolist()
[0, 2, 2]
"""

from __future__ import annotations

import numpy as np
import torch

TOP_KS = (1, 5)
CHUNK_ROWS = 4096
DEFAULT_LOGIT_SCALE = 100.0


def unit_rows(a: torch.Tensor) -> torch.Tensor:
    """Rows divided by their L2 norm, float64."""
    a = a.to(torch.float64)
    return a / a.norm(dim=1, keepdim=True)


def class_scores(rows: torch.Tensor, prompts: torch.Tensor, chunk_rows: int = CHUNK_ROWS) -> torch.Tensor:
    """(N, C) float64 cosines s_ic = x̂_i · p̂_c, ``chunk_rows`` rows at a time."""
    p = unit_rows(prompts)  # (C, D)
    return torch.cat([unit_rows(rows[start:start + chunk_rows]) @ p.T  # (chunk, C)
                      for start in range(0, rows.shape[0], chunk_rows)])


def true_class_ranks(scores: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """(N,) rank of each row's true class among the C classes (0 = predicted); ties to the lower class index."""
    truth = scores.gather(1, labels[:, None].long())  # (N, 1)
    lower = torch.arange(scores.shape[1])[None, :] < labels[:, None]  # (N, C): classes before the true one
    return ((scores > truth) | ((scores == truth) & lower)).sum(1)


def top_k_accuracy(ranks: torch.Tensor | np.ndarray, k: int) -> float:
    """Share of rows whose true class is among the k best-scored (rank < k)."""
    return float((torch.as_tensor(ranks) < k).double().mean())


def predictions(scores: torch.Tensor) -> torch.Tensor:
    """(N,) argmax class (the lower index on a tie)."""
    return scores.argmax(1)
