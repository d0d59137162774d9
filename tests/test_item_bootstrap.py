"""compare's bootstrap with many-to-many pairs resamples items (an image with all its captions), not rows."""

from __future__ import annotations

import numpy as np
import pytest

import embspace
from embspace.item_bootstrap import BLOCK, item_bootstrap


def unit(a: np.ndarray) -> np.ndarray:
    return a / np.linalg.norm(a, axis=1, keepdims=True)


def dataset(rng: np.random.Generator, noise: float, copies: int = 4, images: int = 60):
    """Each image has ``copies`` identical captions (their hits are perfectly correlated)."""
    image = unit(rng.normal(size=(images, 10)))
    owner = np.repeat(np.arange(images), copies)
    return image, captions(image, rng, noise, copies), owner


def captions(image: np.ndarray, rng: np.random.Generator, noise: float, copies: int) -> np.ndarray:
    return unit(np.repeat(image + noise * rng.normal(size=image.shape), copies, axis=0))


def hits_text_to_image(image: np.ndarray, text: np.ndarray, owner: np.ndarray, k: int) -> np.ndarray:
    s = text @ image.T
    partner = s[np.arange(len(text)), owner]
    return ((s > partner[:, None]).sum(1) < k).astype(float)


def test_resamples_are_items_with_all_their_captions(one_thread):
    rng = np.random.default_rng(0)
    image, text, owner = dataset(rng, 0.6)
    text_after = captions(image, np.random.default_rng(1), 0.9, 4)
    result = item_bootstrap({"image": image, "text": text}, {"image": image, "text": text_after}, owner,
                            resamples=60, seed=3, recall_ks=(1,), interval="percentile")
    # the reference: the same draws (K item indices per resample, BLOCK resamples per block), every caption of a
    # drawn item taken along, hits of the queries against all candidates, brute force in float64
    k_items = len(image)
    draws = np.random.default_rng(3).integers(0, k_items, size=60 * k_items).reshape(60, k_items)
    assert BLOCK >= 60
    before = hits_text_to_image(image, text, owner, 1)
    after = hits_text_to_image(image, text_after, owner, 1)
    changes = []
    for drawn in draws:
        rows = np.concatenate([np.flatnonzero(owner == item) for item in drawn])
        changes.append(after[rows].mean() - before[rows].mean())
    lo, hi = np.quantile(changes, [0.025, 0.975])
    test = result.metrics["recall@1.text->image"]
    assert test.ci == pytest.approx((lo, hi), abs=1e-12)
    assert test.change == pytest.approx(after.mean() - before.mean(), abs=1e-12)
    assert result.pairs == k_items


def test_item_intervals_are_wider_than_row_intervals_for_correlated_captions(one_thread):
    rng = np.random.default_rng(4)
    image, text, owner = dataset(rng, 0.7, copies=5)
    text_after = captions(image, np.random.default_rng(5), 0.7, 5)
    result = item_bootstrap({"image": image, "text": text}, {"image": image, "text": text_after}, owner,
                            resamples=400, seed=0, recall_ks=(1,), interval="percentile")
    before = hits_text_to_image(image, text, owner, 1)
    after = hits_text_to_image(image, text_after, owner, 1)
    draws = np.random.default_rng(9).integers(0, len(owner), size=(400, len(owner)))  # rows, as if independent
    by_rows = np.quantile((after - before)[draws].mean(1), [0.025, 0.975])
    lo, hi = result.metrics["recall@1.text->image"].ci
    assert hi - lo > 1.6 * (by_rows[1] - by_rows[0])  # five identical captions: ≈ √5 wider


def test_compare_flags_a_retrieval_loss_beyond_noise(one_thread):
    rng = np.random.default_rng(2)
    image, text, owner = dataset(rng, 0.3, copies=3, images=80)
    worse = captions(image, np.random.default_rng(3), 2.0, 3)
    options = dict(pair_ids=owner, metrics="alignment,gap,retrieval")
    old = embspace.measure(image=image, text=text, **options)
    new = embspace.measure(image=image, text=worse, **options)
    comparison = embspace.compare(old, new, data_before={"image": image, "text": text},
                                  data_after={"image": image, "text": worse}, pair_ids=owner, resamples=200)
    assert "recall@1.text->image" in comparison.retrieval_losses
    assert any(w.startswith("RETRIEVAL LOSS") for w in comparison.warnings)
    tested = comparison.significance.metrics
    assert tested["mrr.image->text"].significant and tested["alignment"].significant
    assert tested["recall@1.text->image"].before == old["recall@1.text->image"]
    same = embspace.compare(old, old, data_before={"image": image, "text": text},
                            data_after={"image": image, "text": text}, pair_ids=owner, resamples=50)
    assert not any(m.significant for m in same.significance.metrics.values())
