"""The pairwise engine: tiles of X̂·Ŷᵀ streamed into reductions, never the N×N matrix.

A problem is either *symmetric* (X against itself: only the tiles on and above the block diagonal are visited,
and each unordered pair i < j counts once) or *cross* (X against Y: every tile). Each tile
``S = X̂[r0:r1] · Ŷ[c0:c1]ᵀ`` (an (r1−r0)×(c1−c0) float32/float64 matrix) is handed to every reduction in turn,
so one pass over the N² products serves several metrics. Peak memory is a few tiles, whatever N is.

Reductions (each keeps only sufficient statistics, accumulated in float64 where they are sums):

- :class:`ExpSum` — Σ exp(−t‖x̂ − ŷ‖²) over the counted pairs, kept as (shift, sum) so large t cannot underflow;
  uniformity is ``log(sum / pairs) + shift``. It reads its own tiles, of the rows centred about a point of their
  cone (:meth:`~embspace.kernels.rows.Rows.centred`), so that narrow cones keep their precision.
- :class:`RankCount` — for every row (and column) the number of other items more similar than its true partner:
  recall@k is ``count < k``.
- :class:`TopK` — the k most similar columns of every row (and rows of every column): k-occurrence, hubness.
- :class:`Histogram` — int64 counts of the similarities in fixed bins over [−1, 1]: true pairs (i = j) and the
  other cross pairs (i ≠ j) of a cross problem, or the pairs i < j of a symmetric one.

Every reduction has a public ``merge`` (the same statistics over other tiles, shards or processes); merges are
associative. This torch path (:func:`stream_torch`) runs everywhere and is the reference;
:func:`embspace.kernels.engine.stream_pairs` chooses it or the fused Triton kernels (:mod:`embspace.kernels.fused`),
which fill the same fields by the same merge rules.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable, Iterator, Sequence

import numpy as np
import torch

from embspace.kernels.backend import record_pass
from embspace.kernels.blocks import BLOCK, TileBlocks
from embspace.kernels.rows import HALF, CentredBlock, Rows, StreamedRows
from embspace.kernels.threads import TilePool, TileSchedule, run_tiles, tile_threads, tile_workers

DEFAULT_TILE = 4096
ACCUMULATE = threading.Lock()  # held while a tile's counts are added to a total that every tile adds to
UNDERFLOW_SAFE_EXPONENT = 80.0
DEFAULT_BINS = 200  # histogram bins over [−1, 1]: width 0.01
CPU_CHUNK = 1 << 18  # similarities a reduction takes at a time on the CPU (1 MiB of float32: in cache)
F64_CHUNK = 1 << 15  # exponents widened to float64 at a time on the CPU (256 KiB)


class Reduction:
    """One statistic accumulated over tiles. ``diagonal`` marks a tile whose rows and columns are the same items.

    :meth:`work` splits a tile's update into independent single-threaded work items (they touch disjoint state),
    which the torch path spreads over worker threads (:mod:`embspace.kernels.threads`); :meth:`update` is the
    same work done here, one item after the other.
    """

    def update(self, sim: torch.Tensor, r0: int, c0: int, diagonal: bool) -> None:
        if type(self).work is Reduction.work:
            raise NotImplementedError(f"{type(self).__name__} implements neither update nor work")
        for item in self.work(sim, r0, c0, diagonal):
            item()

    def work(self, sim: torch.Tensor, r0: int, c0: int, diagonal: bool,
             blocks: TileBlocks | None = None) -> list[Callable[[], None]]:
        """The tile's update as independent items; a reduction that only implements :meth:`update` is one item.
        ``blocks``: the tile's block maxima, shared by the reductions that read only its large entries."""
        return [lambda: self.update(sim, r0, c0, diagonal)]


