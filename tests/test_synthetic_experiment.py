"""The comparison on generated data: the coupling of known linear towers is its closed form; SL and CLIP train and
report every diagnostic on a small draw."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from embspace.data.synthetic import XueModel, generate
from embspace.finetune.config import FitConfig
from embspace.finetune.synthetic import Fitted, evaluate, fit, spurious_core_coupling


def linear(weight: np.ndarray) -> nn.Linear:
    layer = nn.Linear(weight.shape[1], weight.shape[0], bias=False)
    with torch.no_grad():
        layer.weight.copy_(torch.from_numpy(weight))
    return layer


def test_coupling_of_known_linear_towers_is_the_closed_form():
    model = XueModel(classes=3, details=2, image_dim=12, text_dim=10)
    data = generate(model, 30, seed=0)
    k, K = model.latent_dim, model.classes
    d_image = np.vstack([data.directions["image"][b] for b in ("core", "spurious", "detail")])  # (k, 12)
    d_text = np.vstack([data.directions["text"][b] for b in ("core", "spurious", "detail")])  # (k, 10)
    a = np.eye(k)
    a[np.arange(K), K + np.arange(K)] = -0.4  # spurious coordinate c also writes −0.4 into core coordinate c
    a[np.arange(K), np.arange(K)] = 2.0  # core–core similarity 2
    a[:K, :2 * K] += 0.1  # a part common to every class (every core and spurious coordinate → every core one)
    towers = Fitted("clip", linear((a @ d_image).astype(np.float32)), linear(d_text.astype(np.float32)))
    # contrasts: spurious (−0.4 + 0.1) − 0.1 = −0.4, core (2 + 0.1) − 0.1 = 2; the common part cancels
    assert spurious_core_coupling(towers, data) == pytest.approx(-0.2, abs=1e-5)


@pytest.fixture(scope="module")
def splits():
    model = XueModel(classes=3, details=2, image_dim=16, text_dim=16)
    return (generate(model, 600, seed=1, split="train"), generate(model, 300, seed=1, split="test"),
            generate(model, 300, seed=1, split="shift"))


@pytest.mark.parametrize("method", ["sl", "clip"])
def test_methods_train_and_report_every_diagnostic(splits, method):
    train, test, shift = splits
    found = evaluate(fit(method, train, FitConfig(dim=8, epochs=3, batch_size=128, lr=3e-3, eval_metrics="gap")),
                     test, shift)
    keys = {"accuracy_id", "accuracy_shift", "core_share", "core_within_share", "spurious_share",
            "spurious_within_share"}
    paired = {"gap_core_share", "gap_spurious_share", "gap_detail_share", "spurious_core_coupling"}
    assert set(found) == (keys | paired if method == "clip" else keys)
    assert all(0.0 <= found[key] <= 1.0 for key in keys)


def test_unknown_method_is_refused(splits):
    with pytest.raises(ValueError, match="unknown method"):
        fit("svm", splits[0], FitConfig())
