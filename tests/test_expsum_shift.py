"""ExpSum on the torch path for large t (4t > 80), where each tile's sum is taken relative to its largest exponent."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from embspace.kernels.engine import stream_pairs
from embspace.kernels.pairwise import ExpSum
from embspace.kernels.rows import prepare_rows
from tests import reference as ref

CPU = torch.device("cpu")


def log_sum_exp(values: np.ndarray) -> float:
    top = values.max()
    return float(top + np.log(np.exp(values - top).sum()))


@pytest.mark.parametrize("t", [2.0, 30.0, 200.0])
@pytest.mark.parametrize(("dtype", "tolerance"), [(torch.float64, 1e-10), (torch.float32, 1e-4)])
@pytest.mark.parametrize("tile", [4096, 16])
def test_log_sums_equal_float64_for_every_t(t, dtype, tolerance, tile):
    """The self-pairs on diagonal tiles (exponent 0) are masked before the shift, not subtracted after the sum."""
    x, y = ref.paired_data("cone", 60, 48, seed=2)
    sim_xx, sim_xy = ref.unit(x) @ ref.unit(x).T, ref.unit(x) @ ref.unit(y).T
    exact_self = log_sum_exp(2 * t * (sim_xx[np.triu_indices(60, 1)] - 1))
    exact_cross = log_sum_exp(2 * t * (sim_xy[~np.eye(60, dtype=bool)] - 1))
    rows_x, rows_y = prepare_rows(x, CPU, dtype), prepare_rows(y, CPU, dtype)
    mine_self = ExpSum(t, symmetric=True, exclude_diagonal=True)
    mine_cross = ExpSum(t, symmetric=False, exclude_diagonal=True)
    stream_pairs(rows_x, None, [mine_self], tile=tile, backend="torch")
    stream_pairs(rows_x, rows_y, [mine_cross], tile=tile, backend="torch")
    assert abs(mine_self.log_sum() - exact_self) < tolerance
    assert abs(mine_cross.log_sum() - exact_cross) < tolerance


def test_a_tile_with_only_excluded_pairs_adds_nothing():
    rows = prepare_rows(ref.paired_data("random", 5, 8, seed=0)[0], CPU, torch.float64)
    acc = ExpSum(30.0, symmetric=True, exclude_diagonal=True)
    stream_pairs(rows, None, [acc], tile=1, backend="torch")  # every diagonal tile is a single self-pair
    sim = ref.unit(ref.paired_data("random", 5, 8, seed=0)[0])
    exact = log_sum_exp(60.0 * ((sim @ sim.T)[np.triu_indices(5, 1)] - 1))
    assert abs(acc.log_sum() - exact) < 1e-10