class ExpSum(Reduction):
    """Σ over counted pairs of exp(−t‖x̂ − ŷ‖²), in float64 with a running log-shift.

    The engine feeds it blocks of centred rows (:meth:`update_centred`, from :meth:`Rows.centred
    <embspace.kernels.rows.Rows.centred>`), never similarities: with x̂_i = c_a + w_i v_i and ŷ_j = c_b + w_j v_j,

        ‖x̂_i − ŷ_j‖² = Q_i + Q'_j − 2 w_i w_j (v_i·v_j),   Q, Q' from :func:`distance_terms` (float64),

    so the tile product v_i·v_j carries only the small offsets from the centres, and the large common part of the
    rows never enters it. For unit rows in a narrow cone (cone 0.99998: 1 − s ≈ 2·10⁻⁵) the textbook
    exp(2t(s − 1)) loses to cancellation what s's rounding costs (float32: 0.35 % of U, fp16 9 %, bf16 a positive
    U); the centred form keeps the tiles' relative precision. The exponent is clamped to ≤ 0 (a squared distance
    is never negative), so U ≤ 0 always. The value is the same whichever other reductions share the pass.

    Args:
        t: the uniformity temperature.
        symmetric: each unordered pair counts once (symmetric problems); the diagonal never counts.
        exclude_diagonal: in a cross problem, leave out the pairs i = j (the true pairs).
    """

    def __init__(self, t: float, *, symmetric: bool, exclude_diagonal: bool) -> None:
        self.t = t
        self.symmetric = symmetric
        self.exclude_diagonal = exclude_diagonal or symmetric
        self.shift = -math.inf  # log-scale of the running sum
        self.total = 0.0  # Σ exp(exponent − shift)

    def work(self, sim: torch.Tensor, r0: int, c0: int, diagonal: bool,
             blocks: TileBlocks | None = None) -> list[Callable[[], None]]:
        """From a tile of similarities of unit rows, as exp(2t(s − 1)): only where 1 − s is large against the
        rounding of s. The engine never calls this (it uses :meth:`update_centred`)."""

        def item() -> None:
            for first, part in row_chunks(sim):
                self.add(*self._reduce(part.mul(2 * self.t).sub_(2 * self.t).clamp_(max=0.0), diagonal, first))

        return [item]

    def update_centred(self, rows: CentredBlock, cols: CentredBlock, r0: int, c0: int, diagonal: bool,
                       buffer: TileBuffer | None = None, pool: TilePool | None = None) -> None:
        """Fold one centred tile into the running sum (:meth:`centred_parts`, added in chunk order)."""
        for shift, value in self.centred_parts(rows, cols, diagonal, buffer, pool):
            self.add(shift, value)

    def centred_parts(self, rows: CentredBlock, cols: CentredBlock, diagonal: bool, buffer: TileBuffer | None = None,
                      pool: TilePool | None = None) -> list[tuple[float, float]]:
        """One tile of exponents −t‖x̂_i − ŷ_j‖² = 2t·w_i w_j (v_i·v_j) − t·Q_i − t·Q'_j: the product and the
        column term come out of one addmm (into ``buffer``'s tile when one is given), the row term and the clamp
        are applied a cache-sized row chunk at a time (by ``pool``'s workers, in halves of the tile, when one is
        given). Returns each chunk's ``(shift, Σ exp(exponent − shift))`` in chunk order, whoever summed them; the
        running sum is not touched (a worker thread may reduce the tile: the engine adds the parts in tile order,
        so the sum is the same on any number of threads)."""
        t = self.t
        q_rows, q_cols = distance_terms(rows, cols)
        wide = torch.float64 if torch.float64 in (rows.vectors.dtype, cols.vectors.dtype) else torch.float32
        if rows.vectors.dtype in HALF:  # widened (as tile_product does) with the powers of two folded in
            left = rows.vectors.to(wide) * rows.scale.to(wide)[:, None]  # (R, D) w_i·v_i
            right = left if cols is rows else cols.vectors.to(wide) * cols.scale.to(wide)[:, None]  # (C, D)
        else:  # w = 1 (centre_block): the stored offsets themselves, no copy
            left, right = rows.vectors, cols.vectors
        out = None if buffer is None else buffer.take(len(left), len(right), wide, left.device)
        column_terms = (q_cols * -t).to(wide)[None, :]  # (1, C)

        def product() -> torch.Tensor:
            return torch.addmm(column_terms, left, right.T, alpha=2 * t, out=out)  # (R, C)

        exponent = product() if pool is None else pool.product(product)
        row_terms = (q_rows * t).to(wide)  # (R,)
        halves = [(0, len(exponent))] if pool is None else split_rows(exponent)
        partial: list[list[tuple[float, float]]] = [[] for _ in halves]

        def half(number: int, start: int, stop: int) -> Callable[[], None]:
            def item() -> None:
                for first, part in row_chunks(exponent[start:stop]):
                    part.sub_(row_terms[start + first : start + first + len(part), None]).clamp_(max=0.0)
                    partial[number].append(self._reduce(part, diagonal, start + first))
            return item

        items = [half(number, start, stop) for number, (start, stop) in enumerate(halves)]
        if pool is None:
            items[0]()
        else:
            pool.run(items)
        return [pair for part in partial for pair in part]

    def _reduce(self, exponent: torch.Tensor, diagonal: bool, first_row: int = 0) -> tuple[float, float]:
        """One tile's part of the running sum: (shift, Σ exp(exponent − shift)), the exponents modified in place.

        The exponentials are taken and summed in float64 (for narrow cones every term lies within 10⁻⁴ of 1 and
        U = log(mean) keeps only what the sum holds beyond 1: float32's exp and sum, biased by 5·10⁻⁵ and 2·10⁻⁴
        of that excess, would show in U), and tiles are added in float64. Excluded pairs (i = j) are masked before
        the shift is taken: a self-pair's exponent is 0, far above the others when 4t is large, and subtracting it
        after the sum would cancel everything else.
        """
        if diagonal and self.exclude_diagonal:  # the pairs i = j: (k, first_row + k) of these rows
            exponent.diagonal(first_row).fill_(-math.inf)
        shift = 0.0 if 4 * self.t <= UNDERFLOW_SAFE_EXPONENT else float(exponent.max())
        if shift == -math.inf:  # every pair of the tile is excluded
            return 0.0, 0.0
        if shift != 0.0:
            exponent.sub_(shift)
        flat = exponent.reshape(-1)
        step = F64_CHUNK if flat.device.type == "cpu" else max(flat.numel(), 1)
        tile_sum = float(sum(piece.double().exp_().sum() for piece in flat.split(step)))  # float64 exp: see above
        if diagonal and self.symmetric:
            tile_sum /= 2  # the diagonal tile holds each of its pairs twice
        return shift, tile_sum

    def add(self, shift: float, value: float) -> None:
        """Fold exp(shift)·value (a partial sum kept as its log-scale and the sum below it) into the running sum."""
        if value <= 0.0:
            return
        new_shift = max(self.shift, shift)
        self.total = self.total * math.exp(self.shift - new_shift) + value * math.exp(shift - new_shift)
        self.shift = new_shift

    def merge(self, other: ExpSum) -> ExpSum:
        """Add the pairs another ExpSum counted (another tile range, shard or process); returns self."""
        self.add(other.shift, other.total)
        return self

    def log_sum(self) -> float:
        """log Σ exp(−t‖x̂ − ŷ‖²) over the counted pairs (−inf when there were none)."""
        return self.shift + math.log(self.total) if self.total > 0 else -math.inf


