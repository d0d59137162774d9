"""Fused Triton kernels for the pairwise engine: tiles of A·Bᵀ reduced in registers, never written to memory.

Two kernels cover every reduction of :mod:`embspace.kernels.pairwise`:

- :func:`pair_reduce` (``_pair_kernel``) visits the tiles of A·Bᵀ in a persistent, L2-grouped order — only the
  tiles on and above the block diagonal when A is B (``triangle=True``; the diagonal tile is masked to i < j) — and
  folds each tile, still in registers, into per-program results:

  * the uniformity sum (Wang & Isola 2020) Σ exp(−t‖a − b‖²) = Σ 2^z, z = α_i α_j (a_i·b_j) + β_i + β_j ≤ 0 with
    per-row α = w·√(2t·log₂e), β = −t·log₂e·Q: the squared distance Q_i + Q'_j − 2w_i w_j (a_i·b_j) of rows
    written about centres (the engine passes the centred, scaled offsets and their terms, so that narrow cones
    keep their precision; plain unit rows with w = 1, Q = ‖a‖² give 2t(s − 1)); terms near 1 are summed as
    1 + expm1 (:func:`_exp_sum`), per tile in float32 and over tiles in float64 (with a running log-shift when
    4t > 80, where float32 would underflow);
  * similarity histograms with ``numpy.histogram``'s bins over [−1, 1], the same bins as
    :class:`~embspace.kernels.pairwise.Histogram` gives (each float32 value is compared with the float32 bounds of
    the float64 edges: :func:`float32_bounds`), counted per tile with ``tl.histogram`` and added to the program's
    own row of int64 counts; true pairs (global i = j) are counted apart.

  Each program writes its partial results to a small buffer (programs × 2 floats, programs × bins counts); the
  host adds them in float64 / int64.
- :func:`row_reduce` (``_row_kernel``) gives each program a block of rows of A and streams every column tile of
  B past it, keeping in registers the k largest similarities of each row (a k-slot buffer: each tile's values that
  beat the row's current k-th best are inserted one by one, the largest first) and the rank count
  #{j ≠ i : s_ij > d_i} of recall (recall@k = mean(rank < k), CLIP benchmarks); column rank counts
  #{i ≠ j : s_ij > d_j} are added with atomics. The column side of top-k (the k-occurrence of hubness, Radovanović
  et al. 2010) is the same kernel on B·Aᵀ.

Precision: the tile product is ``tl.dot`` with float32 accumulation. fp16 / bf16 rows are multiplied as they are
(for unit vectors fp16 is the more accurate of the two: 10 mantissa bits against 7, and no value exceeds 1); fp32
rows use ``input_precision="ieee"`` unless tf32 is asked for explicitly (``precision="tf32"``; torch's global
matmul flags are never read) — Triton's default tf32 dot on fp32 input is biased by ~3e-3 in uniformity
(METHODS.md). The exponent is clamped to ≤ 0, so it never overflows.

Launches and the buffers they write go to the device holding the rows (Triton takes device and stream from the
current CUDA device, so every launch runs under ``torch.cuda.device(rows.device)``).

The module is imported only where it can run: on a CUDA device, or on the CPU under Triton's interpreter.
``TRITON_INTERPRET=1`` must be in the environment before Triton is first imported (``triton.jit`` picks the
interpreter when a function is decorated, ``triton.language``'s own helpers are decorated at its import) and still
at the first launch; :data:`INTERPRET` records what was in effect when this module was imported.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch
import triton
import triton.language as tl

INTERPRET = bool(triton.knobs.runtime.interpret)  # fixed at import: triton.jit chose interpreter or compiler then
LOG2E = 1.0 / math.log(2.0)
UNDERFLOW_SAFE_EXPONENT = 80.0  # as in pairwise.ExpSum: below e^−80 float32 sums start to lose terms
FUSED_DTYPES = (torch.float16, torch.bfloat16, torch.float32)
PRECISION_DTYPES = {"fp16": torch.float16, "bf16": torch.bfloat16, "fp32": torch.float32, "tf32": torch.float32}
MAX_TOPK = 64  # the k-slot register buffer holds at most this many neighbours per row
MAX_BINS = 4096  # histograms wider than this take the torch path (the per-tile bin table lives in registers)
BUILD_ERRORS = (triton.runtime.errors.OutOfResources, triton.runtime.errors.PTXASError,
                triton.compiler.errors.CompilationError)  # a kernel that cannot be built for this device


@dataclass(frozen=True)
class Config:
    """Tile shape and launch settings of one kernel.

    block_m × block_n is the tile of A·Bᵀ one program holds in registers, block_k the slice of D loaded per step;
    group is the number of column blocks visited together (L2 reuse of the row blocks); programs_per_sm sets the
    persistent grid of the pair kernel.
    """

    block_m: int = 128
    block_n: int = 128
    block_k: int = 64
    group: int = 8
    num_warps: int = 8
    num_stages: int = 3
    programs_per_sm: int = 2


# sm_90 builds (Triton 3.9's PTX through its ptxas -v; docs/gpu.md): the fp16/bf16 exp-sum-only pair kernel takes
# 121 registers and 96 KiB of shared memory at 3 stages, so two programs share an SM; with 200-bin histograms it
# takes 255 registers and spills 88–128 B per thread (one program per SM); fp32 (ieee) 254 registers and 128 KiB.
PAIR_CONFIG = Config()  # 128×128 fp32 tile
# k = 10: 8 warps hold the 64×128 tile and the k-slot buffers in 182 registers without spills for fp16 rows (4 warps:
# 255 registers, 72 B of spills) and spill 16 B for fp32 rows (4 warps: 884 B).
ROW_CONFIG = Config(block_m=64, block_n=128, block_k=64, num_warps=8, num_stages=3)
INTERPRET_CONFIG = Config(block_m=32, block_n=32, block_k=32, group=2, num_warps=1, num_stages=1)
INTERPRET_PROGRAMS = 3  # a few persistent programs, so that each one loops over several tiles


# ---------------------------------------------------------------------------------------------------------------
# device code


@triton.jit
def _triangle_root(p):
    """The largest m with m(m+1)/2 ≤ p (p ≥ 0, int64): the column of upper-triangle tile p in column-major order."""
    m = ((tl.sqrt((8 * p + 1).to(tl.float64)) - 1.0) * 0.5).to(tl.int64)
    m = tl.where((m + 1) * (m + 2) // 2 <= p, m + 1, m)
    m = tl.where(m * (m + 1) // 2 > p, m - 1, m)
    return m


@triton.jit
def _tile_position(p, n_row_blocks, n_col_blocks, TRIANGLE: tl.constexpr, GROUP: tl.constexpr):
    """(row block, column block) of the p-th tile in grouped order.

    Column blocks are taken GROUP at a time; within a group the tiles go row block by row block, so the
    programs running together read a few row blocks and a few column blocks, which stay in L2. With TRIANGLE only
    the tiles with row block ≤ column block exist; the first m column blocks hold m(m+1)/2 of them.
    """
    if TRIANGLE:
        first = (_triangle_root(p) // GROUP) * GROUP
        width = tl.minimum(n_col_blocks - first, GROUP)
        q = p - first * (first + 1) // 2
        q2 = tl.maximum(q - first * width, 0)  # index inside the group's own small triangle
        c = _triangle_root(q2)
        above = q < first * width
        row_block = tl.where(above, q // width, first + q2 - c * (c + 1) // 2)
        col_block = tl.where(above, first + q % width, first + c)
    else:
        first = (p // (GROUP * n_row_blocks)) * GROUP
        width = tl.minimum(n_col_blocks - first, GROUP)
        q = p - first * n_row_blocks
        row_block = q // width
        col_block = first + q % width
    return row_block, col_block


@triton.jit
def _needs_mask(row_block, col_block, n_a, n_b, diagonal, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr):
    """Whether a tile reaches past the last row or column, or holds pairs with global i = j."""
    r0 = row_block * BLOCK_M
    c0 = col_block * BLOCK_N + diagonal  # first global column
    edge = (r0 + BLOCK_M > n_a) | (col_block * BLOCK_N + BLOCK_N > n_b)
    return edge | ((r0 < c0 + BLOCK_N) & (c0 < r0 + BLOCK_M))


@triton.jit
def _tile_product(a_ptr, b_ptr, rows, cols, n_a, n_b, dim, stride_a, stride_b,
                  BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr,
                  PRECISION: tl.constexpr, EVEN_K: tl.constexpr, WIDEN: tl.constexpr):
    """S = A[rows] · B[cols]ᵀ, (BLOCK_M, BLOCK_N) float32, accumulated over D in BLOCK_K slices.

    WIDEN (interpreter only): bfloat16 operands are widened to float32 first (its dot multiplies bfloat16's raw bits);
    products of bfloat16 values are exact in float32, so this is what the tensor cores compute.
    """
    acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
    ks = tl.arange(0, BLOCK_K)
    a_rows = a_ptr + rows.to(tl.int64)[:, None] * stride_a  # (BLOCK_M, 1) row starts
    b_rows = b_ptr + cols.to(tl.int64)[:, None] * stride_b  # (BLOCK_N, 1)
    row_in, col_in = rows[:, None] < n_a, cols[:, None] < n_b
    for k0 in range(0, dim, BLOCK_K):
        k = k0 + ks
        if EVEN_K:
            a = tl.load(a_rows + k[None, :], mask=row_in, other=0.0)  # (BLOCK_M, BLOCK_K)
            b = tl.load(b_rows + k[None, :], mask=col_in, other=0.0)  # (BLOCK_N, BLOCK_K)
        else:
            a = tl.load(a_rows + k[None, :], mask=row_in & (k[None, :] < dim), other=0.0)
            b = tl.load(b_rows + k[None, :], mask=col_in & (k[None, :] < dim), other=0.0)
        if WIDEN:
            a, b = a.to(tl.float32), b.to(tl.float32)
        acc = tl.dot(a, tl.trans(b), acc, input_precision=PRECISION)
    return acc


@triton.jit
def _histogram_bins(s, bounds, BINS: tl.constexpr):
    """numpy.histogram's bin (int32) of every float32 similarity over [−1, 1], as pairwise.Histogram._count gives it.

    ``bounds`` (in registers) holds, for each of numpy's float64 edges, the smallest float32 not below it (+inf past
    the last edge), so that for a float32 value c, ``c < edge`` ⇔ ``c < bound`` exactly. The bin first guessed
    from ⌊(c + 1)·bins/2⌋ (off by at most one near an edge) is settled by the two bounds around it.
    """
    c = tl.minimum(tl.maximum(s, -1.0), 1.0)
    k = tl.minimum(tl.maximum(tl.floor((c + 1.0) * (BINS * 0.5)).to(tl.int32), 0), BINS - 1)
    k = k - (c < tl.gather(bounds, k, 0)).to(tl.int32)
    k = k + (c >= tl.gather(bounds, k + 1, 0)).to(tl.int32)
    return tl.minimum(tl.maximum(k, 0), BINS - 1)


@triton.jit
def _exp_sum(z, keep):
    """Σ 2^z over the kept entries of a tile, float64, accurate when every 2^z lies near 1 (narrow cones).

    Terms with z·ln2 > −⅛ are written 1 + expm1(z·ln2), expm1 by its degree-6 Taylor polynomial (truncation below
    5·10⁻¹⁰ of expm1); their count is exact and their expm1 values are small, so what the sum holds beyond the
    count keeps float32's relative precision (2^z itself, ~1 − 10⁻⁵, would keep 10⁻⁷ of 1: 1 % of U at cone
    0.99999). The other terms are taken as 2^z (hardware ex2). Both are summed over the tile in one float32 tree
    (the expm1 parts are negative, the others positive: no term is near the other's magnitude when it matters),
    then added in float64 to the exact count.
    """
    y = z * 0.6931471805599453  # natural units
    near = y > -0.125
    m1 = y * (1.0 + y * (0.5 + y * (1.0 / 6 + y * (1.0 / 24 + y * (1.0 / 120 + y * (1.0 / 720))))))
    part = tl.where(keep, tl.where(near, m1, tl.exp2(z)), 0.0)  # expm1 near 1, the exponential itself elsewhere
    near_count = tl.sum(tl.sum((keep & near).to(tl.int32), axis=1), axis=0)
    return near_count.to(tl.float64) + tl.sum(tl.sum(part, axis=1), axis=0).to(tl.float64)


@triton.jit
def _pair_kernel(a_ptr, b_ptr, n_a, n_b, dim, stride_a, stride_b, diagonal, n_tiles,
                 exp_out, hist_out, matched_out, bounds_ptr, alpha_a_ptr, beta_a_ptr, alpha_b_ptr, beta_b_ptr,
                 TRIANGLE: tl.constexpr, EXCLUDE_EQUAL: tl.constexpr, DO_EXP: tl.constexpr, SHIFT: tl.constexpr,
                 DO_HIST: tl.constexpr, BINS: tl.constexpr, BINS_POW2: tl.constexpr, BOUNDS_POW2: tl.constexpr,
                 BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr, GROUP: tl.constexpr,
                 PRECISION: tl.constexpr, EVEN_K: tl.constexpr, WIDEN: tl.constexpr):
    """Persistent program: its share of the tiles of A·Bᵀ folded into an exp-sum and histograms.

    Global row i = local row, global column j = local column + ``diagonal``; pairs with i = j are the true pairs
    (a cross problem) or the self-pairs (TRIANGLE, where only i < j counts).
    """
    pid = tl.program_id(0)
    programs = tl.num_programs(0)
    n_row_blocks = tl.cdiv(n_a, BLOCK_M)
    n_col_blocks = tl.cdiv(n_b, BLOCK_N)
    total = tl.zeros((1,), dtype=tl.float64)  # Σ 2^(z − shift) over this program's pairs
    shift = tl.zeros((1,), dtype=tl.float32)  # log₂ scale of total (stays 0 unless SHIFT)
    if SHIFT:
        shift = shift - float("inf")
    bins = tl.arange(0, BINS_POW2)
    if DO_HIST:
        bounds = tl.load(bounds_ptr + tl.arange(0, BOUNDS_POW2))  # (BOUNDS_POW2,) float32 bin edges
    n_mine = tl.cdiv(n_tiles - pid, programs)
    for step in range(0, n_mine):
        p = tl.cast(pid, tl.int64) + tl.cast(step, tl.int64) * programs
        row_block, col_block = _tile_position(p, n_row_blocks, n_col_blocks, TRIANGLE, GROUP)
        rows = row_block * BLOCK_M + tl.arange(0, BLOCK_M)  # (BLOCK_M,) int64
        cols = col_block * BLOCK_N + tl.arange(0, BLOCK_N)  # (BLOCK_N,)
        s = _tile_product(a_ptr, b_ptr, rows, cols, n_a, n_b, dim, stride_a, stride_b,
                          BLOCK_M, BLOCK_N, BLOCK_K, PRECISION, EVEN_K, WIDEN)  # (BLOCK_M, BLOCK_N) float32
        valid = (rows[:, None] < n_a) & (cols[None, :] < n_b)
        same = rows[:, None] == cols[None, :] + diagonal  # global i = j
        if TRIANGLE:
            valid = valid & (rows[:, None] < cols[None, :])
        if DO_EXP:
            keep = valid
            if EXCLUDE_EQUAL:
                keep = valid & ~same
            alpha_r = tl.load(alpha_a_ptr + rows, mask=rows < n_a, other=0.0)  # (BLOCK_M,) w_i·√(2t·log₂e)
            beta_r = tl.load(beta_a_ptr + rows, mask=rows < n_a, other=0.0)  # (BLOCK_M,) −t·log₂e·Q_i
            alpha_c = tl.load(alpha_b_ptr + cols, mask=cols < n_b, other=0.0)  # (BLOCK_N,)
            beta_c = tl.load(beta_b_ptr + cols, mask=cols < n_b, other=0.0)  # (BLOCK_N,)
            # −t‖a − b‖²·log₂e = 2t·log₂e·w_i w_j (v_i·v_j) − t·log₂e·(Q_i + Q'_j), never above 0
            z = tl.minimum(s * alpha_r[:, None] * alpha_c[None, :] + beta_r[:, None] + beta_c[None, :], 0.0)
            if SHIFT:
                z = tl.where(keep, z, -float("inf"))
                tile_max = tl.max(tl.max(z, axis=1), axis=0)
                tile_sum = _exp_sum(z - tile_max, keep)  # float64
                new_shift = tl.maximum(shift, tile_max)
                old_scale = tl.where(shift == new_shift, 1.0, tl.exp2(shift - new_shift))
                tile_scale = tl.where(tile_max == new_shift, 1.0, tl.exp2(tile_max - new_shift))
                total = tl.where(tile_max > -float("inf"),
                                 total * old_scale.to(tl.float64) + tile_sum * tile_scale.to(tl.float64), total)
                shift = new_shift
            else:
                total += _exp_sum(z, keep)
        if DO_HIST:  # each program adds its tiles' counts to its own row of the output (atomics: no contention)
            k = _histogram_bins(tl.reshape(s, (BLOCK_M * BLOCK_N,)), bounds, BINS)
            if TRIANGLE:
                tile_counts = tl.histogram(k, BINS_POW2, mask=tl.reshape(valid, (BLOCK_M * BLOCK_N,)))
                tl.atomic_add(hist_out + pid * BINS_POW2 + bins, tile_counts.to(tl.int64), mask=tile_counts > 0)
            else:
                tile_counts = tl.histogram(k, BINS_POW2, mask=tl.reshape(valid & ~same, (BLOCK_M * BLOCK_N,)))
                tl.atomic_add(hist_out + pid * BINS_POW2 + bins, tile_counts.to(tl.int64), mask=tile_counts > 0)
                if _needs_mask(row_block, col_block, n_a, n_b, diagonal, BLOCK_M, BLOCK_N):
                    tile_counts = tl.histogram(k, BINS_POW2, mask=tl.reshape(valid & same, (BLOCK_M * BLOCK_N,)))
                    tl.atomic_add(matched_out + pid * BINS_POW2 + bins, tile_counts.to(tl.int64),
                                  mask=tile_counts > 0)
    if DO_EXP:
        one = tl.arange(0, 1)
        tl.store(exp_out + 2 * pid + one, shift.to(tl.float64))
        tl.store(exp_out + 2 * pid + 1 + one, total)


@triton.jit
def _row_kernel(a_ptr, b_ptr, n_a, n_b, dim, stride_a, stride_b, diagonal,
                matched_rows_ptr, matched_cols_ptr, rank_rows_ptr, rank_cols_ptr, tie_rows_ptr, tie_cols_ptr,
                top_values_ptr, top_index_ptr, K: tl.constexpr, K_POW2: tl.constexpr, DO_TOPK: tl.constexpr,
                DO_RANK: tl.constexpr,
                COLUMN_RANKS: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr,
                PRECISION: tl.constexpr, EVEN_K: tl.constexpr, WIDEN: tl.constexpr):
    """One block of rows of A against every column of B: top-k and rank counts held in registers.

    Global row i = local row, global column j = local column + ``diagonal``; the true partner of row i is j = i.
    """
    pid = tl.program_id(0)
    rows = pid * BLOCK_M + tl.arange(0, BLOCK_M)  # (BLOCK_M,)
    row_in = rows < n_a
    slot = tl.arange(0, K_POW2)  # (K_POW2,) slots ≥ K hold +inf and are never replaced
    best = tl.where(slot[None, :] < K, -float("inf"), float("inf")) + tl.zeros((BLOCK_M, K_POW2), tl.float32)
    best_index = tl.full((BLOCK_M, K_POW2), -1, tl.int32)
    ranks = tl.zeros((BLOCK_M,), dtype=tl.int32)
    ties = tl.zeros((BLOCK_M,), dtype=tl.int32)
    if DO_RANK:
        d_rows = tl.load(matched_rows_ptr + rows, mask=row_in, other=float("inf"))  # (BLOCK_M,)
    local = tl.arange(0, BLOCK_N)
    for c0 in range(0, n_b, BLOCK_N):
        cols = c0 + local  # (BLOCK_N,)
        col_in = cols < n_b
        s = _tile_product(a_ptr, b_ptr, rows, cols, n_a, n_b, dim, stride_a, stride_b,
                          BLOCK_M, BLOCK_N, BLOCK_K, PRECISION, EVEN_K, WIDEN)  # (BLOCK_M, BLOCK_N) float32
        valid = row_in[:, None] & col_in[None, :]
        if DO_RANK:
            others = valid & (rows[:, None] != cols[None, :] + diagonal)
            ranks += tl.sum(((s > d_rows[:, None]) & others).to(tl.int32), axis=1)
            ties += tl.sum(((s == d_rows[:, None]) & others).to(tl.int32), axis=1)
            if COLUMN_RANKS:
                d_cols = tl.load(matched_cols_ptr + cols, mask=col_in, other=float("inf"))  # (BLOCK_N,)
                beaten = tl.sum(((s > d_cols[None, :]) & others).to(tl.int32), axis=0)
                tl.atomic_add(rank_cols_ptr + cols, beaten, mask=col_in & (beaten > 0))
                level = tl.sum(((s == d_cols[None, :]) & others).to(tl.int32), axis=0)
                tl.atomic_add(tie_cols_ptr + cols, level, mask=col_in & (level > 0))
        if DO_TOPK:
            threshold = tl.min(best, axis=1)  # (BLOCK_M,) current k-th best of each row
            candidate = tl.where(valid & (s > threshold[:, None]), s, -float("inf"))
            n_new = tl.max(tl.minimum(tl.sum((candidate > -float("inf")).to(tl.int32), axis=1), K), axis=0)
            for _ in range(0, n_new):
                value, where = tl.max(candidate, axis=1, return_indices=True)  # (BLOCK_M,) largest left
                worst, worst_slot = tl.min(best, axis=1, return_indices=True)
                put = (slot[None, :] == worst_slot[:, None]) & (value > worst)[:, None]
                best = tl.where(put, value[:, None], best)
                best_index = tl.where(put, (c0 + where)[:, None], best_index)
                candidate = tl.where(local[None, :] == where[:, None], -float("inf"), candidate)
    if DO_RANK:
        tl.store(rank_rows_ptr + rows, ranks, mask=row_in)
        tl.store(tie_rows_ptr + rows, ties, mask=row_in)
    if DO_TOPK:
        out = rows.to(tl.int64)[:, None] * K + slot[None, :]
        keep = row_in[:, None] & (slot[None, :] < K)
        tl.store(top_values_ptr + out, best, mask=keep)
        tl.store(top_index_ptr + out, best_index, mask=keep)


# ---------------------------------------------------------------------------------------------------------------
# host side


@dataclass
class PairResult:
    """What one :func:`pair_reduce` call found: an exp-sum as (shift, total) and histogram counts.

    ``exp_shift + log(exp_total)`` is log Σ exp(2t(s − 1)) over the counted pairs (natural log, float64).
    """

    exp_shift: float = 0.0
    exp_total: float = 0.0
    counts: torch.Tensor | None = None  # (bins,) int64: pairs i ≠ j (cross) or i < j (triangle)
    matched: torch.Tensor | None = None  # (bins,) int64: pairs i = j (cross only)


@dataclass
class RowResult:
    """What one :func:`row_reduce` call found for the rows of A (indices are local columns of B)."""

    top_values: torch.Tensor | None = None  # (n_a, k) float32, unordered; −inf / −1 in unfilled slots
    top_index: torch.Tensor | None = None  # (n_a, k) int64
    rank_rows: torch.Tensor | None = None  # (n_a,) int64: #{j ≠ i : s_ij > d_i}
    rank_cols: torch.Tensor | None = None  # (n_b,) int64: #{i ≠ j : s_ij > d_j}
    tie_rows: torch.Tensor | None = None  # (n_a,) int64: #{j ≠ i : s_ij = d_i}
    tie_cols: torch.Tensor | None = None  # (n_b,) int64: #{i ≠ j : s_ij = d_j}


def dot_precision(dtype: torch.dtype, precision: str | None) -> tuple[torch.dtype, str]:
    """The storage dtype of the tiles and ``tl.dot``'s input precision.

    ``precision=None`` follows the rows: fp16 / bf16 as stored, float32 in IEEE fp32. tf32 only when asked for
    (``precision="tf32"``): torch's global flags (``allow_tf32``, ``fp32_precision``,
    ``set_float32_matmul_precision``) are never read, so user code cannot switch these kernels to tf32 silently.
    """
    if precision is None:
        if dtype not in FUSED_DTYPES:
            raise ValueError(f"the fused kernels take float16, bfloat16 or float32 rows, not {dtype}")
        return dtype, "ieee"
    if precision not in PRECISION_DTYPES:
        raise ValueError(f"unknown precision {precision!r}; choose one of {', '.join(PRECISION_DTYPES)}")
    return PRECISION_DTYPES[precision], "tf32" if precision == "tf32" else "ieee"


def _operands(a: torch.Tensor, b: torch.Tensor, precision: str | None) -> tuple[torch.Tensor, torch.Tensor, str]:
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1]:
        raise ValueError(f"need two (N, D) matrices of the same D, got {tuple(a.shape)} and {tuple(b.shape)}")
    if a.device != b.device:
        raise ValueError(f"rows on {a.device} and {b.device}")
    if a.device.type != "cuda" and not INTERPRET:
        raise ValueError("the fused kernels need a CUDA device (or TRITON_INTERPRET=1 before import, on the CPU)")
    dtype, dot_input = dot_precision(a.dtype, precision)
    same = a is b
    a = a.to(dtype).contiguous()
    return a, (a if same else b.to(dtype).contiguous()), dot_input


@contextlib.contextmanager
def _on_device(device: torch.device) -> Iterator[None]:
    """Make ``device`` the current CUDA device (Triton launches on the current one); nothing on the CPU."""
    if device.type != "cuda":
        yield
        return
    with torch.cuda.device(device):
        yield


def _programs(device: torch.device, tiles: int, config: Config) -> int:
    if INTERPRET:
        return max(1, min(tiles, INTERPRET_PROGRAMS))
    sms = torch.cuda.get_device_properties(device).multi_processor_count
    return max(1, min(tiles, sms * config.programs_per_sm))


def default_config(kind: str) -> Config:
    """The tile configuration used when none is given: ``kind`` is ``"pair"`` or ``"row"``."""
    if INTERPRET:
        return INTERPRET_CONFIG
    return PAIR_CONFIG if kind == "pair" else ROW_CONFIG


def pair_reduce(
    a: torch.Tensor,
    b: torch.Tensor,
    *,
    diagonal: int = 0,
    triangle: bool = False,
    t: float | None = None,
    exclude_equal: bool = False,
    bins: int | None = None,
    precision: str | None = None,
    config: Config | None = None,
    a_terms: tuple[torch.Tensor, torch.Tensor] | None = None,
    b_terms: tuple[torch.Tensor, torch.Tensor] | None = None,
) -> PairResult:
    """Exp-sum and/or histograms of the similarities s_ij = a_i·b_j, in one pass over fused tiles.

    Args:
        a, b: (N, D) and (M, D) unit rows. Global row i is a's row i, global column j is b's row j − ``diagonal``
            (``diagonal`` = column offset − row offset of the two blocks), so i = j marks true or self pairs.
        triangle: a is b and ``diagonal`` = 0: only pairs i < j, each once (upper-triangle tiles only).
        t: if given, Σ exp(−t·d²_ij) (Wang & Isola 2020) over the counted pairs, with
            d²_ij = Q_i + Q'_j − 2 w_i w'_j (a_i·b_j) from ``a_terms = (w, Q)`` and ``b_terms = (w', Q')`` ((N,) and
            (M,) float64; :func:`embspace.kernels.pairwise.distance_terms`): the squared distance of two rows written
            about centres, a_i and b_j their scaled offsets (:class:`~embspace.kernels.rows.CentredBlock`). Without
            them w = 1 and Q = ‖a_i‖² of the rows as cast: d² = ‖a_i − b_j‖², for unit rows 2 − 2s. The exponent is
            clamped to ≤ 0.
        exclude_equal: leave the pairs i = j out of the exp-sum (cross uniformity).
        bins: if given (1 to :data:`MAX_BINS`), counts of s in ``bins`` equal bins over [−1, 1] with
            numpy.histogram's edges; pairs i = j of a non-triangle problem are counted in ``matched``, the others in
            ``counts``.
        precision: ``None`` (follow a's dtype), ``"fp16"``, ``"bf16"``, ``"fp32"`` or ``"tf32"``.
    """
    a, b, dot_input = _operands(a, b, precision)
    if triangle and (a.shape[0] != b.shape[0] or diagonal != 0):
        raise ValueError("triangle=True needs a square problem on the diagonal (a is b, diagonal = 0)")
    if bins is not None and not 1 <= bins <= MAX_BINS:
        raise ValueError(f"the fused histograms take 1 to {MAX_BINS} bins, not {bins}")
    config = config or default_config("pair")
    if triangle and config.block_m != config.block_n:
        raise ValueError("triangle=True needs square tiles (block_m = block_n)")
    n_a, n_b, dim = a.shape[0], b.shape[0], a.shape[1]
    blocks_r, blocks_c = -(-n_a // config.block_m), -(-n_b // config.block_n)
    tiles = blocks_r * (blocks_r + 1) // 2 if triangle else blocks_r * blocks_c
    with _on_device(a.device):
        programs = _programs(a.device, tiles, config)
        bins_pow2 = triton.next_power_of_2(bins) if bins else 1
        exp_out = torch.zeros((programs, 2), dtype=torch.float64, device=a.device)  # (P, [shift, total])
        hist_out = torch.zeros((programs, bins_pow2), dtype=torch.int64, device=a.device)  # (P, bins_pow2)
        matched_out = torch.zeros_like(hist_out)
        bounds = float32_bounds(bins or 1)
        shift = t is not None and 4 * t > UNDERFLOW_SAFE_EXPONENT
        alpha_a, beta_a = _exp_terms(a, a_terms, t)
        alpha_b, beta_b = (alpha_a, beta_a) if b is a and b_terms is None else _exp_terms(b, b_terms, t)
        _pair_kernel[(programs,)](
            a, b, n_a, n_b, dim, a.stride(0), b.stride(0), diagonal, tiles,
            exp_out, hist_out, matched_out, torch.from_numpy(bounds).to(a.device), alpha_a, beta_a, alpha_b, beta_b,
            TRIANGLE=triangle, EXCLUDE_EQUAL=exclude_equal, DO_EXP=t is not None, SHIFT=shift,
            DO_HIST=bins is not None, BINS=bins or 1, BINS_POW2=bins_pow2, BOUNDS_POW2=len(bounds),
            BLOCK_M=config.block_m, BLOCK_N=config.block_n, BLOCK_K=config.block_k, GROUP=config.group,
            PRECISION=dot_input, EVEN_K=dim % config.block_k == 0, WIDEN=INTERPRET and a.dtype == torch.bfloat16,
            num_warps=config.num_warps, num_stages=config.num_stages, enable_fp_fusion=True)
    result = PairResult()
    if t is not None:
        result.exp_shift, result.exp_total = _merge_exp(exp_out.cpu())
    if bins is not None:
        result.counts = hist_out.sum(0)[:bins]
        if not triangle:
            result.matched = matched_out.sum(0)[:bins]
    return result


def _exp_terms(rows: torch.Tensor, terms: tuple[torch.Tensor, torch.Tensor] | None,
               t: float | None) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-row α = w·√(2t·log₂e) and β = −t·log₂e·Q (float32 on the rows' device) of the kernel's exponent
    α_i α_j (a_i·b_j) + β_i + β_j = −t·d²_ij·log₂e; w = 1, Q = ‖a_i‖² when no terms are given."""
    if t is None:
        empty = torch.zeros(1, dtype=torch.float32, device=rows.device)
        return empty, empty
    if terms is None:
        scale = torch.ones(len(rows), dtype=torch.float64, device=rows.device)
        sq_norm = rows.double().pow(2).sum(1)  # (N,)
    else:
        scale, sq_norm = (v.to(rows.device, torch.float64) for v in terms)
    alpha = (scale * math.sqrt(2 * t * LOG2E)).float().contiguous()  # (N,)
    beta = (sq_norm * (-t * LOG2E)).float().contiguous()  # (N,)
    return alpha, beta


def float32_bounds(bins: int) -> np.ndarray:
    """For numpy.histogram's edges over [−1, 1], the smallest float32 ≥ each edge, +inf after the last.

    A float32 similarity lies below an edge exactly when it lies below that bound, so the kernel bins float32
    values as numpy bins them against the float64 edges, without float64 arithmetic. Length: a power of two.
    """
    edges = np.linspace(-1.0, 1.0, bins + 1)  # numpy.histogram's edges, float64
    bounds = edges.astype(np.float32)
    below = bounds.astype(np.float64) < edges
    bounds[below] = np.nextafter(bounds[below], np.float32(np.inf))
    table = np.full(triton.next_power_of_2(bins + 2), np.inf, dtype=np.float32)  # (≥ bins + 2,)
    table[: bins + 1] = bounds
    return table


def _merge_exp(partials: torch.Tensor) -> tuple[float, float]:
    """Per-program (log₂ shift, total) pairs → one (natural-log shift, total), in float64."""
    shifts, totals = partials[:, 0], partials[:, 1]  # (P,), (P,)
    present = totals > 0
    if not bool(present.any()):
        return 0.0, 0.0
    top = float(shifts[present].max())
    total = float((totals[present] * torch.exp2(shifts[present] - top)).sum())
    return top * math.log(2.0), total


def row_reduce(
    a: torch.Tensor,
    b: torch.Tensor,
    *,
    diagonal: int = 0,
    k: int = 0,
    matched_rows: torch.Tensor | None = None,
    matched_cols: torch.Tensor | None = None,
    precision: str | None = None,
    config: Config | None = None,
) -> RowResult:
    """Top-k columns of every row and/or recall rank counts of the similarities s_ij = a_i·b_j.

    Args:
        a, b: (N, D) and (M, D) unit rows; global column j = local column + ``diagonal``; row i's partner is j = i.
        k: if > 0, the k largest s_ij of every row i over all j (the pair i = j included), with their local
            column indices; unfilled slots (M < k) hold −inf and −1. At most :data:`MAX_TOPK`.
        matched_rows: d_i for the rows of a: rank_rows[i] = #{j ≠ i : s_ij > d_i} (ties favour the partner),
            tie_rows[i] = #{j ≠ i : s_ij = d_i}.
        matched_cols: d_j for the rows of b, with matched_rows: rank_cols[j] = #{i ≠ j : s_ij > d_j}, added
            with atomics while the same tiles are in registers.
        precision: ``None`` (follow a's dtype), ``"fp16"``, ``"bf16"``, ``"fp32"`` or ``"tf32"``.
    """
    a, b, dot_input = _operands(a, b, precision)
    if not 0 <= k <= MAX_TOPK:
        raise ValueError(f"the fused top-k keeps 0 to {MAX_TOPK} neighbours per row, not {k}")
    if matched_cols is not None and matched_rows is None:
        raise ValueError("matched_cols needs matched_rows")
    config = config or default_config("row")
    n_a, n_b, dim = a.shape[0], b.shape[0], a.shape[1]
    device = a.device
    result = RowResult()
    with _on_device(device):
        rank_rows = torch.zeros(n_a, dtype=torch.int32, device=device)
        rank_cols = torch.zeros(n_b, dtype=torch.int32, device=device)
        tie_rows, tie_cols = torch.zeros_like(rank_rows), torch.zeros_like(rank_cols)
        values = torch.empty((n_a, max(k, 1)), dtype=torch.float32, device=device)  # (N, k)
        index = torch.empty((n_a, max(k, 1)), dtype=torch.int32, device=device)  # (N, k)
        d_rows = _matched(matched_rows, n_a, device)
        d_cols = _matched(matched_cols, n_b, device)
        if n_a == 0:
            values, index = values[:0, :k], index[:0, :k]
        else:
            _row_kernel[(-(-n_a // config.block_m),)](
                a, b, n_a, n_b, dim, a.stride(0), b.stride(0), diagonal,
                d_rows, d_cols, rank_rows, rank_cols, tie_rows, tie_cols, values, index,
                K=max(k, 1), K_POW2=max(triton.next_power_of_2(k), 2), DO_TOPK=k > 0, DO_RANK=matched_rows is not None,
                COLUMN_RANKS=matched_cols is not None,
                BLOCK_M=config.block_m, BLOCK_N=config.block_n, BLOCK_K=config.block_k,
                PRECISION=dot_input, EVEN_K=dim % config.block_k == 0, WIDEN=INTERPRET and a.dtype == torch.bfloat16,
                num_warps=config.num_warps, num_stages=config.num_stages, enable_fp_fusion=True)
    if k > 0:
        result.top_values, result.top_index = values, index.long()
    if matched_rows is not None:
        result.rank_rows, result.tie_rows = rank_rows.long(), tie_rows.long()
    if matched_cols is not None:
        result.rank_cols, result.tie_cols = rank_cols.long(), tie_cols.long()
    return result


def _matched(d: torch.Tensor | None, n: int, device: torch.device) -> torch.Tensor:
    """Matched similarities as float32 on the device: the tile is float32, so is what it is compared with."""
    if d is None:
        return torch.empty(1, dtype=torch.float32, device=device)
    if d.shape != (n,):
        raise ValueError(f"matched similarities of shape {tuple(d.shape)}, expected ({n},)")
    return d.to(device=device, dtype=torch.float32).contiguous()
