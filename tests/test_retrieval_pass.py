"""The exact retrieval pass against a float64 brute force: rank counts with their ties, top-k sets from the
block-maximum candidates (ties to the lower index), whatever the tile, the precision and the thread policy; and
the thread policy's decisions."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from embspace.kernels import pairwise, threads
from embspace.kernels.blocks import TileBlocks
from embspace.kernels.grouped import BestOther
from embspace.kernels.pairwise import (
    BLOCK,
    ExpSum,
    Histogram,
    RankCount,
    TopK,
    line_candidates,
    matched_similarities,
    stream_torch,
)
from embspace.kernels.rows import prepare_rows
from embspace.spaces.neighbours import SelfNeighbours

CPU = torch.device("cpu")


def tiled_similarities(rx, ry, tile: int) -> np.ndarray:
    """The similarities as the engine's tiles round them (float64 copy), for exact comparisons."""
    out = np.empty((rx.n, ry.n))
    for r0 in range(0, rx.n, tile):
        for c0 in range(0, ry.n, tile):
            out[r0 : r0 + tile, c0 : c0 + tile] = (rx.data[r0 : r0 + tile] @ ry.data[c0 : c0 + tile].T).double()
    return out


def pairs(kind: str, n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    if kind == "duplicated":  # a few distinct rows: most similarities tie, many with the matched one
        x = rng.normal(size=(4, 8))[rng.integers(0, 4, n)]
        y = rng.normal(size=(3, 8))[rng.integers(0, 3, n)]
        return x, y
    x = rng.normal(size=(n, 16))
    return x, x + 0.8 * rng.normal(size=(n, 16))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("kind,n,tile", [("noisy", 300, 300), ("noisy", 333, 160), ("duplicated", 270, 200),
                                         ("duplicated", 150, 64)])
def test_ranks_ties_and_top_k_equal_the_brute_force(dtype, kind, n, tile):
    x, y = pairs(kind, n, seed=n)
    rx, ry = prepare_rows(x, CPU, dtype), prepare_rows(y, CPU, dtype)
    ranks, top = RankCount(matched_similarities(rx, ry, tile=tile)), TopK(n, n, 7, CPU)
    stream_torch(rx, ry, [ranks, top], tile=tile)
    sim = tiled_similarities(rx, ry, tile)
    d = ranks.matched.double().numpy()
    others = ~np.eye(n, dtype=bool)
    np.testing.assert_array_equal(ranks.rows.numpy(), ((sim > d[:, None]) & others).sum(1))
    np.testing.assert_array_equal(ranks.cols.numpy(), ((sim > d[None, :]) & others).sum(0))
    np.testing.assert_array_equal(ranks.row_ties.numpy(), ((sim == d[:, None]) & others).sum(1))
    np.testing.assert_array_equal(ranks.col_ties.numpy(), ((sim == d[None, :]) & others).sum(0))
    if kind == "duplicated":
        assert ranks.row_ties.sum() > n and ranks.col_ties.sum() > n
    rows_want = np.argsort(-sim, axis=1, kind="stable")[:, :7]  # ties to the lower index
    cols_want = np.argsort(-sim.T, axis=1, kind="stable")[:, :7]
    np.testing.assert_array_equal(top.row_index.numpy(), rows_want)
    np.testing.assert_array_equal(top.col_index.numpy().T, cols_want)
    np.testing.assert_array_equal(top.row_values.numpy(), np.take_along_axis(sim, rows_want, 1))
    np.testing.assert_array_equal(top.col_values.numpy().T, np.take_along_axis(sim.T, cols_want, 1))


def test_rank_counts_of_tiny_matched_similarities_are_exact():
    """Matched similarities below 2⁻¹⁰⁰ are compared directly (a difference could be subnormal)."""
    sim = torch.tensor([[1e-35, 2e-35, 1e-35, 0.0], [3e-36, 1e-30, -1e-38, 1e-38]], dtype=torch.float32)
    ranks = RankCount(torch.tensor([1e-35, 1e-36, 7.0, 1e-38], dtype=torch.float32))
    ranks.update(sim, 0, 0, diagonal=True)
    assert ranks.rows[:2].tolist() == [1, 1] and ranks.row_ties[:2].tolist() == [1, 0]
    assert ranks.cols.tolist() == [0, 1, 0, 0] and ranks.col_ties.tolist() == [0, 0, 0, 1]


def test_rank_count_merge_adds_the_ties():
    a, b = RankCount(torch.zeros(3)), RankCount(torch.zeros(3))
    a.row_ties += 1
    b.row_ties += 2
    b.col_ties[1] = 5
    a.merge(b)
    assert a.row_ties.tolist() == [3, 3, 3] and a.col_ties.tolist() == [0, 5, 0]


@pytest.mark.parametrize("dim", [0, 1])
def test_line_candidates_hold_every_entry_that_reaches_the_kth_value(dim):
    rng = np.random.default_rng(5)
    sim = torch.from_numpy(rng.integers(0, 4000, size=(40 * BLOCK + 5, 40 * BLOCK + 7)).astype(np.float32))
    view = sim if dim == 1 else sim.T
    found = line_candidates(TileBlocks(sim), dim, torch.full((view.shape[0],), -np.inf), 4)
    assert found is not None  # few blocks reach the bound here
    lines, positions, values = found
    kth = view.topk(4, dim=1).values[:, 3]
    want = (view >= kth[:, None]).nonzero(as_tuple=True)
    got = set(zip(lines.tolist(), positions.tolist(), strict=True))
    assert set(zip(want[0].tolist(), want[1].tolist(), strict=True)) <= got
    assert torch.equal(values, view[lines, positions])
    assert torch.equal(lines, lines.sort(stable=True).values)
    assert len(lines) < view.numel() / 8  # the bound keeps the candidates few
    flat = torch.zeros_like(sim)  # every entry equal: every block reaches, left to sorting the tile
    assert line_candidates(TileBlocks(flat), dim, torch.full((view.shape[0],), -np.inf), 4) is None


@pytest.mark.parametrize("policy", ["tiles", "pool", "fixed"])
def test_every_reduction_is_the_same_whatever_the_thread_policy(policy, monkeypatch):
    """Whole tiles on two threads at once, work items of one tile on worker threads, or everything one after the
    other: bit-identical sums, counts and tables (rank counts reading their matched similarities from the pass's
    own diagonal tiles, 3 × 3 tiles of a cross problem and 6 of a symmetric one)."""
    x, y = pairs("noisy", 260, seed=3)
    x[:40] = x[40:80]  # repeated rows: ties in the top-k and the rank counts
    rx, ry = prepare_rows(x, CPU, torch.float32), prepare_rows(y, CPU, torch.float32)

    def run(mode: str, count: int):
        monkeypatch.setenv("EMBSPACE_THREADS", "fixed" if mode == "fixed" else "pool")
        monkeypatch.setattr(threads, "PARALLEL_MIN_TILE", 16 if mode == "tiles" else 10**9)
        monkeypatch.setattr(pairwise, "run_tiles", counted)
        before = torch.get_num_threads()
        torch.set_num_threads(count)
        try:
            found = [ExpSum(2.0, symmetric=False, exclude_diagonal=True), Histogram(20, symmetric=False),
                     RankCount.from_tiles(rx, ry), TopK(260, 260, 5, CPU), BestOther(260, 260, CPU)]
            stream_torch(rx, ry, found, tile=100)
            within = [ExpSum(2.0, symmetric=True, exclude_diagonal=True), Histogram(20, symmetric=True),
                      SelfNeighbours(260, 7, CPU)]
            stream_torch(rx, None, within, tile=100)
        finally:
            torch.set_num_threads(before)
        return found + within

    parallel_passes = []

    def counted(*args, **kwargs):
        parallel_passes.append(1)
        return threads.run_tiles(*args, **kwargs)

    before = torch.get_num_threads()
    serial, other = run("fixed", 1), run(policy, 2)
    assert torch.get_num_threads() == before  # the pass restores torch's setting
    assert len(parallel_passes) == (2 if policy == "tiles" else 0)  # the path under test was the one taken
    for a, b in zip(serial, other, strict=True):
        if isinstance(a, ExpSum):
            assert (a.shift, a.total) == (b.shift, b.total)
        elif isinstance(a, Histogram):
            assert a.counts() == b.counts()
        elif isinstance(a, BestOther):
            assert torch.equal(a.rows, b.rows) and torch.equal(a.cols, b.cols)
        elif isinstance(a, SelfNeighbours):
            assert torch.equal(a.neighbours(), b.neighbours())
        elif isinstance(a, RankCount):
            for name in ("rows", "cols", "row_ties", "col_ties"):
                assert torch.equal(getattr(a, name), getattr(b, name))
        else:
            for name in ("row_values", "row_index", "col_values", "col_index"):
                assert torch.equal(getattr(a, name), getattr(b, name))


@pytest.mark.parametrize("dim", [0, 1])
@pytest.mark.parametrize("spread", [3, 400])  # few levels: most blocks reach (the direct pass); many: few do
def test_block_counts_equal_a_brute_force_count(dim, spread):
    """#{entries > t} and #{entries == t} per line, from the blocks that reach t, against numpy's count."""
    rng = np.random.default_rng(spread)
    sim = torch.from_numpy(rng.integers(0, spread, size=(20 * BLOCK + 5, 24 * BLOCK + 9)).astype(np.float32))
    view = sim.numpy() if dim == 1 else sim.numpy().T
    bound = torch.from_numpy(np.sort(view, axis=1)[:, -3].copy())  # the 3rd largest of each line: ties included
    found = TileBlocks(sim).counts_at_least(dim, bound)
    if spread == 3:
        assert found is None  # every block reaches: left to the direct pass
        return
    assert found is not None
    above, ties = found
    assert above.tolist() == (view > bound.numpy()[:, None]).sum(1).tolist()
    assert ties.tolist() == (view == bound.numpy()[:, None]).sum(1).tolist()


@pytest.mark.parametrize("tile", [37, 64, 100])
def test_rank_counts_through_shared_blocks_equal_a_float64_brute_force(tile):
    """Partners that rank near the top (few blocks reach them) with exact ties: the counts of a whole pass."""
    rng = np.random.default_rng(tile)
    x = rng.integers(-2, 3, size=(150, 8)).astype(np.float64)  # a few distinct rows per direction: many ties
    x[:, 0] = 3
    y = x + rng.integers(-1, 2, size=x.shape)
    y[:20] = y[0]  # a partner that ties with 19 others
    rx, ry = prepare_rows(x, CPU, torch.float32), prepare_rows(y, CPU, torch.float32)
    rank = RankCount(matched_similarities(rx, ry, tile=tile))
    stream_torch(rx, ry, [rank], tile=tile)
    s = tiled_similarities(rx, ry, tile)
    d = np.diag(s)
    off = ~np.eye(150, dtype=bool)
    assert rank.rows.tolist() == ((s > d[:, None]) & off).sum(1).tolist()
    assert rank.row_ties.tolist() == ((s == d[:, None]) & off).sum(1).tolist()
    assert rank.cols.tolist() == ((s > d[None, :]) & off).sum(0).tolist()
    assert rank.col_ties.tolist() == ((s == d[None, :]) & off).sum(0).tolist()