def distance_terms(a: CentredBlock, b: CentredBlock) -> tuple[torch.Tensor, torch.Tensor]:
    """The per-row terms of ‖x̂_i − ŷ_j‖² = Q_i + Q'_j − 2 w_i w_j (v_i·v_j) for blocks about centres c_a, c_b.

    With p_i = w_i v_i, p'_j = w_j v_j and δ = c_a − c_b: x̂_i − ŷ_j = p_i − p'_j + δ, so
    Q_i = ‖p_i‖² + 2 p_i·δ + ‖δ‖²/2 and Q'_j = ‖p'_j‖² − 2 p'_j·δ + ‖δ‖²/2, in float64 from the stored vectors
    (Q = ‖p‖² when both blocks share their centre). Returns ``(Q (R,), Q' (C,))``.
    """
    if a.centre is b.centre:
        return a.sq_norm, b.sq_norm
    delta = a.centre - b.centre.to(a.centre.device)  # (D,)
    half = float(delta @ delta) / 2
    return (a.sq_norm + 2 * a.scale * (a.vectors.double() @ delta) + half,
            b.sq_norm - 2 * b.scale * (b.vectors.double() @ delta.to(b.vectors.device)) + half)


class RankCount(Reduction):
    """For each row i: #{j ≠ i : s_ij > d_i}; for each column j: #{i ≠ j : s_ij > d_j}; d = matched similarities.

    Ties with the true partner count in its favour; they are counted too, in ``row_ties`` / ``col_ties``
    (#{j ≠ i : s_ij = d_i}, #{i ≠ j : s_ij = d_j}), for the tie conventions of recall (optimistic: ``rows``,
    pessimistic: ``rows + row_ties``). ``d`` must come from the same tile product (:func:`matched_similarities`,
    or the pass's own diagonal tiles: :meth:`from_tiles`) so that a pair is never compared with a differently
    rounded copy of itself. ``ties_counted`` is False where a path filled the rank counts without them (the fused
    kernels, the sharded ring), and the tie conventions are then left out rather than read from zeros.

    Where the partners rank high, few blocks of a line reach d (:class:`~embspace.kernels.blocks.TileBlocks`, the
    tile's block maxima, shared with the top-k): only those are read and compared. Otherwise both counts come
    from one pass over each cache-sized row chunk: σ = sign(s − d) ∈ {−1, 0, 1} (the sign of a
    floating-point difference is exact: it is 0 only when s = d, and it is never flushed to zero while |d| is
    far above the smallest normal number, which a chunk with a tinier d does not rely on: it is compared
    directly), and over a line Σσ = #above − #below, Σ|σ| = #above + #below, so #above = (Σσ + Σ|σ|)/2 and
    #ties = #counted − Σ|σ|. Every partial sum is a whole number below 2²⁴: exact in float32.
    """

    def __init__(self, matched: torch.Tensor) -> None:
        self.matched = matched  # (N,); NaN until known (:meth:`from_tiles`)
        zeros = torch.zeros(len(matched), dtype=torch.int64, device=matched.device)
        self.rows, self.cols = zeros, zeros.clone()
        self.row_ties, self.col_ties = zeros.clone(), zeros.clone()
        self.ties_counted = True
        self.pending = False  # matched similarities still to be read from the pass's diagonal tiles

    @classmethod
    def from_tiles(cls, x: Rows, y: Rows) -> RankCount:
        """Rank counts whose matched similarities d_i are read from the diagonal tiles of the pass itself (the torch
        path visits them first), so no product is computed twice; :meth:`fill_matched` computes them up front for
        a path that does not (:func:`matched_similarities`, the same rounding)."""
        wide = torch.float64 if torch.float64 in (x.dtype, y.dtype) else torch.float32
        counts = cls(torch.full((x.n,), math.nan, dtype=wide, device=x.device))
        counts.pending = True
        return counts

    def fill_matched(self, x: Rows, y: Rows, tile: int) -> None:
        """Compute the matched similarities now if they are still pending."""
        if self.pending:
            self.matched, self.pending = matched_similarities(x, y, tile=tile), False

    def work(self, sim: torch.Tensor, r0: int, c0: int, diagonal: bool,
             blocks: TileBlocks | None = None) -> list[Callable[[], None]]:
        """Two items: the rows' counts and the columns' counts of the tile."""
        r1, c1 = r0 + sim.shape[0], c0 + sim.shape[1]
        if self.pending:
            if diagonal:  # d_i = s_ii of this very tile
                self.matched[r0:r1] = sim.diagonal()
                self.pending = bool(self.matched.isnan().any())
            if self.matched[r0:r1].isnan().any() or self.matched[c0:c1].isnan().any():
                raise AssertionError("rank counts met a tile before the diagonal tiles of its rows and columns")
        wide = torch.promote_types(sim.dtype, self.matched.dtype)  # compared as they are, never rounded
        if sim.dtype != wide or blocks is None or blocks.sim is not sim:
            sim, blocks = sim.to(wide), None
        return [lambda: self._count(sim, self.matched[r0:r1].to(wide), 1, self.rows[r0:r1], self.row_ties[r0:r1],
                                    diagonal, blocks),
                lambda: self._count(sim, self.matched[c0:c1].to(wide), 0, self.cols[c0:c1], self.col_ties[c0:c1],
                                    diagonal, blocks)]

    def _count(self, sim: torch.Tensor, matched: torch.Tensor, dim: int, above: torch.Tensor, ties: torch.Tensor,
               diagonal: bool, blocks: TileBlocks | None = None) -> None:
        """Add to ``above`` / ``ties`` (views of the counts of the tile's rows, dim 1, or columns, dim 0) the
        entries of each line above / equal to its matched similarity: from the blocks that reach it when few do
        (:meth:`TileBlocks.counts_at_least`), else from σ over the whole tile."""
        if blocks is not None and (found := blocks.counts_at_least(dim, matched)) is not None:
            line_above, line_ties = found
            if diagonal:  # the true pairs (k, k) are not other items
                own = sim.diagonal()
                line_above[: len(own)] -= (own > matched[: len(own)]).long()
                line_ties[: len(own)] -= (own == matched[: len(own)]).long()
            above += line_above
            ties += line_ties
            return
        lines, counted = sim.shape[1 - dim], sim.shape[dim]
        tiny = TINY_MATCHED.get(sim.dtype, math.inf)
        total = torch.zeros(lines, dtype=torch.float64, device=sim.device)  # Σσ of each line
        size = torch.zeros_like(total)  # Σ|σ|
        safe_all = bool((matched.abs() >= tiny).all())
        for first, part in row_chunks(sim):
            line_d = matched[first : first + len(part), None] if dim == 1 else matched[None, :]
            safe = safe_all or bool((line_d.abs() >= tiny).all())
            sign = torch.sub(part, line_d).sign_() if safe else exact_sign(part, line_d)  # (rows, C)
            if diagonal:  # the true pairs (k, first + k) are neither above nor below themselves
                sign.diagonal(first).zero_()
            chunk_total, chunk_size = sign.sum(dim, dtype=sign.dtype), sign.abs_().sum(dim, dtype=sign.dtype)
            if dim == 1:
                total[first : first + len(part)], size[first : first + len(part)] = chunk_total, chunk_size
            else:
                total += chunk_total
                size += chunk_size
        above += ((total + size) / 2).long()
        ties += (counted - size).long() - self._self_pairs(lines, counted, diagonal, sim.device)

    @staticmethod
    def _self_pairs(lines: int, other: int, diagonal: bool, device: torch.device) -> torch.Tensor:
        """1 for the lines of a diagonal tile whose true pair lies in it (it was zeroed, not a tie), else 0."""
        if not diagonal:
            return torch.zeros(lines, dtype=torch.int64, device=device)
        return (torch.arange(lines, device=device) < other).long()

    def merge(self, other: RankCount) -> RankCount:
        """Add the counts (and ties) of another RankCount over the same rows and columns (other tiles); returns
        self."""
        for name in ("rows", "cols", "row_ties", "col_ties"):
            mine = getattr(self, name)
            mine += getattr(other, name).to(mine.device)
        self.ties_counted = self.ties_counted and other.ties_counted
        return self


