"""Calibration of zero-shot probabilities: expected calibration error and temperature scaling.

Expected calibration error, top-label, L1 (Naeini et al. 2015; Guo et al. 2017), exactly as torchmetrics'
``MulticlassCalibrationError(n_bins=15, norm="l1")`` computes it:

.. math::

    p_i = \\max_c \\operatorname{softmax}(\\ell_i)_c, \\quad a_i = [\\arg\\max_c \\ell_{ic} = y_i], \\quad
    \\text{ECE} = \\sum_b \\frac{n_b}{N} \\left| \\bar a_b - \\bar p_b \\right|

over the 15 equal-width bins of [0, 1] with edges e_0 = 0 … e_15 = 1; a confidence p falls in bin b when
e_b ≤ p < e_{b+1}, and p = 1 exactly in a bin of its own (``torch.bucketize(p, edges, right=True) − 1``, as
torchmetrics); empty bins add nothing. Logits ℓ = logit_scale · cosine / T.

Temperature scaling (Guo et al. 2017, "On calibration of modern neural networks"): one T > 0 minimising the mean
negative log-likelihood of the true class on a held-out *fitting* split (log T bounded to [−7, 7], scipy's bounded
Brent search); its ECE is then measured on the rest (the *evaluation* split), beside the ECE of the given scale on
the same rows. The split is a seeded half: ``numpy.random.default_rng(seed).permutation(N)``, the first ⌊N/2⌋ rows
fit, the others evaluate.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

BINS = 15
LOG_T_BOUND = 7.0


@dataclass
class Reliability:
    """Per-bin counts, mean confidence and accuracy (bins = BINS + 1: the last holds p = 1 exactly)."""

    edges: list[float]
    count: list[int]
    confidence: list[float]
    accuracy: list[float]
    ece: float

    def to_dict(self) -> dict:
        return {"edges": self.edges, "count": self.count, "confidence": self.confidence, "accuracy": self.accuracy,
                "ece": self.ece}


def top_label(logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(confidence (N,), correct (N,) float64) of the softmax's top label."""
    probs = torch.softmax(logits.to(torch.float64), dim=1)
    confidence, predicted = probs.max(1)
    return confidence, (predicted == labels).double()


def reliability(confidence: torch.Tensor, correct: torch.Tensor, bins: int = BINS) -> Reliability:
    """The reliability table and the L1 ECE of top-label confidences and their correctness."""
    edges = torch.linspace(0, 1, bins + 1, dtype=torch.float64)
    index = torch.bucketize(confidence.double(), edges, right=True) - 1  # (N,) in [0, bins]; bins: p = 1
    count = torch.zeros(bins + 1, dtype=torch.float64).scatter_add_(0, index, torch.ones_like(confidence.double()))
    conf = torch.zeros(bins + 1, dtype=torch.float64).scatter_add_(0, index, confidence.double())
    acc = torch.zeros(bins + 1, dtype=torch.float64).scatter_add_(0, index, correct.double())
    filled = count > 0
    mean_conf = torch.where(filled, conf / count.clamp(min=1), torch.zeros_like(conf))
    mean_acc = torch.where(filled, acc / count.clamp(min=1), torch.zeros_like(acc))
    ece = float(((mean_acc - mean_conf).abs() * count).sum() / count.sum())
    return Reliability(edges.tolist(), count.long().tolist(), mean_conf.tolist(), mean_acc.tolist(), ece)


def expected_calibration_error(logits: torch.Tensor, labels: torch.Tensor, bins: int = BINS) -> float:
    """Top-label L1 ECE of softmax(logits) against integer ``labels`` (torchmetrics' definition)."""
    return reliability(*top_label(logits, labels), bins).ece


def nll(logits: torch.Tensor, labels: torch.Tensor) -> float:
    """Mean negative log-likelihood of the true class."""
    return float(-torch.log_softmax(logits.to(torch.float64), 1).gather(1, labels[:, None].long()).mean())


def fit_temperature(logits: torch.Tensor, labels: torch.Tensor) -> float:
    """T > 0 minimising nll(logits / T) (bounded Brent search over log T in [−7, 7])."""
    from scipy.optimize import minimize_scalar

    z, y = logits.to(torch.float64), labels.long()
    found = minimize_scalar(lambda log_t: nll(z / np.exp(log_t), y), bounds=(-LOG_T_BOUND, LOG_T_BOUND),
                            method="bounded", options={"xatol": 1e-6})
    return float(np.exp(found.x))


def fit_split(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(fitting rows, evaluation rows): a seeded half, sorted."""
    order = np.random.default_rng(seed).permutation(n)
    half = n // 2
    return np.sort(order[:half]), np.sort(order[half:])
