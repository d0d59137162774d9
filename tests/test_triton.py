"""The fused Triton kernels' logic, on the CPU under Triton's interpreter, against float64 references.

The interpreter runs each program of a kernel in numpy (tl.dot is a float32-accumulating matmul), so these tests
check the tile scheduling, masks, offsets and reductions exactly, on small uneven inputs (sizes and D that are not
multiples of the 16×16×16 interpreter tiles). They do not measure the GPU's rounding: ``test_gpu.py`` does that.
``TRITON_INTERPRET=1`` must be set before Triton itself is first imported: ``triton.jit`` picks the interpreter
when a function is decorated, and ``triton.language``'s own helpers (``tl.cdiv``…) are decorated when it is
imported, and the first launch checks it again. This module sets it at collection, before anything imports
Triton (no other test module does), and leaves it set; only explicit ``backend="triton"`` calls reach the kernels.
"""

from __future__ import annotations

import importlib.util
import math
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch

if importlib.util.find_spec("triton") is None:
    pytest.skip("triton is not installed", allow_module_level=True)

import embspace
from embspace.errors import InputError
from embspace.kernels import backend as backend_settings
from embspace.kernels import fused
from embspace.kernels.backend import matmul_precision
from embspace.kernels.engine import stream_pairs
from embspace.kernels.pairwise import (
    ExpSum,
    Histogram,
    RankCount,
    TopK,
    count_tiles,
    matched_similarities,
)
from embspace.kernels.rows import prepare_rows
from tests import reference as ref


def _import_kernels():
    if not torch.cuda.is_available() and "triton" not in sys.modules:
        os.environ["TRITON_INTERPRET"] = "1"
    from embspace.kernels import triton as module

    return module


kernels = _import_kernels()
import triton  # noqa: E402  (after the interpreter was chosen)
import triton.language as tl  # noqa: E402

if kernels.INTERPRET:
    DEVICE = torch.device("cpu")
elif torch.cuda.is_available():
    DEVICE = torch.device("cuda")  # the compiled kernels; test_gpu.py holds the GPU-scale checks
else:  # Triton was imported earlier without the interpreter, and there is no CUDA: nothing here can run
    pytest.skip("triton was imported before TRITON_INTERPRET=1 could be set, and there is no CUDA",
                allow_module_level=True)

T = 2.0
# On a GPU the fused fp32 tiles and cuBLAS's differ in accumulation order, by at most D·2⁻²⁴ (D ≤ 24 here) plus the
# float32 rounding of the rows against float64: a count may differ only where a similarity is this close to a bin
# edge, a matched similarity or a k-th neighbour. The interpreter multiplies exactly as the torch path does.
TIE = 3e-6
SMALL = kernels.Config(block_m=16, block_n=16, block_k=16, group=2, num_warps=4, num_stages=2)
WIDE = kernels.Config(block_m=16, block_n=32, block_k=32, group=3, num_warps=4, num_stages=2)