TINY_MATCHED = {torch.float32: 2.0**-100, torch.float64: 2.0**-900}  # |d| above which sign(s − d) is exact


def exact_sign(part: torch.Tensor, d: torch.Tensor) -> torch.Tensor:
    """sign(part − d) from comparisons (for lines whose d is so small that the difference could be subnormal)."""
    return torch.gt(part, d).to(part.dtype) - torch.lt(part, d).to(part.dtype)


class TopK(Reduction):
    """The k most similar columns of every row and rows of every column (cross problems), with indices.

    Ties are broken by index: of equal similarities the lower (global) index ranks first, so the top-k *sets* do
    not depend on the tiling, the tile order or the number of processes (duplicated rows are common: repeated
    captions). Indices of unfilled slots are −1.

    A tile is not sorted: each line (row, or column) is cut into blocks of :data:`BLOCK` entries and only the
    blocks whose maximum reaches a lower bound of the line's final k-th value are read (:func:`line_candidates`);
    the bound is the larger of the line's running k-th best and the smallest maximum of k disjoint groups of its
    blocks (k entries of the line are at least that large). Every entry that can enter the top k, ties included, is
    a candidate; the candidates are merged with the running best by :func:`keep_best`, so the result is the same as
    sorting the whole tile (which is what a tile where most blocks reach the bound gets: :func:`tile_topk`).
    """

    def __init__(self, n_rows: int, n_cols: int, k: int, device: torch.device) -> None:
        self.k_rows, self.k_cols = min(k, n_cols), min(k, n_rows)
        self.row_values = torch.full((n_rows, self.k_rows), -math.inf, dtype=torch.float64, device=device)
        self.row_index = torch.full((n_rows, self.k_rows), -1, dtype=torch.int64, device=device)  # (N, k)
        self.col_values = torch.full((self.k_cols, n_cols), -math.inf, dtype=torch.float64, device=device)
        self.col_index = torch.full((self.k_cols, n_cols), -1, dtype=torch.int64, device=device)  # (k, M)

    def work(self, sim: torch.Tensor, r0: int, c0: int, diagonal: bool,
             blocks: TileBlocks | None = None) -> list[Callable[[], None]]:
        """Two items: the rows' top-k and the columns' top-k of the tile."""
        r1, c1 = r0 + sim.shape[0], c0 + sim.shape[1]
        blocks = blocks if blocks is not None and blocks.sim is sim else TileBlocks(sim)

        def rows() -> None:
            if self.k_rows:
                self.row_values[r0:r1], self.row_index[r0:r1] = merge_line_top(
                    blocks, self.row_values[r0:r1], self.row_index[r0:r1], c0, dim=1)

        def cols() -> None:
            if self.k_cols:
                values, index = merge_line_top(blocks, self.col_values[:, c0:c1].T, self.col_index[:, c0:c1].T, r0,
                                               dim=0)
                self.col_values[:, c0:c1], self.col_index[:, c0:c1] = values.T, index.T

        return [rows, cols]

    def merge(self, other: TopK) -> TopK:
        """Keep the best of two TopKs over the same rows and columns (candidates from other tiles); returns self."""
        self.row_values, self.row_index = keep_best(self.row_values, self.row_index, other.row_values,
                                                    other.row_index, dim=1)
        self.col_values, self.col_index = keep_best(self.col_values, self.col_index, other.col_values,
                                                    other.col_index, dim=0)
        return self


