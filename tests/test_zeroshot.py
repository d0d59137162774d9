"""Zero-shot classification against a float64 numpy brute force, invariances, bad input, and the real sample."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from embspace.finetune.zeroshot import zero_shot_accuracy, zero_shot_predict

PROMPTS = Path(__file__).resolve().parents[1] / "benchmarks" / "finetune_prompts.npz"


def brute_force(images: np.ndarray, classes: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, float]:
    """Cosine of every image with every class in float64, argmax, mean hit rate."""
    x = np.asarray(images, dtype=np.float64)
    p = np.asarray(classes, dtype=np.float64)
    cos = np.empty((len(x), len(p)))
    for i in range(len(x)):
        for c in range(len(p)):
            cos[i, c] = x[i] @ p[c] / (np.linalg.norm(x[i]) * np.linalg.norm(p[c]))
    predicted = cos.argmax(1)
    return predicted, float(np.mean(predicted == labels))


@pytest.mark.parametrize("chunk_rows", [1, 7, 4096])
@pytest.mark.parametrize("dtype", [np.float64, np.float32, np.float16])
def test_matches_brute_force(chunk_rows: int, dtype: type) -> None:
    rng = np.random.default_rng(3)
    classes = rng.normal(size=(9, 16)) * rng.uniform(0.1, 5, size=(9, 1))  # unequal norms: normalising matters
    labels = rng.integers(0, 9, size=150)
    images = classes[labels] / np.linalg.norm(classes[labels], axis=1, keepdims=True) + 0.6 * rng.normal(size=(150, 16))
    images, classes = images.astype(dtype), classes.astype(dtype)
    predicted, accuracy = brute_force(images, classes, labels)
    assert 0.2 < accuracy < 1.0  # neither trivial nor hopeless
    np.testing.assert_array_equal(zero_shot_predict(images, classes, chunk_rows=chunk_rows), predicted)
    assert zero_shot_accuracy(images, classes, labels, chunk_rows=chunk_rows) == pytest.approx(accuracy, abs=1e-15)


def test_cosine_not_dot_product() -> None:
    """A long class vector wins every dot product but not the cosine."""
    classes = np.array([[10.0, 0.0], [0.0, 1.0]])
    images = np.array([[0.1, 1.0], [1.0, 0.1]])
    assert zero_shot_predict(images, classes).tolist() == [1, 0]
    assert (images @ classes.T).argmax(1).tolist() == [0, 0]


def test_invariances_and_torch_input() -> None:
    rng = np.random.default_rng(5)
    images, classes = rng.normal(size=(60, 8)), rng.normal(size=(5, 8))
    labels = rng.integers(0, 5, size=60)
    base = zero_shot_accuracy(images, classes, labels)
    scaled = images * rng.uniform(0.01, 100, size=(60, 1))
    rotation = np.linalg.qr(rng.normal(size=(8, 8)))[0]
    order = rng.permutation(5)  # relabel the classes: class order[k] becomes index k
    relabel = np.argsort(order)[labels]
    assert zero_shot_accuracy(scaled, classes, labels) == base
    assert zero_shot_accuracy(images @ rotation, classes @ rotation, labels) == base
    assert zero_shot_accuracy(images, classes[order], relabel) == base
    assert zero_shot_accuracy(torch.from_numpy(images), torch.from_numpy(classes), torch.from_numpy(labels)) == base


def test_ties_go_to_the_lower_index_and_inputs_untouched() -> None:
    classes = np.array([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    images = np.array([[2.0, 0.0], [0.0, 3.0]])
    kept = images.copy(), classes.copy()
    assert zero_shot_predict(images, classes).tolist() == [0, 2]
    np.testing.assert_array_equal(images, kept[0])
    np.testing.assert_array_equal(classes, kept[1])


@pytest.mark.parametrize(("images", "classes", "labels", "message"), [
    (np.ones((3, 4)), np.ones((2, 5)), [0, 1, 0], "dimension 4 but classes have 5"),
    (np.ones(4), np.ones((2, 4)), [0], "images: expected a non-empty"),
    (np.ones((3, 4)), np.ones((2, 4)), [0, 1], "expected 3 labels"),
    (np.ones((3, 4)), np.ones((2, 4)), [0, 2, 1], "row 1 has class 2, outside [0, 2)"),
    (np.ones((3, 4)), np.ones((2, 4)), [0.0, 1.0, 0.0], "integer class indices"),
    (np.array([[1.0, 0], [np.nan, 1]]), np.ones((2, 2)), [0, 1], "images: contains NaN or Inf (first at row 1)"),
    (np.ones((2, 2)), np.array([[1.0, 1], [0, 0]]), [0, 1], "classes: row 1 is all zeros"),
    (np.ones((2, 2), dtype=np.int64), np.ones((2, 2)), [0, 1], "floating-point"),
])
def test_bad_input(images: np.ndarray, classes: np.ndarray, labels: list, message: str) -> None:
    with pytest.raises(ValueError) as caught:
        zero_shot_accuracy(images, classes, labels)
    assert message in str(caught.value)


@pytest.mark.skipif(not PROMPTS.exists(), reason="benchmarks/finetune_prompts.npz is not in this checkout")
def test_real_prompts_classify_raw_captions() -> None:
    """In the raw MiniLM space, the sample's captions find their (origin, category) prompt well above the majority
    class rate: the stored prompt features are the encoder's, and the classes line up with the sample's labels."""
    from embspace.data import load_sample

    sample = load_sample()
    with np.load(PROMPTS, allow_pickle=False) as prompts:
        features, origins, categories = prompts["features"], prompts["origins"], prompts["categories"]
    index = {(o, c): k for k, (o, c) in enumerate(zip(origins.tolist(), categories.tolist(), strict=True))}
    keys = list(zip(sample["origin"].tolist(), sample["categories"].tolist(), strict=True))
    rows = np.array([k in index for k in keys])
    labels = np.array([index[k] for k, keep in zip(keys, rows, strict=True) if keep])
    accuracy = zero_shot_accuracy(sample["text_features"][rows].astype(np.float32), features, labels)
    majority = np.bincount(labels).max() / len(labels)
    assert rows.mean() > 0.9
    assert accuracy > majority + 0.1