def unit32(a: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(ref.unit(a)).float().to(DEVICE)


def hard_pairs(n: int, d: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Weakly paired modalities: most partners are not their row's nearest neighbour (non-trivial ranks)."""
    rng = np.random.default_rng(seed)
    x = ref.unit(rng.normal(size=(n, d)))
    return x, ref.unit(x + 2.5 * rng.normal(size=(n, d)) / np.sqrt(d))


def near_ties(x: np.ndarray, y: np.ndarray, ks: tuple[int, ...]) -> float:
    """The smallest float64 gap between a matched similarity d_i and another similarity of its row or column, or
    between the k-th and (k+1)-th best of a row or column: under it, rank counts and top-k may flip."""
    sim = ref.unit(x) @ ref.unit(y).T
    d = np.diag(sim)
    off = ~np.eye(len(sim), dtype=bool)
    gaps = [np.abs(sim - d[:, None])[off].min(), np.abs(sim - d[None, :])[off].min()]
    for m in (sim, sim.T):
        best = -np.sort(-m, axis=1)
        gaps += [(best[:, k - 1] - best[:, k]).min() for k in ks]
    return float(min(gaps))


def near_edges(values: np.ndarray, bins: int) -> int:
    """How many similarities lie within TIE of an edge of ``bins`` bins over [−1, 1] (float64)."""
    edges = np.linspace(-1.0, 1.0, bins + 1)
    return int((np.abs(np.asarray(values).ravel()[:, None] - edges[None, :]) < TIE).sum())


def assert_counts_match(mine, theirs, values: np.ndarray, bins: int) -> None:
    """Exact under the interpreter; on a GPU only pairs within TIE of an edge may sit in a neighbouring bin."""
    mine, theirs = np.asarray(mine), np.asarray(theirs)
    assert mine.sum() == theirs.sum()
    if kernels.INTERPRET:
        np.testing.assert_array_equal(mine, theirs)
    else:
        assert np.abs(np.cumsum(mine - theirs)).sum() <= near_edges(values, bins), (mine, theirs)


def log_sum_exp(values: np.ndarray) -> float:
    top = values.max()
    return float(top + np.log(np.exp(values - top).sum()))


# --- kernels against float64 brute force ------------------------------------------------------------------------


@pytest.mark.parametrize(("kind", "n", "d", "config"), [("cone", 77, 37, SMALL), ("random", 130, 24, None),
                                                         ("clustered", 50, 40, SMALL)])
def test_uniformity_triangle_equals_float64(kind, n, d, config):
    x = ref.paired_data(kind, n, d, seed=n)[0]
    result = kernels.pair_reduce(unit32(x), unit32(x), triangle=True, t=T, config=config)
    u = result.exp_shift + np.log(result.exp_total) - np.log(n * (n - 1) / 2)
    assert abs(u - ref.uniformity(x, T)) < 1e-6  # float32 tiles, float64 sums


def test_cross_uniformity_with_and_without_true_pairs():
    x, y = ref.paired_data("cone", 70, 33, seed=5)
    a, b = unit32(x), unit32(y)
    off = kernels.pair_reduce(a, b, t=T, exclude_equal=True, config=WIDE)
    every = kernels.pair_reduce(a, b, t=T, config=WIDE)
    u_cross = off.exp_shift + np.log(off.exp_total) - np.log(70 * 69)
    assert abs(u_cross - ref.uniformity_cross(x, y, T)) < 1e-6
    exponents = 2 * T * (ref.unit(x) @ ref.unit(y).T - 1)
    assert abs(every.exp_shift + np.log(every.exp_total) - log_sum_exp(exponents.ravel())) < 1e-6


def test_large_t_uses_the_running_shift():
    """4t > 80: float32 exp would underflow to 0 for every pair; the shifted sum stays exact."""
    x = ref.paired_data("random", 45, 20, seed=2)[0]
    t = 200.0
    result = kernels.pair_reduce(unit32(x), unit32(x), triangle=True, t=t, config=SMALL)
    sim = ref.unit(x) @ ref.unit(x).T
    expected = log_sum_exp(2 * t * (sim[np.triu_indices(45, 1)] - 1))
    assert np.isfinite(expected) and expected < -104  # exp of it is below float32's smallest denormal
    assert abs(result.exp_shift + np.log(result.exp_total) - expected) < 1e-4  # 400·(float32 rounding of s)


@pytest.mark.parametrize(("precision", "tolerance"), [("fp32", 1e-6), ("tf32", 1e-6 if kernels.INTERPRET else 2e-3),
                                                      ("fp16", 3e-4), ("bf16", 3e-3)])
def test_precisions_cast_the_operands(precision, tolerance):
    """Inputs are rounded to the chosen storage type; the interpreter multiplies in float32 (no tf32 rounding), a GPU
    in tf32 (errors 4e-6 to 7e-4 in this sum, hence 2e-3 there)."""
    x = ref.paired_data("cone", 60, 48, seed=9)[0]
    a = unit32(x)
    result = kernels.pair_reduce(a, a, triangle=True, t=T, precision=precision, config=SMALL)
    error = abs(result.exp_shift + np.log(result.exp_total) - np.log(60 * 59 / 2) - ref.uniformity(x, T))
    assert error < tolerance
    assert a.dtype == torch.float32  # the caller's rows are left alone


def test_histograms_equal_numpy():
    x, y = ref.paired_data("cone", 67, 21, seed=4)
    bins = 20
    within = kernels.pair_reduce(unit32(x), unit32(x), triangle=True, bins=bins, config=SMALL)
    cross = kernels.pair_reduce(unit32(x), unit32(y), bins=bins, config=WIDE)
    ux, uy = ref.unit(x), ref.unit(y)
    hist = lambda v: np.histogram(np.clip(v, -1, 1), bins=bins, range=(-1, 1))[0]  # noqa: E731
    sim = ux @ uy.T
    np.testing.assert_array_equal(within.counts.cpu().numpy(), hist((ux @ ux.T)[np.triu_indices(67, 1)]))
    np.testing.assert_array_equal(cross.matched.cpu().numpy(), hist(np.diag(sim)))
    np.testing.assert_array_equal(cross.counts.cpu().numpy(), hist(sim[~np.eye(67, dtype=bool)]))
    assert within.matched is None and int(within.counts.sum()) == 67 * 66 // 2


def test_similarities_on_bin_edges_fall_in_numpys_bins():
    """Products exactly −1, −0.5, 0, 0.5 and 1 (edges of 4 bins over [−1, 1]) and values one float32 step away."""
    h = np.float32(np.sqrt(0.75))
    step = np.nextafter(np.float32(0.5), np.float32(1)) - np.float32(0.5)
    a = np.array([[1, 0], [0, 1], [-1, 0], [0.5, h], [0.5 + step, 0]], dtype=np.float32)
    b = np.array([[1, 0], [0.5, h], [0, -1], [-1, 0], [-0.5, 0], [1, 0]], dtype=np.float32)
    result = kernels.pair_reduce(torch.from_numpy(a).to(DEVICE), torch.from_numpy(b).to(DEVICE), bins=4,
                                 config=SMALL)
    sim = a.astype(np.float64) @ b.astype(np.float64).T  # (5, 6): every product of these is exact in float32
    assert {-1.0, -0.5, 0.0, 0.5, 1.0} <= set(sim.ravel().tolist())
    off = ~np.eye(5, 6, dtype=bool)
    np.testing.assert_array_equal(result.counts.cpu().numpy(), np.histogram(sim[off], bins=4, range=(-1, 1))[0])
    np.testing.assert_array_equal(result.matched.cpu().numpy(),
                                  np.histogram(sim[~off], bins=4, range=(-1, 1))[0])


@pytest.mark.parametrize("bins", [1, 7, 200, 256])
def test_float32_bounds_order_float32_values_as_the_float64_edges_do(bins):
    edges = np.linspace(-1.0, 1.0, bins + 1)
    bounds = kernels.float32_bounds(bins)
    assert bounds.dtype == np.float32 and len(bounds) >= bins + 2 and np.all(np.isposinf(bounds[bins + 1:]))
    near = edges.astype(np.float32)  # float32 values on, just below and just above every edge
    values = np.concatenate([near, np.nextafter(near, np.float32(-2)), np.nextafter(near, np.float32(2))])
    below_edge = values.astype(np.float64)[:, None] < edges[None, :]  # (V, bins + 1)
    below_bound = values[:, None] < bounds[None, : bins + 1]
    np.testing.assert_array_equal(below_bound, below_edge)


@pytest.mark.parametrize(("n", "m", "d", "k", "config"), [(53, 53, 29, 5, SMALL), (40, 71, 18, 3, WIDE)])
def test_top_k_equals_float64_sort(n, m, d, k, config):
    rng = np.random.default_rng(n + m)
    x, y = ref.unit(rng.normal(size=(n, d))), ref.unit(rng.normal(size=(m, d)))
    result = kernels.row_reduce(unit32(x), unit32(y), k=k, config=config)
    sim = x @ y.T
    order = np.argsort(-sim, axis=1)[:, :k]  # (n, k)
    values = result.top_values.cpu().double().numpy()
    found = np.sort(result.top_index.cpu().numpy(), axis=1)
    np.testing.assert_array_equal(found, np.sort(order, axis=1))
    np.testing.assert_allclose(np.sort(values, axis=1)[:, ::-1], np.take_along_axis(sim, order, 1), atol=1e-6)


def test_top_k_wider_than_the_columns_leaves_empty_slots():
    x = ref.unit(np.random.default_rng(1).normal(size=(20, 17)))
    result = kernels.row_reduce(unit32(x), unit32(x[:3]), k=5, config=SMALL)
    index = result.top_index.cpu().numpy()
    assert np.all(np.sort(index, axis=1)[:, :2] == -1)
    assert np.all(np.sort(index, axis=1)[:, 2:] == [0, 1, 2])
    assert np.all(np.isneginf(result.top_values.cpu().numpy()[index == -1]))


def test_rank_counts_rows_and_columns_equal_brute_force():
    x, y = hard_pairs(90, 26, seed=3)
    sim = x @ y.T
    d = np.diag(sim).copy()
    a, b = unit32(x), unit32(y)
    matched = (a * b).sum(1)
    result = kernels.row_reduce(a, b, matched_rows=matched, matched_cols=matched, config=SMALL)
    off = ~np.eye(90, dtype=bool)
    expected_rows = ((sim > d[:, None]) & off).sum(1)
    expected_cols = ((sim > d[None, :]) & off).sum(0)
    assert expected_rows.max() > 5 and expected_cols.max() > 5  # a non-trivial case
    np.testing.assert_array_equal(result.rank_rows.cpu().numpy(), expected_rows)
    np.testing.assert_array_equal(result.rank_cols.cpu().numpy(), expected_cols)


def test_offsets_place_the_true_pairs():
    """A column block that starts 16 rows later: pairs i = j sit on the shifted diagonal."""
    x, y = hard_pairs(48, 20, seed=8)
    a, b = unit32(x), unit32(y)
    d = (a * b).sum(1)
    result = kernels.row_reduce(a[16:], b[:40], diagonal=-16, matched_rows=d[16:],
                                matched_cols=d[:40], config=SMALL)
    sim = x @ y.T
    rows, cols = np.arange(16, 48), np.arange(0, 40)
    block = sim[16:, :40]
    others = rows[:, None] != cols[None, :]
    np.testing.assert_array_equal(result.rank_rows.cpu().numpy(), ((block > np.diag(sim)[16:, None]) & others).sum(1))
    np.testing.assert_array_equal(result.rank_cols.cpu().numpy(), ((block > np.diag(sim)[None, :40]) & others).sum(0))


def test_bad_arguments_are_refused():
    a = unit32(np.eye(4))
    with pytest.raises(ValueError, match="same D"):
        kernels.pair_reduce(a, a[:, :3], t=T)
    with pytest.raises(ValueError, match="unknown precision"):
        kernels.pair_reduce(a, a, t=T, precision="fp8")
    with pytest.raises(ValueError, match="neighbours per row"):
        kernels.row_reduce(a, a, k=kernels.MAX_TOPK + 1)
    with pytest.raises(ValueError, match="float16, bfloat16 or float32"):
        kernels.pair_reduce(a.double(), a.double(), t=T)


@triton.jit
def _positions(rows_out, cols_out, start, count, n_row_blocks, n_col_blocks, TRIANGLE: tl.constexpr,
               GROUP: tl.constexpr, BLOCK: tl.constexpr):
    i = tl.arange(0, BLOCK)
    p = start + tl.minimum(i, count - 1).to(tl.int64)  # lanes past the end repeat the last tile
    row_block, col_block = kernels._tile_position(p, n_row_blocks, n_col_blocks, TRIANGLE, GROUP)
    tl.store(rows_out + i, row_block, mask=i < count)
    tl.store(cols_out + i, col_block, mask=i < count)


def tile_positions(start: int, count: int, n_row_blocks: int, n_col_blocks: int, triangle: bool, group: int):
    rows, cols = (torch.full((count,), -1, dtype=torch.int64, device=DEVICE) for _ in range(2))
    _positions[(1,)](rows, cols, start, count, n_row_blocks, n_col_blocks, TRIANGLE=triangle, GROUP=group,
                     BLOCK=triton.next_power_of_2(count))
    return rows.cpu().numpy(), cols.cpu().numpy()


@pytest.mark.parametrize(("blocks", "group"), [(1, 8), (37, 8), (20, 3), (9, 1)])
def test_triangle_schedule_visits_every_upper_tile_once(blocks, group):
    tiles = blocks * (blocks + 1) // 2
    rows, cols = tile_positions(0, tiles, blocks, blocks, True, group)
    found = sorted(zip(rows.tolist(), cols.tolist(), strict=True))
    assert found == [(r, c) for r in range(blocks) for c in range(r, blocks)]
    assert np.all(cols[1:] // group >= cols[:-1] // group)  # column groups are taken in order


@pytest.mark.parametrize(("row_blocks", "col_blocks", "group"), [(13, 29, 8), (5, 3, 8), (7, 7, 2)])
def test_rectangle_schedule_visits_every_tile_once(row_blocks, col_blocks, group):
    rows, cols = tile_positions(0, row_blocks * col_blocks, row_blocks, col_blocks, False, group)
    found = sorted(zip(rows.tolist(), cols.tolist(), strict=True))
    assert found == [(r, c) for r in range(row_blocks) for c in range(col_blocks)]


def test_triangle_schedule_at_a_billion_tiles():
    """N = 10⁷ rows in 128-row blocks: tile indices beyond 2³¹; the float64 square root is corrected exactly."""
    blocks, group = 78_125, 8
    tiles = blocks * (blocks + 1) // 2  # 3,051,796,875
    for start in (2**31 - 100, tiles // 2 + 12_345, tiles - 512):
        rows, cols = tile_positions(start, 512, blocks, blocks, True, group)
        for p, r, c in zip(range(start, start + 512), rows.tolist(), cols.tolist(), strict=True):
            m = (math.isqrt(8 * p + 1) - 1) // 2  # column of tile p in column-major order
            first = m // group * group
            width = min(group, blocks - first)
            q = p - first * (first + 1) // 2
            if q < first * width:
                assert (r, c) == (q // width, first + q % width)
            else:
                q2 = q - first * width
                local = (math.isqrt(8 * q2 + 1) - 1) // 2
                assert (r, c) == (first + q2 - local * (local + 1) // 2, first + local)
            assert 0 <= r <= c < blocks


# --- the engine: stream_pairs through the fused kernels merges into the same reductions --------------------------


@pytest.mark.parametrize("memory", [None, 0])  # resident rows: one launch; streamed rows: one launch per block pair
def test_stream_pairs_fused_equals_torch_path(memory):
    x, y = hard_pairs(75, 19, seed=11)
    # no similarity within 5·TIE of a matched one or a k-th neighbour: rank counts and top-k are exact on a GPU too
    assert near_ties(x, y, (1, 3, 4)) > 5 * TIE
    rows = {name: prepare_rows(v, DEVICE, torch.float32, memory_budget=memory) for name, v in (("x", x), ("y", y))}
    out = {}
    for backend in ("torch", "triton"):
        u, h = ExpSum(T, symmetric=True, exclude_diagonal=True), Histogram(10, symmetric=True, device=DEVICE)
        stream_pairs(rows["x"], None, [u, h], tile=32, backend=backend)
        c, hc = ExpSum(T, symmetric=False, exclude_diagonal=True), Histogram(10, symmetric=False, device=DEVICE)
        stream_pairs(rows["x"], rows["y"], [c, hc], tile=32, backend=backend)
        ranks = RankCount(matched_similarities(rows["x"], rows["y"], tile=32))
        top = TopK(75, 75, 4, DEVICE)
        stream_pairs(rows["x"], rows["y"], [ranks, top], tile=32, backend=backend)
        lone = RankCount(matched_similarities(rows["x"], rows["y"], tile=32))
        stream_pairs(rows["x"], rows["y"], [lone], tile=32, backend=backend)
        out[backend] = (u, h, c, hc, ranks, top, lone)
    (u, h, c, hc, ranks, top, lone), (fu, fh, fc, fhc, franks, ftop, flone) = out["torch"], out["triton"]
    assert abs(fu.log_sum() - np.log(75 * 74 / 2) - ref.uniformity(x, T)) < 1e-6
    assert abs(fu.log_sum() - u.log_sum()) < 1e-6 and abs(fc.log_sum() - c.log_sum()) < 1e-6
    ux, uy = ref.unit(x), ref.unit(y)
    sim = ux @ uy.T
    assert_counts_match(fh.counts()["within"], h.counts()["within"], (ux @ ux.T)[np.triu_indices(75, 1)], 10)
    for key in ("matched", "unmatched"):
        assert_counts_match(fhc.counts()[key], hc.counts()[key], sim, 10)
    for mine, theirs in ((franks, ranks), (flone, lone)):
        assert torch.equal(mine.rows, theirs.rows) and torch.equal(mine.cols, theirs.cols)
    assert ranks.rows.max() > 3
    for k in (1, 3):
        assert float((franks.rows < k).double().mean()) == ref.recall(x, y, k)
        assert float((franks.cols < k).double().mean()) == ref.recall(y, x, k)
    for field in ("row_values", "col_values"):
        assert getattr(ftop, field).dtype == torch.float64
        torch.testing.assert_close(getattr(ftop, field), getattr(top, field), atol=1e-6, rtol=0)
    assert torch.equal(ftop.row_index.sort(1).values, torch.from_numpy(np.sort(np.argsort(-sim, 1)[:, :4], 1)))
    assert torch.equal(ftop.col_index.sort(0).values, torch.from_numpy(np.sort(np.argsort(-sim, 0)[:4], 0)))


def test_progress_counts_the_same_tiles():
    x = ref.paired_data("random", 70, 16, seed=1)[0]
    counts = {}
    for backend in ("torch", "triton"):
        for memory in (None, 0):
            seen = []
            rows = prepare_rows(x, DEVICE, torch.float32, memory_budget=memory)
            stream_pairs(rows, None, [ExpSum(T, symmetric=True, exclude_diagonal=True)], tile=32,
                         progress=seen.append, backend=backend)
            counts[backend, memory] = sum(seen)
    assert set(counts.values()) == {6}  # 3 row blocks of 32: 3·4/2 tiles


def test_measure_with_the_triton_backend_equals_torch(monkeypatch):
    x, y = hard_pairs(60, 24, seed=7)
    assert near_ties(x, y, (1, 5, 10)) > 5 * TIE  # recall and hubness are exact on a GPU too
    metrics = "uniformity,retrieval,hubness,histograms"
    reports = {}
    for backend in ("torch", "triton"):
        monkeypatch.setenv(backend_settings.BACKEND_ENV, backend)
        reports[backend] = embspace.measure(image=x, text=y, metrics=metrics, device=str(DEVICE), tile=32,
                                            precision="fp32")
    torch_values, fused_values = reports["torch"].metrics, reports["triton"].metrics
    for key in ("image", "text", "mean", "joint", "cross"):
        assert abs(fused_values["uniformity"][key] - torch_values["uniformity"][key]) < 1e-6
    # the fused kernels count no ties and keep no best-other similarity: those numbers are left out, and said so
    left_out = {k for k in torch_values if k.startswith(("recall_pessimistic@", "recall_expected@", "tied_partner",
                                                         "margin_"))}
    assert left_out and set(reports["triton"].settings["retrieval"]["left_out"]) == {"tie conventions", "margins"}
    assert {k: v for k, v in fused_values.items() if k != "uniformity"} == \
           {k: v for k, v in torch_values.items() if k != "uniformity" and k not in left_out}
    mine, theirs = reports["triton"].histograms, reports["torch"].histograms
    assert "margin" in reports["triton"].settings["histograms"]["left_out"]
    theirs = {key: value for key, value in theirs.items() if key != "margin"}  # margins: left out (above)
    if kernels.INTERPRET:
        assert mine == theirs
    else:  # 200 bins: some similarities lie within 1e-6 of an edge (9.5e-7 for these data)
        ux, uy = ref.unit(x), ref.unit(y)
        upper = np.triu_indices(60, 1)
        values = np.concatenate([(ux @ uy.T).ravel(), (ux @ ux.T)[upper], (uy @ uy.T)[upper]])
        assert mine.keys() == theirs.keys()
        bins = len(theirs["edges"]) - 1
        assert mine["edges"] == theirs["edges"] and mine["within"].keys() == theirs["within"].keys()
        for key in ("matched", "unmatched"):
            assert_counts_match(mine[key], theirs[key], values, bins)
        for name in theirs["within"]:
            assert_counts_match(mine["within"][name], theirs["within"][name], values, bins)
    assert abs(fused_values["uniformity"]["image"] - ref.uniformity(x, T)) < 1e-6


# --- backend choice ----------------------------------------------------------------------------------------------


def test_forced_triton_says_why_it_cannot_run():
    x, y = hard_pairs(10, 4, seed=0)
    rows64 = prepare_rows(x, DEVICE, torch.float64)
    with pytest.raises(InputError, match=r"backend=triton: .*float64 tiles have no fused kernel"):
        stream_pairs(rows64, None, [ExpSum(T, symmetric=True, exclude_diagonal=True)], backend="triton")
    rows = prepare_rows(x, DEVICE, torch.float32)
    with pytest.raises(InputError, match="TopK is fused for cross problems"):
        stream_pairs(rows, None, [TopK(10, 10, 2, DEVICE)], backend="triton")
    with pytest.raises(InputError, match=r"ExpSum\(symmetric=True\) on a cross problem"):
        stream_pairs(rows, prepare_rows(y, DEVICE, torch.float32), [ExpSum(T, symmetric=True, exclude_diagonal=True)],
                     backend="triton")


def test_wide_histograms_take_the_torch_path():
    x = hard_pairs(20, 8, seed=2)[0]
    rows = prepare_rows(x, DEVICE, torch.float32)
    wide = Histogram(kernels.MAX_BINS + 1, symmetric=True, device=DEVICE)
    assert fused.why_not_fused(rows, None, [wide]) == f"Histogram with more than {kernels.MAX_BINS} bins has no " \
                                                        "fused kernel"
    assert fused.why_not_fused(rows, None, [Histogram(kernels.MAX_BINS, symmetric=True, device=DEVICE)]) is None
    with pytest.raises(InputError, match="more than 4096 bins"):
        stream_pairs(rows, None, [wide], backend="triton")
    with pytest.raises(ValueError, match="1 to 4096 bins"):
        kernels.pair_reduce(rows.block(0, 20), rows.block(0, 20), bins=kernels.MAX_BINS + 1)


def _fails_to_build(*args, **kwargs):
    raise triton.runtime.errors.OutOfResources(232_448, 232_447, "shared memory")


@pytest.mark.parametrize("memory", [None, 0])
def test_auto_falls_back_to_torch_when_a_kernel_cannot_be_built(monkeypatch, memory):
    """The pair kernel runs, then the row kernel fails to build: nothing of the first launch is merged, the whole
    call runs on the torch path with one warning; a forced ``triton`` is one error line."""
    x, y = hard_pairs(40, 12, seed=4)
    rows = {name: prepare_rows(v, DEVICE, torch.float32, memory_budget=memory) for name, v in (("x", x), ("y", y))}
    monkeypatch.setattr(kernels, "row_reduce", _fails_to_build)

    def reductions():
        return [ExpSum(T, symmetric=False, exclude_diagonal=True), Histogram(8, symmetric=False, device=DEVICE),
                RankCount(matched_similarities(rows["x"], rows["y"], tile=16)), TopK(40, 40, 3, DEVICE)]

    mine, reference = reductions(), reductions()
    seen = []
    with pytest.warns(RuntimeWarning, match=r"cannot be built .*out of resource: shared memory.*using the torch path"):
        fused.stream_fused(rows["x"], rows["y"], mine, tile=16, progress=seen.append, backend="auto")
    stream_pairs(rows["x"], rows["y"], reference, tile=16, backend="torch")
    assert mine[0].log_sum() == reference[0].log_sum() and mine[1].counts() == reference[1].counts()
    assert torch.equal(mine[2].rows, reference[2].rows) and torch.equal(mine[3].row_index, reference[3].row_index)
    assert sum(seen) == count_tiles(40, 40, 16)  # progress of the torch pass only
    with pytest.raises(InputError, match=r"^backend=triton: the fused kernels cannot be built for cpu: out of "
                                         r"resource: shared memory"):
        fused.stream_fused(rows["x"], rows["y"], reductions(), tile=16, backend="triton")
    with pytest.raises(InputError, match="cannot be built"):  # the choice stream_pairs made is what counts
        stream_pairs(rows["x"], rows["y"], reductions(), tile=16, backend="triton")


def test_fused_path_takes_tf32_only_from_an_explicit_precision(monkeypatch):
    """torch's global flags (``set_float32_matmul_precision("high")``, ``fp32_precision = "tf32"``) never reach
    the kernels; ``matmul_precision("tf32")`` (what ``measure(precision="tf32")`` uses) does, for fp32 rows only."""
    asked = []
    pair_reduce, row_reduce = kernels.pair_reduce, kernels.row_reduce

    def record(fn):
        def wrapped(*args, precision=None, **kwargs):
            asked.append(precision)
            return fn(*args, precision=precision, **kwargs)
        return wrapped

    monkeypatch.setattr(kernels, "pair_reduce", record(pair_reduce))
    monkeypatch.setattr(kernels, "row_reduce", record(row_reduce))
    x, y = hard_pairs(20, 8, seed=3)
    rx, ry = prepare_rows(x, DEVICE, torch.float32), prepare_rows(y, DEVICE, torch.float32)
    matmul = torch.backends.cuda.matmul
    previous = torch.get_float32_matmul_precision(), matmul.fp32_precision
    try:
        torch.set_float32_matmul_precision("high")
        stream_pairs(rx, None, [ExpSum(T, symmetric=True, exclude_diagonal=True)], backend="triton")
        matmul.fp32_precision = "tf32"
        stream_pairs(rx, ry, [RankCount(matched_similarities(rx, ry))], backend="triton")
        assert kernels.dot_precision(torch.float32, None) == (torch.float32, "ieee")
        assert asked == [None, None]
        with matmul_precision("tf32"):
            stream_pairs(rx, None, [ExpSum(T, symmetric=True, exclude_diagonal=True)], backend="triton")
            stream_pairs(rx, ry, [RankCount(matched_similarities(rx, ry))], backend="triton")
            half = prepare_rows(x, DEVICE, torch.float16)
            stream_pairs(half, None, [ExpSum(T, symmetric=True, exclude_diagonal=True)], backend="triton")
        assert asked == [None, None, "tf32", "tf32", None]
    finally:
        torch.set_float32_matmul_precision(previous[0])
        matmul.fp32_precision = previous[1]


# --- the compiled kernels: built for Hopper without a GPU --------------------------------------------------------

COMPILE_CHECK = textwrap.dedent("""
    import os, sys
    os.environ.pop("TRITON_INTERPRET", None)
    import triton
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource
    from embspace.kernels import triton as kernels
    assert not kernels.INTERPRET
    os.environ["TRITON_INTERPRET"] = "1"  # too late: the kernels were decorated for the compiler at import
    assert type(kernels._pair_kernel).__name__ == "JITFunction", type(kernels._pair_kernel)

    def build(fn, typed, scalars, constants, config):
        signature = {**typed, **{name: "i32" for name in scalars}, **{name: "constexpr" for name in constants}}
        signature = {name: signature[name] for name in fn.arg_names}
        aligned = [name for name in signature if signature[name].startswith("*") or name in ("dim", "stride_a",
                   "stride_b")]
        attrs = {(fn.arg_names.index(name),): [["tt.divisibility", 16]] for name in aligned}
        source = ASTSource(fn=fn, signature=signature, constexprs=constants, attrs=attrs)
        compiled = triton.compile(source, target=GPUTarget("cuda", 90, 32), options={
            "num_warps": config.num_warps, "num_stages": config.num_stages, "enable_fp_fusion": True})
        return compiled.asm["ptx"], compiled.metadata.shared

    scalars = ["n_a", "n_b", "dim", "stride_a", "stride_b", "diagonal"]
    pair, row = kernels.PAIR_CONFIG, kernels.ROW_CONFIG
    for dtype, precision, triangle, hist in [("fp16", "ieee", True, False), ("bf16", "ieee", False, True),
                                             ("fp32", "tf32", True, False)]:  # bf16: exp-sum + histograms, shifted
        typed = {"a_ptr": "*" + dtype, "b_ptr": "*" + dtype, "exp_out": "*fp64", "hist_out": "*i64",
                    "matched_out": "*i64", "bounds_ptr": "*fp32", "alpha_a_ptr": "*fp32", "beta_a_ptr": "*fp32",
                    "alpha_b_ptr": "*fp32", "beta_b_ptr": "*fp32", "n_tiles": "i64"}
        constants = dict(TRIANGLE=triangle, EXCLUDE_EQUAL=not triangle, DO_EXP=True, SHIFT=hist,
                         DO_HIST=hist, BINS=200, BINS_POW2=256, BOUNDS_POW2=256, BLOCK_M=pair.block_m,
                         BLOCK_N=pair.block_n, BLOCK_K=pair.block_k, GROUP=pair.group, PRECISION=precision, EVEN_K=True,
                         WIDEN=False)
        ptx, shared = build(kernels._pair_kernel, typed, scalars, constants, pair)
        assert "wgmma.mma_async" in ptx and "cp.async" in ptx, (dtype, "no tensor-core pipeline")
        assert 2 * shared <= 228 * 1024 or hist or dtype == "fp32", (dtype, shared)  # two programs per SM
        assert hist or "atom" not in ptx  # exp-sums are written per program, never added with atomics
    typed = {"a_ptr": "*fp16", "b_ptr": "*fp16", "matched_rows_ptr": "*fp32", "matched_cols_ptr": "*fp32",
                "rank_rows_ptr": "*i32", "rank_cols_ptr": "*i32", "top_values_ptr": "*fp32", "top_index_ptr": "*i32"}
    constants = dict(K=10, K_POW2=16, DO_TOPK=True, DO_RANK=True, COLUMN_RANKS=True, BLOCK_M=row.block_m,
                     BLOCK_N=row.block_n, BLOCK_K=row.block_k, PRECISION="ieee", EVEN_K=True, WIDEN=False)
    ptx, shared = build(kernels._row_kernel, typed, scalars, constants, row)
    assert "wgmma.mma_async" in ptx
    print("compiled")
""")


@pytest.mark.slow
def test_kernels_compile_for_hopper_without_a_gpu():
    """Every kernel lowers to sm_90 code with wgmma and a cp.async pipeline (Triton's own ptxas, no driver)."""
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    env["TRITON_DEFAULT_FP_FUSION"] = "1"
    done = subprocess.run([sys.executable, "-c", COMPILE_CHECK], capture_output=True, text=True, env=env,
                          cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))), timeout=600)
    assert done.returncode == 0 and "compiled" in done.stdout, done.stderr[-3000:]


# --- narrow cones: the fused exp-sum on centred rows keeps its accuracy --------------------------------------------


def narrow_pairs(n: int, d: int, cone: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Unit rows normalise(c + s·noise) with mean cosine ≈ ``cone`` and partners about a centre 0.3·s away."""
    rng = np.random.default_rng(seed)
    s = np.sqrt(1 / cone - 1)
    c = ref.unit(rng.normal(size=(1, d)))[0]
    gap = 0.3 * s * ref.unit(rng.normal(size=(1, d)))[0]
    return (ref.unit(c + s * rng.normal(size=(n, d)) / np.sqrt(d)),
            ref.unit(c + gap + s * rng.normal(size=(n, d)) / np.sqrt(d)))


@pytest.mark.parametrize("cone", [0.5, 0.99998])
@pytest.mark.parametrize(("precision", "bound"), [("fp32", 1e-6), ("fp16", 1e-4), ("bf16", 5e-4)])
@pytest.mark.parametrize("memory", [None, 0])
def test_fused_uniformity_of_narrow_cones_equals_float64(cone, precision, bound, memory):
    """Every variant through stream_pairs(backend="triton") on the rows measure() prepares (resident or streamed):
    relative error far inside the 1e-3 guarantee even where 1 − x̂·ŷ ≈ 2·10⁻⁵; U ≤ 0."""
    from scipy.spatial.distance import cdist, pdist
    from scipy.special import logsumexp

    from embspace.kernels.backend import resolve_precision
    from embspace.metrics.uniformity import matched_log_sum, uniformity_variants

    x, y = narrow_pairs(70, 24, cone, seed=3)
    dtype = resolve_precision(precision)
    rx, ry = (prepare_rows(v, DEVICE, dtype, memory_budget=memory) for v in (x, y))
    sums = {}
    for key, a, b in (("x", rx, None), ("y", ry, None), ("xy", rx, ry)):
        acc = ExpSum(T, symmetric=b is None, exclude_diagonal=True)
        stream_pairs(a, b, [acc], tile=32, backend="triton")
        sums[key] = acc.log_sum()
    values = uniformity_variants(sums["x"], sums["y"], sums["xy"], matched_log_sum(rx, ry, T), 70,
                                 names=("image", "text"))

    def u(d2: np.ndarray) -> float:
        return float(logsumexp(-T * d2) - np.log(len(d2)))

    ux, uy = u(pdist(x, "sqeuclidean")), u(pdist(y, "sqeuclidean"))
    expected = {"image": ux, "text": uy, "mean": (ux + uy) / 2,
                "joint": u(pdist(np.concatenate([x, y]), "sqeuclidean")),
                "cross": u(cdist(x, y, "sqeuclidean")[~np.eye(70, dtype=bool)])}
    for key, value in values.items():
        assert abs(value - expected[key]) <= bound * abs(expected[key]), (key, value, expected[key])
        assert value <= 0


def test_fused_exp_sum_takes_the_centred_terms():
    """pair_reduce with per-row terms (w, Q) sums exp(−t(Q_i + Q'_j − 2 w_i w_j a_i·b_j)) for any offsets; without
    them, exp(−t‖a_i − b_j‖²)."""
    rng = np.random.default_rng(4)
    a, b = rng.normal(size=(40, 20)) * 0.01, rng.normal(size=(35, 20)) * 0.01
    w_a, w_b = 2.0 ** rng.integers(-3, 3, size=40), 2.0 ** rng.integers(-3, 3, size=35)
    q_a, q_b = rng.uniform(0, 0.1, size=40), rng.uniform(0, 0.1, size=35)
    result = kernels.pair_reduce(torch.from_numpy(a).float().to(DEVICE), torch.from_numpy(b).float().to(DEVICE), t=T,
                                 a_terms=(torch.from_numpy(w_a), torch.from_numpy(q_a)),
                                 b_terms=(torch.from_numpy(w_b), torch.from_numpy(q_b)), config=WIDE)
    af, bf = a.astype(np.float32).astype(np.float64), b.astype(np.float32).astype(np.float64)
    d2 = q_a[:, None] + q_b[None, :] - 2 * w_a[:, None] * w_b[None, :] * (af @ bf.T)
    expected = log_sum_exp(-T * np.maximum(d2, 0).ravel())
    assert abs(result.exp_shift + np.log(result.exp_total) - expected) < 1e-6
    plain = kernels.pair_reduce(torch.from_numpy(a).float().to(DEVICE), torch.from_numpy(b).float().to(DEVICE), t=T,
                                config=WIDE)
    assert abs(plain.exp_shift + np.log(plain.exp_total) - log_sum_exp(-T * cdist_sq(af, bf).ravel())) < 1e-6


def cdist_sq(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return ((a[:, None, :] - b[None, :, :]) ** 2).sum(-1)
