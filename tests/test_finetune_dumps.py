"""Training-free baselines on whole dumps: streamed equals in-memory, and the write is atomic."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from embspace.embeddings import Embeddings
from embspace.errors import InputError
from embspace.finetune import center_modalities, shift_dump, shift_gap
from embspace.finetune.dumps import atomic_npy
from tests import reference as ref


@pytest.fixture
def pair():
    x, y = ref.paired_data("cone", 150, 12, seed=3)
    return x.astype(np.float32), y.astype(np.float32)


@pytest.mark.parametrize("center", [False, True])
def test_streamed_shift_equals_the_in_memory_functions(tmp_path, pair, center):
    x, y = pair
    info = shift_dump(Embeddings.from_array(x), Embeddings.from_array(y), tmp_path / "s.npy", lam=0.3,
                      center=center, chunk_rows=32)  # five chunks, the last one uneven
    got = np.load(tmp_path / "s.npy")
    xt, yt = torch.from_numpy(x).double(), torch.from_numpy(y).double()
    want = center_modalities(xt, yt) if center else shift_gap(xt, yt, 0.3)
    assert got.shape == (2, 150, 12) and got.dtype == np.float32
    np.testing.assert_allclose(got[0], want[0].numpy(), atol=1e-6)
    np.testing.assert_allclose(got[1], want[1].numpy(), atol=1e-6)
    assert info["gap_vector_norm"] == pytest.approx(ref.gap(x, y), abs=1e-9)


def test_half_shift_shrinks_the_gap_and_centring_removes_the_cone(tmp_path, pair):
    x, y = pair
    ex, ey = Embeddings.from_array(x.astype(np.float16)), Embeddings.from_array(y)
    shift_dump(ex, ey, tmp_path / "s.npy", lam=0.5)
    shift_dump(ex, ey, tmp_path / "c.npy", center=True)
    s, c = np.load(tmp_path / "s.npy"), np.load(tmp_path / "c.npy")
    assert ref.gap(*s) < 0.2 * ref.gap(x, y)
    assert abs(ref.cone(c[0])) < 0.02 < ref.cone(x)


def test_unequal_shapes_are_refused_and_nothing_is_left(tmp_path, pair):
    x, y = pair
    with pytest.raises(InputError, match="equal shapes"):
        shift_dump(Embeddings.from_array(x), Embeddings.from_array(y[:, :5]), tmp_path / "s.npy")
    with pytest.raises(RuntimeError), atomic_npy(tmp_path / "t.npy", (2, 3), np.dtype(np.float32)) as array:
        array[:] = 1
        raise RuntimeError("interrupted")
    assert list(tmp_path.iterdir()) == []
