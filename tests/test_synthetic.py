"""The generator of Xue et al.'s data model: its statistics match its parameters, it is deterministic by seed, and
bad parameters are one-line InputErrors."""

from __future__ import annotations

import numpy as np
import pytest

from embspace.data.synthetic import XueModel, generate
from embspace.errors import InputError

N = 20_000


@pytest.fixture(scope="module")
def data():
    model = XueModel(classes=5, details=3, core_strength=2.0, core_std=0.7, spurious_strength=1.5,
                     spurious_std=0.2, spurious_rate=0.8, detail_rate=0.3, detail_strength=1.2,
                     caption_richness=0.6, noise_std=0.05, image_dim=24, text_dim=20)
    return generate(model, N, seed=3)


def se(p: float, n: int) -> float:
    """Standard error of a proportion p over n draws."""
    return (p * (1 - p) / n) ** 0.5


def test_labels_are_balanced_and_the_spurious_rate_is_the_over_representation_rate(data):
    counts = np.bincount(data.labels, minlength=5)
    assert counts.max() - counts.min() <= 1 and counts.sum() == N
    agree = data.spurious == data.labels
    assert abs(agree.mean() - 0.8) < 5 * se(0.8, N)
    # the disagreeing attributes are uniform over the other K − 1 classes
    offsets = (data.spurious[~agree] - data.labels[~agree]) % 5
    assert set(np.unique(offsets)) == {1, 2, 3, 4}
    share = np.bincount(offsets, minlength=5)[1:] / (~agree).sum()
    assert np.abs(share - 0.25).max() < 5 * se(0.25, int((~agree).sum()))


def test_the_shift_changes_only_the_spurious_rate():
    model = XueModel(classes=3, spurious_rate=0.95, shift_spurious_rate=0.2)
    shift, test = generate(model, N, seed=1, split="shift"), generate(model, N, seed=1, split="test")
    assert abs((shift.spurious == shift.labels).mean() - 0.2) < 5 * se(0.2, N)
    assert abs((test.spurious == test.labels).mean() - 0.95) < 5 * se(0.95, N)
    assert np.array_equal(shift.directions["image"]["core"], test.directions["image"]["core"])  # same encoders
    assert np.array_equal(shift.class_prompts, test.class_prompts)


def test_latent_moments_match_the_parameters(data):
    blocks = data.model.blocks()
    core = data.image_latents[:, blocks["core"]]
    spurious = data.image_latents[:, blocks["spurious"]]
    eye = np.eye(5)
    core_residual = core - 2.0 * eye[data.labels]
    spurious_residual = spurious - 1.5 * eye[data.spurious]
    assert np.abs(core_residual.mean(0)).max() < 5 * 0.7 / N**0.5
    assert np.abs(core_residual.std(0) - 0.7).max() < 0.03
    assert np.abs(spurious_residual.std(0) - 0.2).max() < 0.01
    # within-class covariance of the core latents is core_std² I
    cov = np.cov(core_residual.T)
    assert np.abs(cov - 0.49 * np.eye(5)).max() < 0.03


def test_details_and_caption_richness(data):
    blocks = data.model.blocks()
    assert abs(data.details.mean() - 0.3) < 5 * se(0.3, data.details.size)
    assert not (data.mentioned & ~data.details).any()  # a caption mentions only details that are there
    richness = data.mentioned.sum() / data.details.sum()
    assert abs(richness - 0.6) < 5 * se(0.6, int(data.details.sum()))
    np.testing.assert_array_equal(data.image_latents[:, blocks["detail"]], 1.2 * data.details)
    np.testing.assert_array_equal(data.text_latents[:, blocks["detail"]], 1.2 * data.mentioned)
    # details are shared by every class: present at the same rate in each
    for c in range(5):
        rows = data.labels == c
        assert abs(data.details[rows].mean() - 0.3) < 5 * se(0.3, data.details[rows].size)
    # the caption carries the image's core and spurious latents
    shared = slice(0, 10)
    np.testing.assert_array_equal(data.image_latents[:, shared], data.text_latents[:, shared])


def test_linear_encoders_are_orthonormal_maps_of_the_latents_plus_noise(data):
    d = np.vstack([data.directions["image"][b] for b in ("core", "spurious", "detail")])  # (k, 24)
    np.testing.assert_allclose(d @ d.T, np.eye(len(d)), atol=1e-12)
    noise = data.image.astype(np.float64) - data.image_latents @ d
    assert abs(noise.std() - 0.05) < 0.002 and abs(noise.mean()) < 1e-3
    t = np.vstack([data.directions["text"][b] for b in ("core", "spurious", "detail")])  # (k, 20)
    prompts = np.zeros((5, data.model.latent_dim))
    prompts[:, :5] = 2.0 * np.eye(5)
    np.testing.assert_allclose(data.class_prompts, prompts @ t, atol=1e-6)


def test_the_mlp_encoder_adds_a_bounded_nonlinear_part():
    model = XueModel(classes=3, encoder="mlp", mlp_scale=0.5, noise_std=0.0)
    data = generate(model, 500, seed=0)
    d = np.vstack([data.directions["image"][b] for b in ("core", "spurious", "detail")])
    rest = data.image.astype(np.float64) - data.image_latents @ d
    norms = np.linalg.norm(rest, axis=1)
    assert norms.max() <= 0.5 * np.sqrt(model.latent_dim) + 1e-5 and norms.mean() > 0.05


def test_deterministic_by_seed_and_split():
    model = XueModel(classes=3)
    a, b = generate(model, 300, seed=7), generate(model, 300, seed=7)
    for field in ("image", "text", "labels", "spurious", "details", "mentioned", "class_prompts"):
        np.testing.assert_array_equal(getattr(a, field), getattr(b, field))
    assert not np.array_equal(a.image, generate(model, 300, seed=8).image)
    assert not np.array_equal(a.image, generate(model, 300, seed=7, split="test").image)


@pytest.mark.parametrize(("changes", "where"), [
    ({"classes": 1}, "classes"), ({"classes": 2.5}, "classes"), ({"spurious_rate": 1.5}, "spurious_rate"),
    ({"caption_richness": -0.1}, "caption_richness"), ({"core_std": -1.0}, "core_std"),
    ({"noise_std": float("nan")}, "noise_std"), ({"encoder": "cnn"}, "encoder"), ({"image_dim": 4}, "image_dim"),
    ({"details": -1}, "details"),
])
def test_bad_parameters_are_one_line_input_errors(changes, where):
    with pytest.raises(InputError) as caught:
        XueModel(**changes)
    assert caught.value.where == where and "\n" not in str(caught.value)


@pytest.mark.parametrize(("kwargs", "where"), [({"n": 0}, "n"), ({"split": "val"}, "split"), ({"seed": -1}, "seed")])
def test_bad_generate_arguments_are_input_errors(kwargs, where):
    with pytest.raises(InputError) as caught:
        generate(XueModel(), **{"n": 10, **kwargs})
    assert caught.value.where == where