def merge_line_top(blocks: TileBlocks, best: torch.Tensor, best_index: torch.Tensor, offset: int,
                   dim: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The running top-k ``best`` / ``best_index`` ((L, k), descending, L lines along ``dim`` of the tile of
    ``blocks``) merged with the lines of the tile (positions + ``offset`` are the global indices). Returns the new
    (L, k) tables."""
    sim = blocks.sim
    k = best.shape[1]
    size = sim.shape[dim]
    if k >= size or size <= 2 * BLOCK or sim.shape[1 - dim] == 0:  # small tiles: the sorted tile itself
        return merge_sorted_tile(sim, best, best_index, offset, dim)
    found = line_candidates(blocks, dim, running_floor(best[:, k - 1], sim.dtype), k)
    if found is None:  # most blocks reach the bound (many equal values): sorting the tile is cheaper
        return merge_sorted_tile(sim, best, best_index, offset, dim)
    lines, positions, values = found
    if len(lines) == 0:
        return best, best_index
    active, counts = torch.unique_consecutive(lines, return_counts=True)  # (A,) lines with candidates
    width = int(counts.max())
    if len(active) * width > DENSE_CANDIDATES:  # a few lines with very many candidates: the sorted tile instead
        return merge_sorted_tile(sim, best, best_index, offset, dim)
    start = torch.cumsum(counts, 0) - counts  # (A,) first candidate of each active line
    which = torch.repeat_interleave(torch.arange(len(active), device=sim.device), counts)  # (M,) active slot
    slot = torch.arange(len(lines), device=sim.device) - start[which]  # (M,) place within its line
    cand_values = torch.full((len(active), width), -math.inf, dtype=best.dtype, device=sim.device)  # (A, w)
    cand_index = torch.full((len(active), width), torch.iinfo(torch.int64).max, dtype=torch.int64, device=sim.device)
    cand_values[which, slot] = values.to(best.dtype)
    cand_index[which, slot] = positions + offset
    new_values, new_index = keep_best(best[active], best_index[active], cand_values, cand_index, dim=1)
    best, best_index = best.clone(), best_index.clone()
    best[active], best_index[active] = new_values, new_index
    return best, best_index


DENSE_CANDIDATES = 1 << 21  # (lines × widest line) candidate slots above which a tile is sorted instead


def merge_sorted_tile(sim: torch.Tensor, best: torch.Tensor, best_index: torch.Tensor, offset: int,
                      dim: int) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`merge_line_top` from the tile's own top-k of every line (:func:`tile_topk`)."""
    values, index = tile_topk(sim, min(best.shape[1], sim.shape[dim]), dim=dim)
    values, index = (values, index) if dim == 1 else (values.T, index.T)
    return keep_best(best, best_index, values, index + offset, dim=1)


def running_floor(kth: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """The running k-th values (float64, −inf where a line has fewer than k) in the tile's dtype, rounded down, so
    that an entry of the tile equal to one is still a candidate."""
    low = kth.to(dtype)
    return torch.where(low.double() > kth, torch.nextafter(low, torch.full_like(low, -math.inf)), low)


def line_candidates(blocks: TileBlocks, dim: int, floor: torch.Tensor,
                    k: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None:
    """Every entry of the lines of the tile along ``dim`` (rows: 1, columns: 0) that can be among its line's k
    largest, given ``floor`` (L,), a value each line's final k-th largest is known to reach.

    The bound of a line is the larger of ``floor`` and :meth:`TileBlocks.kth_bound` (k entries of the tile reach
    it); only blocks whose maximum reaches the bound are read, and of those the entries that reach it are kept
    (:meth:`TileBlocks.candidates`). Returns ``(line, position, value)`` of the candidates, ordered by line and then
    position; None when more than a quarter of the blocks reach their bound (then sorting the tile is cheaper).
    """
    bound = torch.maximum(floor.to(blocks.sim.dtype), blocks.kth_bound(dim, k))
    # a −inf entry (masked out) is never a candidate: it could only fill a slot that stays −inf anyway
    bound.clamp_(min=torch.finfo(bound.dtype).min)
    return blocks.candidates(dim, bound, most=0.25)


def tile_topk(sim: torch.Tensor, k: int, dim: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The k largest entries of a tile along ``dim`` with their positions, ties broken toward lower positions.

    ``torch.topk`` alone picks an arbitrary member of a tie. A tie matters only where it straddles the k-th place
    (the k-th and (k+1)-th largest are equal): those rows (columns) alone are settled exactly, keeping every entry
    above the k-th value and the lowest-positioned entries equal to it.
    """
    size = sim.shape[dim]
    if k >= size:
        return sim.topk(size, dim=dim)
    values, index = sim.topk(k + 1, dim=dim)  # (…, k+1), descending
    straddles = (values.select(dim, k - 1) == values.select(dim, k)).nonzero().squeeze(1)  # (T,)
    values, index = values.narrow(dim, 0, k), index.narrow(dim, 0, k)
    if len(straddles):
        lines = sim.index_select(1 - dim, straddles)  # (T, size) for rows, (size, T) for columns
        lines = lines if dim == 1 else lines.T
        kth = values.index_select(1 - dim, straddles)
        kth = (kth if dim == 1 else kth.T)[:, k - 1 : k]  # (T, 1)
        position = torch.arange(size, device=sim.device).expand_as(lines)
        # rank key: entries above the k-th value first, then equal ones by position; the rest last
        above, equal = lines > kth, lines == kth
        key = torch.where(above, -1, torch.where(equal, position, size))
        order = key.argsort(dim=1, stable=True)[:, :k]  # (T, k)
        picked = lines.gather(1, order)
        reorder = picked.argsort(dim=1, descending=True, stable=True)  # back to descending values
        fixed_values, fixed_index = picked.gather(1, reorder), order.gather(1, reorder)
        if dim == 1:
            values, index = values.clone(), index.clone()
            values[straddles], index[straddles] = fixed_values.to(values.dtype), fixed_index
        else:
            values, index = values.clone(), index.clone()
            values[:, straddles], index[:, straddles] = fixed_values.T.to(values.dtype), fixed_index.T
    return values, index


class Histogram(Reduction):
    """Counts of cosine similarities in ``bins`` equal bins over [−1, 1], exact, in int64.

    Bins follow ``numpy.histogram(s, bins, range=(-1, 1))``: bin k holds edges[k] ≤ s < edges[k+1], the last bin
    also holds s = 1, and the edges are ``numpy.linspace(-1, 1, bins + 1)``. Similarities that rounding puts just
    outside [−1, 1] are clamped into the end bins, so every counted pair is in some bin.

    A cross problem (X against Y, same N) fills ``matched`` (the true pairs, i = j) and ``unmatched`` (i ≠ j);
    a symmetric one (X against itself) fills ``within`` (each unordered pair i < j once). Counts merge by addition.

    >>> import numpy as np, torch
    >>> from embspace.kernels.rows import prepare_rows
    >>> x = prepare_rows(np.eye(3), torch.device("cpu"), torch.float64)
    >>> hist = Histogram(4, symmetric=True)
    >>> stream_torch(x, None, [hist], tile=2)
    >>> hist.within.tolist()  # three orthogonal pairs, cosine 0 → the bin [0, 0.5)
    [0, 0, 3, 0]
    """

    def __init__(self, bins: int = DEFAULT_BINS, *, symmetric: bool, device: torch.device | str = "cpu") -> None:
        if bins < 1:
            raise ValueError(f"bins must be at least 1, got {bins}")
        self.bins = bins
        self.symmetric = symmetric
        self.edges = np.linspace(-1.0, 1.0, bins + 1)  # (bins+1,) float64, numpy.histogram's edges
        self._bounds = torch.from_numpy(np.append(self.edges, np.inf)).to(device)  # (bins+2,) so k + 1 is valid
        zeros = torch.zeros(bins, dtype=torch.int64, device=device)
        if symmetric:
            self.within = zeros
        else:
            self.matched, self.unmatched = zeros, zeros.clone()

    @property
    def device(self) -> torch.device:
        return self._bounds.device

    def merge(self, other: Histogram) -> Histogram:
        """Add the counts of another Histogram of the same bins and kind; returns self."""
        if self.symmetric:
            self.within += other.within.to(self.device)
        else:
            self.matched += other.matched.to(self.device)
            self.unmatched += other.unmatched.to(self.device)
        return self

    def work(self, sim: torch.Tensor, r0: int, c0: int, diagonal: bool,
             blocks: TileBlocks | None = None) -> list[Callable[[], None]]:
        return [lambda: self._update(sim, diagonal)]

    def _update(self, sim: torch.Tensor, diagonal: bool) -> None:
        if self.symmetric:
            if diagonal:  # the pairs i < j, row by row (several times faster than gathering triu_indices)
                if len(sim) > 1:
                    self.add(within=self._count(torch.cat([sim[r, r + 1 :] for r in range(len(sim) - 1)])))
            else:
                self.add(within=self._count(sim))
            return
        counts = self._count(sim)
        on_diagonal = self._count(sim.diagonal()) if diagonal else None
        if on_diagonal is not None:
            counts -= on_diagonal
        self.add(matched=on_diagonal, unmatched=counts)

    def add(self, within: torch.Tensor | None = None, matched: torch.Tensor | None = None,
            unmatched: torch.Tensor | None = None) -> None:
        """Add bin counts (of one tile) to the totals; under a lock, as tiles may be binned on several threads."""
        with ACCUMULATE:
            for name, counts in (("within", within), ("matched", matched), ("unmatched", unmatched)):
                if counts is not None:
                    total = getattr(self, name)
                    total += counts

    def _count(self, values: torch.Tensor) -> torch.Tensor:
        """Bin counts of any tensor of similarities, as numpy.histogram over [−1, 1] would give them.

        On the CPU the values are binned :data:`CPU_CHUNK` at a time, so that the few passes of
        :meth:`_count_part` over them stay in cache (3× faster than whole 4096² tiles); on CUDA in one go.
        """
        flat = values.reshape(-1)
        step = max(1, flat.numel() if flat.device.type == "cuda" else CPU_CHUNK)
        counts = torch.zeros(self.bins, dtype=torch.int64, device=flat.device)
        for start in range(0, flat.numel(), step):
            counts += self._count_part(flat[start : start + step])
        return counts

    def _count_part(self, flat: torch.Tensor) -> torch.Tensor:
        """Bin counts of a 1-D run of similarities.

        The bin k = ⌊(s + 1)·bins/2⌋ is computed in the tile's precision (float16/bfloat16 are widened to float32);
        the few values within 1e-3 of a bin's width from an edge are then settled exactly, as numpy does, by
        comparing them in float64 with the edges themselves. Values outside [−1, 1] (rounding; ±inf) fall in the end
        bins: their coordinate is clamped to [−1, bins + 1], whole numbers that the exact step settles.
        """
        wide = flat if flat.dtype in (torch.float32, torch.float64) else flat.float()  # (M,)
        position = torch.add(wide, 1.0).mul_(self.bins / 2).clamp_(-1.0, self.bins + 1.0)  # (M,) bin coordinate
        index = position.to(torch.int32)  # ⌊position⌋ where position ≥ 0; just below 0 is "near an edge" too
        near = position.sub_(index).sub_(0.5).abs_().gt_(0.499).nonzero().squeeze(1)  # (K,), K ≪ M
        index.clamp_(0, self.bins - 1)  # s = 1 belongs to the last bin
        value, k = wide[near].double(), index[near].long()
        k -= (value < self._bounds[k]).long()
        k += (value >= self._bounds[k + 1]).long()
        index[near] = k.clamp_(0, self.bins - 1).to(torch.int32)
        return torch.bincount(index, minlength=self.bins)

    def counts(self) -> dict[str, list[int]]:
        """The counts as plain lists: ``{"within": …}`` or ``{"matched": …, "unmatched": …}``."""
        if self.symmetric:
            return {"within": self.within.cpu().tolist()}
        return {"matched": self.matched.cpu().tolist(), "unmatched": self.unmatched.cpu().tolist()}


def keep_best(best: torch.Tensor, best_index: torch.Tensor, values: torch.Tensor, index: torch.Tensor,
              dim: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The ``best.shape[dim]`` largest of the running best and new candidates along ``dim``, in descending order;
    of equal values the lower index wins (unfilled slots, −inf with index −1, come last)."""
    cand_values = torch.cat([best, values.to(best.dtype)], dim=dim)
    cand_index = torch.cat([best_index, index], dim=dim)
    by_index = cand_index.argsort(dim=dim, stable=True)  # lower index first among equals
    cand_values, cand_index = cand_values.gather(dim, by_index), cand_index.gather(dim, by_index)
    order = cand_values.argsort(dim=dim, descending=True, stable=True).narrow(dim, 0, best.shape[dim])
    return cand_values.gather(dim, order), cand_index.gather(dim, order)


def _upcast(a: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Half-precision storage is multiplied with fp32 accumulation into a float32 tile."""
    if a.dtype in (torch.float16, torch.bfloat16):
        return a.float(), b.float()
    return a, b


def chunk_rows(sim: torch.Tensor) -> int:
    """Rows of a :func:`row_chunks` chunk: about :data:`CPU_CHUNK` similarities (the whole tile off the CPU)."""
    return max(1, CPU_CHUNK // max(sim.shape[1], 1)) if sim.device.type == "cpu" else max(sim.shape[0], 1)


def row_chunks(sim: torch.Tensor) -> Iterator[tuple[int, torch.Tensor]]:
    """(first row, rows) pieces of a tile, about :data:`CPU_CHUNK` similarities each on the CPU, so that a
    reduction's temporaries stay in cache (2-3× faster than whole 4096² tiles); the whole tile on other devices."""
    if sim.device.type != "cpu":
        yield 0, sim
        return
    step = chunk_rows(sim)
    for first in range(0, sim.shape[0], step):
        yield first, sim[first : first + step]


def split_rows(sim: torch.Tensor) -> list[tuple[int, int]]:
    """Two row ranges of a tile that split it at a boundary of :func:`row_chunks`' chunks (so that the chunks, and
    every sum over them, are the same whether a tile is reduced in one piece or in two)."""
    step = chunk_rows(sim)
    chunks = -(-sim.shape[0] // step)
    if chunks < 2:
        return [(0, sim.shape[0])]
    middle = (chunks // 2) * step
    return [(0, middle), (middle, sim.shape[0])]


class TileBuffer:
    """One reusable output for the tile products of a pass. A fresh 4096² float32 tile per product pays its page
    faults again every time: ~20 % of the product's time on the CPU. Reductions never keep a tile."""

    def __init__(self) -> None:
        self._flat: torch.Tensor | None = None

    def take(self, rows: int, cols: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
        """A contiguous (rows, cols) tensor over the buffer, which grows (or changes type) when it must."""
        flat, need = self._flat, rows * cols
        if flat is None or flat.numel() < need or flat.dtype != dtype or flat.device != device:
            flat = self._flat = torch.empty(need, dtype=dtype, device=device)
        return flat[:need].view(rows, cols)


def tile_product(a: torch.Tensor, b: torch.Tensor, buffer: TileBuffer | None = None) -> torch.Tensor:
    """a·bᵀ with fp32 accumulation and a float32 (or float64) result, whatever the storage precision; written into
    ``buffer``'s tile when one is given."""
    a, b = _upcast(a, b)
    if buffer is None:
        return a @ b.T
    return torch.mm(a, b.T, out=buffer.take(len(a), len(b), a.dtype, a.device))


def feed_tile(rows: torch.Tensor, cols: torch.Tensor, reductions: Sequence[Reduction], r0: int, c0: int, *,
              diagonal: bool, buffer: TileBuffer, pool: TilePool | None = None) -> None:
    """The tile rows·colsᵀ (its first row and column at r0, c0) into every reduction, one product written into
    ``buffer`` shared by all of them. (Exp-sums take their own centred tiles: :func:`feed_exp_sums`.)

    With a ``pool`` the product takes torch's threads and the reductions' work items run on its
    single-threaded workers; they are all done when this returns (the next product reuses the buffer)."""
    sim = tile_product(rows, cols, buffer) if pool is None else pool.product(lambda: tile_product(rows, cols, buffer))
    blocks = TileBlocks(sim)  # (R, C); block maxima computed on first use, shared by the reductions
    items = [item for reduction in reductions for item in reduction.work(sim, r0, c0, diagonal, blocks)]
    if pool is None:
        for item in items:
            item()
    else:
        pool.run(items)


def feed_exp_sums(rows: CentredBlock, cols: CentredBlock, sums: Sequence[ExpSum], r0: int, c0: int, *,
                  diagonal: bool, buffer: TileBuffer, pool: TilePool | None = None) -> None:
    """The centred tile of rows and cols into every exp-sum."""
    for acc in sums:
        acc.update_centred(rows, cols, r0, c0, diagonal=diagonal, buffer=buffer, pool=pool)


def stream_torch(
    x: Rows,
    y: Rows | None,
    reductions: Sequence[Reduction],
    *,
    tile: int = DEFAULT_TILE,
    progress: Callable[[int], None] | None = None,
) -> None:
    """The torch path of :func:`~embspace.kernels.engine.stream_pairs`: every tile of X̂·Ŷᵀ (or of X̂·X̂ᵀ on and
    above the diagonal when ``y`` is None) into every reduction."""
    symmetric = y is None
    y = x if symmetric else y
    sums = [r for r in reductions if isinstance(r, ExpSum)]
    others = [r for r in reductions if not isinstance(r, ExpSum)]
    grid = tile_grid(x.n, None if symmetric else y.n, tile)
    workers = 1 if isinstance(x, StreamedRows) or isinstance(y, StreamedRows) else tile_workers(x.device, len(grid),
                                                                                               tile)
    if workers > 1:
        stream_tiles_in_parallel(x, None if symmetric else y, others, sums, grid, tile, workers, progress)
        record_pass("torch")
        return
    # the similarity tiles: a cross problem's diagonal tiles first (they hold the matched similarities that rank
    # counts compare with); the exp-sums' centred tiles in the grid's order, so that their float sums never change
    tiles_others = grid if symmetric or not others else diagonal_first(grid)
    rows_of, rows_c_of = LastBlock(x.block), LastBlock(x.centred)
    buffer = TileBuffer()
    with tile_threads(fixed=x.device.type != "cpu" or None) as pool:  # threads: only on the CPU
        for (r0, c0), (s0, d0) in zip(tiles_others, grid, strict=True):
            if others:
                rows = rows_of(r0, min(r0 + tile, x.n))
                cols = rows if symmetric and c0 == r0 else y.block(c0, min(c0 + tile, y.n))
                feed_tile(rows, cols, others, r0, c0, diagonal=(r0 == c0), buffer=buffer, pool=pool)
            if sums:
                rows_c = rows_c_of(s0, min(s0 + tile, x.n))
                cols_c = rows_c if symmetric and d0 == s0 else y.centred(d0, min(d0 + tile, y.n))
                feed_exp_sums(rows_c, cols_c, sums, s0, d0, diagonal=(s0 == d0), buffer=buffer, pool=pool)
            if progress is not None:
                progress(1)
    record_pass("torch")


def stream_tiles_in_parallel(x: Rows, y: Rows | None, others: Sequence[Reduction], sums: Sequence[ExpSum],
                             grid: list[tuple[int, int]], tile: int, workers: int,
                             progress: Callable[[int], None] | None) -> None:
    """:func:`stream_torch` with whole tiles on ``workers`` threads at once, each tile's product and reductions
    single-threaded (:class:`~embspace.kernels.threads.TileSchedule`: tiles in work share no row or column block;
    a cross problem's diagonal tiles come first). The exp-sums' chunk sums are added in the grid's order, as the
    one-thread pass adds them, so every statistic is the same on any number of threads."""
    symmetric = y is None
    y = x if symmetric else y
    if sums:  # centres and centred copies are made once, here, not by two threads at once
        x.centred(0, min(tile, x.n))
        y.centred(0, min(tile, y.n))
    phases = [grid] if symmetric or not others else [[t for t in grid if t[0] == t[1]],
                                                     [t for t in grid if t[0] != t[1]]]
    parts: dict[tuple[int, int], list[list[tuple[float, float]]]] = {}
    order = iter(grid)
    waiting = [next(order, None)]  # the next tile of the grid whose sums are still to be added

    def process(at: tuple[int, int], local: dict) -> None:
        r0, c0 = at
        buffer = local.setdefault("buffer", TileBuffer())
        rows_of = local.setdefault("rows", LastBlock(x.block))
        rows_c_of = local.setdefault("rows_c", LastBlock(x.centred))
        r1, c1 = min(r0 + tile, x.n), min(c0 + tile, y.n)
        if others:
            rows = rows_of(r0, r1)
            cols = rows if symmetric and c0 == r0 else y.block(c0, c1)
            feed_tile(rows, cols, others, r0, c0, diagonal=(r0 == c0), buffer=buffer)
        if sums:
            rows_c = rows_c_of(r0, r1)
            cols_c = rows_c if symmetric and c0 == r0 else y.centred(c0, c1)
            parts[at] = [acc.centred_parts(rows_c, cols_c, r0 == c0, buffer) for acc in sums]

    def finished(at: tuple[int, int]) -> None:  # under the schedule's lock
        while sums and waiting[0] is not None and waiting[0] in parts:
            for acc, chunks in zip(sums, parts.pop(waiting[0]), strict=True):
                for shift, value in chunks:
                    acc.add(shift, value)
            waiting[0] = next(order, None)
        if progress is not None:
            progress(1)

    run_tiles(TileSchedule(phases), process, finished, workers)


def tile_grid(n_rows: int, n_cols: int | None, tile: int = DEFAULT_TILE) -> list[tuple[int, int]]:
    """(first row, first column) of every tile, row block by row block: all of them for a cross problem, those on
    and above the block diagonal for a symmetric one (``n_cols`` None)."""
    symmetric = n_cols is None
    return [(r0, c0) for r0 in range(0, n_rows, tile)
            for c0 in range(r0 if symmetric else 0, n_rows if symmetric else n_cols, tile)]


def diagonal_first(grid: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """The same tiles, those with r0 = c0 first (each in the grid's order)."""
    return [t for t in grid if t[0] == t[1]] + [t for t in grid if t[0] != t[1]]


class LastBlock:
    """``read(start, stop)`` of the latest block asked for, kept while consecutive tiles share their rows."""

    def __init__(self, read: Callable[[int, int], object]) -> None:
        self.read, self.key, self.value = read, None, None

    def __call__(self, start: int, stop: int):
        if self.key != (start, stop):
            self.key, self.value = (start, stop), self.read(start, stop)
        return self.value


def count_tiles(n_rows: int, n_cols: int | None, tile: int = DEFAULT_TILE) -> int:
    """Number of tiles :func:`stream_torch` visits (for progress bars)."""
    blocks_r = -(-n_rows // tile)
    if n_cols is None:
        return blocks_r * (blocks_r + 1) // 2
    return blocks_r * -(-n_cols // tile)


def matched_similarities(x: Rows, y: Rows, *, tile: int = DEFAULT_TILE) -> torch.Tensor:
    """d_i = x̂_i·ŷ_i taken from the diagonal tiles, rounded exactly as :func:`stream_torch` rounds them.

    Each diagonal is copied out of its tile: a view would keep every R×R tile alive until the end (N·tile floats).
    """
    wide = torch.float64 if torch.float64 in (x.dtype, y.dtype) else torch.float32
    out = torch.empty(x.n, dtype=wide, device=x.device)  # (N,)
    for r0 in range(0, x.n, tile):
        r1 = min(r0 + tile, x.n)
        out[r0:r1] = tile_product(x.block(r0, r1), y.block(r0, r1)).diagonal()
    return out
