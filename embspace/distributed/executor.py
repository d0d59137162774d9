"""The statistics of a run over K ranks: each computed on the rank's shard and merged across the group.

Every rank computes the statistics of its shard with the single-process code and merges them by their own public
rules: moment sums, Gram matrices and histogram counts add (float64 / int64 all-reduce), sums of exponentials merge
with their log-shifts (:meth:`~embspace.kernels.pairwise.ExpSum.merge`), rank counts and top-k tables are gathered
into the tables one process would hold (top-k candidates merge by
:func:`~embspace.kernels.pairwise.keep_best`, ties broken by global row index). The pairwise statistics of a pair
space come from one ring pass (:mod:`embspace.distributed.ring`) that feeds every reduction asked of that space.
Every rank ends with the same statistics, so the families (:mod:`embspace.families`) compute the same numbers as
in one process; the inputs' content hashes are computed on rank 0 alone.
"""

from __future__ import annotations

import dataclasses
import math
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
import torch

from embspace import row_pass
from embspace.distributed.group import Group
from embspace.distributed.plan import Visit, ring_steps, shard_bounds, visits
from embspace.distributed.ring import ring_pass, rows_of, stream_between, stream_block
from embspace.embeddings import Embeddings
from embspace.errors import InputError
from embspace.executor import CROSS, LocalExecutor, Needs
from embspace.families.base import Context, PairPass, Statistics
from embspace.kernels.budget import Plan
from embspace.kernels.engine import stream_pairs
from embspace.kernels.pairwise import (
    ExpSum,
    Histogram,
    RankCount,
    TopK,
    keep_best,
    matched_similarities,
    tile_product,
)
from embspace.kernels.rows import ResidentRows, Rows
from embspace.metrics import centroid, separability, spectrum, uniformity
from embspace.spaces.neighbours import SelfNeighbours
from embspace.spaces.sums import SpaceSums, sums_of_rows

POSITIONAL = (RankCount, TopK)


class ShardedExecutor(LocalExecutor):
    """:class:`~embspace.executor.LocalExecutor` whose rows are this rank's shard; statistics merged across the
    group. Records ``settings["distributed"]`` (group, schedule, shard sizes)."""

    def __init__(self, group: Group, embeddings: dict[str, Embeddings], settings: dict[str, Any], layout: Plan,
                 passes: str) -> None:
        super().__init__(layout, passes)
        self.group = group
        self.n = next(iter(embeddings.values())).n
        bounds = shard_bounds(self.n, group.world)
        self.sizes = [stop - start for start, stop in bounds]
        self.starts = [start for start, _ in bounds]
        self.start = self.starts[group.rank]
        tiles = group.all_gather(torch.tensor([self.plan.tile]), "agreeing on the tile")  # budgets may differ
        self.plan = dataclasses.replace(self.plan, tile=int(torch.cat(tiles).min()))
        settings["distributed"] = {**group.describe(), "schedule": "ring", "shard_rows": self.sizes,
                                   "ring_steps": {"symmetric": ring_steps(group.world, True),
                                                  "cross": ring_steps(group.world, False)}}

    @contextmanager
    def bar(self, context: Context, needs: Needs, show: bool) -> Iterator[None]:
        """Rank 0's bar, one step per shard it visits in the ring passes (its 1/K share of every pass: the ranks
        move in step, each waiting for the next shard). The other ranks show none."""
        if not (show and self.group.main):
            yield
            return
        from tqdm.auto import tqdm

        world = self.group.world
        total = sum(ring_steps(world, space != CROSS) for space in needs.passes)
        with tqdm(total=total, desc=f"measuring (rank 0 of {world})", unit="shard", file=sys.stderr,
                  leave=False) as bar:
            self.advance = bar.update
            yield

    def _visited(self) -> None:
        """One shard of a ring pass done (the bar of rank 0)."""
        if self.advance is not None:
            self.advance(1)

    def finished(self) -> None:
        self.group.all_gather_objects(True, "finishing")  # every rank got here: the report is complete

    def content_hash(self, embeddings: Embeddings) -> str | None:
        """The input's hash on rank 0 (a sequential hash: rank 0 reads every row once, after the last exchange);
        the other ranks, which write nothing, leave it out (None)."""
        return super().content_hash(embeddings) if self.group.main else None

    # --- O(N·D) statistics: the shard's, added across ranks ---------------------------------------------------

    def _sum(self, values: torch.Tensor, what: str) -> torch.Tensor:
        return self.group.all_reduce(values, what)

    def _merge_moments(self, sums: centroid.MomentSums, dim: int, what: str) -> centroid.MomentSums:
        total = sums.total if sums.total is not None else torch.zeros(dim, dtype=torch.float64)
        packed = self._sum(torch.cat([total.double().cpu(), torch.tensor([sums.squares, sums.n], dtype=torch.float64)]),
                           what)
        return centroid.MomentSums(n=int(packed[-1]), total=packed[:dim], squares=float(packed[dim]))

    hashes_in_pass = False  # the shard's pass hashes nothing: rank 0 hashes every row (content_hash)

    def merged(self, found: row_pass.Results, rows: dict[str, Rows]) -> row_pass.Results:
        """The shard's pass statistics added across ranks (every rank runs the pass over its shard)."""
        for name, sums in found.moments.items():
            found.moments[name] = self._merge_moments(sums, rows[name].dim, "merging the moment sums")
        if found.pair_sums is not None:
            local, (a, b) = found.pair_sums, list(rows)[:2]
            merged = centroid.PairSums(alpha=local.alpha)
            merged.x = self._merge_moments(local.x, rows[a].dim, "merging the moment sums")
            merged.y = self._merge_moments(local.y, rows[b].dim, "merging the moment sums")
            pair = self._sum(torch.tensor([local.dots, local.distances, local.n], dtype=torch.float64),
                             "merging pairs")
            merged.dots, merged.distances, merged.n = float(pair[0]), float(pair[1]), int(pair[2])
            found.pair_sums = merged
        for name, local in found.grams.items():
            found.grams[name] = spectrum.Gram(self.n, self._sum(local.gram, "merging Gram matrices"),
                                              self._sum(local.total, "merging Gram matrices"))
        return found

    def space_sums(self, x: Rows, y: Rows) -> SpaceSums:
        """The shard's two-space sums about the origin (a centre every rank shares), added across ranks."""
        centres = (torch.zeros(x.dim, dtype=torch.float64), torch.zeros(y.dim, dtype=torch.float64))
        local = sums_of_rows(x, y, centres)
        for f in dataclasses.fields(local):
            value = getattr(local, f.name)
            merged = self._sum(value if isinstance(value, torch.Tensor) else torch.tensor([value], dtype=torch.float64),
                               "merging the two-space sums")
            setattr(local, f.name, merged if isinstance(value, torch.Tensor) else float(merged[0]))
        return local

    def matched_log_sum(self, x: Rows, y: Rows, t: float) -> float:
        parts = self.group.all_gather(torch.tensor([uniformity.matched_log_sum(x, y, t)], dtype=torch.float64),
                                      "merging matched sums")
        return float(torch.logsumexp(torch.cat(parts), 0))

    def probe_rows(self, x: Rows, y: Rows, index: Any) -> tuple[Any, Any, Any, str | None]:
        """Rank 0's seeded pairs (budgets, and so probe sizes, may differ by rank), their rows gathered from every
        rank onto every rank: each fits the same probe on the same rows."""
        index = self.group.broadcast_object(index, "agreeing on the probe's pairs")
        bounds = shard_bounds(self.n, self.group.world)
        cuts = [tuple(int(i) for i in np.searchsorted(index, bound)) for bound in bounds]  # per rank: its slice
        lo, hi = cuts[self.group.rank]
        gathered = []
        for rows in (x, y):
            mine = torch.from_numpy(separability.gather_rows(rows, index[lo:hi] - self.start))  # (p_r, D) float64
            parts = self.group.all_gather_shaped(mine, [(b - a, rows.dim) for a, b in cuts],
                                                 "gathering rows for the probe")
            gathered.append(torch.cat([p.cpu() for p in parts]).numpy())
        return index, gathered[0], gathered[1], "every rank, from rows gathered from every rank"

    # --- pairwise statistics: one ring pass per pair space ----------------------------------------------------

    def pairwise(self, context: Context, space: str, found: list[PairPass], x: Rows, y: Rows | None,
                 stats: Statistics, label: str) -> None:
        """The reductions of a pair space over every pair of the whole rows (no out-of-memory retry: one rank
        retrying alone would leave the others waiting)."""
        tile = self._tile(space, found)
        reductions = [need.make(context, x, y, tile) for need in found]
        if any(isinstance(r, SelfNeighbours) for r in reductions):
            raise InputError("metrics", "structure (its within-modality kNN) is not computed across ranks yet; "
                                        "measure it in one process, or leave it out of --metrics under torchrun")
        free = [r for r in reductions if not isinstance(r, POSITIONAL)]
        positional = [r for r in reductions if isinstance(r, POSITIONAL)]
        if positional:
            self._positional_ring(x, y, free, positional, found, tile)
        else:
            self._ring(x, y, free, tile, f"the {label} pass over {space}")
        for reduction in free:
            self._merge_free(reduction)
        for need, reduction in zip(found, reductions, strict=True):
            stats[need] = reduction

    def _merge_free(self, reduction: ExpSum | Histogram) -> None:
        """A position-free reduction summed over the ranks (in place)."""
        if isinstance(reduction, ExpSum):
            parts = self.group.all_gather(torch.tensor([reduction.shift, reduction.total], dtype=torch.float64),
                                          "merging exp-sums")
            merged = ExpSum(reduction.t, symmetric=reduction.symmetric, exclude_diagonal=reduction.exclude_diagonal)
            for part in parts:
                merged.add(float(part[0]), float(part[1]))
            reduction.shift, reduction.total = merged.shift, merged.total
            return
        for field in ("within",) if reduction.symmetric else ("matched", "unmatched"):
            setattr(reduction, field, self._sum(getattr(reduction, field), "merging histograms"))

    def _ring(self, x: ResidentRows, y: ResidentRows | None, reductions: list, tile: int, what: str) -> None:
        """One ring pass of position-free reductions (sums, histograms) over this rank's share of the blocks."""

        def visit(step: Visit, visiting: Rows, state: list[torch.Tensor]) -> None:
            if step.own:
                stream_pairs(x, y, reductions, tile=tile, backend=self.passes)
            else:
                r0, r1, c0, c1 = step.block(x.n, visiting.n)
                stream_between(rows_of(x, r0, r1), rows_of(visiting, c0, c1), reductions, tile=tile)
            self._visited()

        ring_pass(self.group, x if y is None else y, self.sizes, y is None, visit, what=what)

    def _positional_ring(self, x: ResidentRows, y: ResidentRows, free: list, positional: list, found: list[PairPass],
                         tile: int) -> None:
        """The cross pass with rank counts and/or top-k tables (and any position-free reductions riding along).

        The column statistics of a Y shard (matched similarities, column ranks, top-k values and global row
        indices) travel with it around the ring; the row statistics stay. Afterwards every rank gathers the
        tables into what one process would hold: ranks and top-k of all N rows and all N columns.
        """
        ranks = next((r for r in positional if isinstance(r, RankCount)), None)
        top = next((r for r in positional if isinstance(r, TopK)), None)
        k = next((need.options["k"] for need in found if need.reduction == "top"), 1)
        width = min(k, self.n)  # (the single-process TopK keeps min(k, N))
        device = x.device
        own_matched = (matched_similarities(x, y, tile=tile) if x.n  # (n_r,), an empty shard in the same dtype
                       else tile_product(x.block(0, 0), y.block(0, 0)).diagonal())
        row_rank = torch.zeros(x.n, dtype=torch.int64, device=device)
        row_values = torch.full((x.n, width), -math.inf, dtype=torch.float64, device=device)
        row_index = torch.full((x.n, width), -1, dtype=torch.int64, device=device)

        def state_shapes(n: int) -> list[tuple[tuple[int, ...], torch.dtype]]:
            return [((n,), own_matched.dtype), ((n,), torch.int64), ((width, n), torch.float64),
                    ((width, n), torch.int64)]

        state = [own_matched, torch.zeros(y.n, dtype=torch.int64, device=device),
                 torch.full((width, y.n), -math.inf, dtype=torch.float64, device=device),
                 torch.full((width, y.n), -1, dtype=torch.int64, device=device)]

        def visit(step: Visit, visiting: Rows, state: list[torch.Tensor]) -> None:
            nonlocal row_values, row_index
            matched, col_rank, col_values, col_index = state
            offset = 0 if step.own else x.n  # columns sit after the own rows in the reductions' layout
            block: list = list(free)
            step_ranks = RankCount(own_matched if step.own else torch.cat([own_matched, matched])) if ranks else None
            step_top = TopK(x.n, offset + visiting.n, k, device) if top else None
            block += [r for r in (step_ranks, step_top) if r is not None]
            if step.own:
                stream_pairs(x, visiting, block, tile=tile, backend=self.passes)
            else:  # sums and histograms through their all-pairs twins (centred exp-sums), positions tile by tile
                if free:
                    stream_between(x, visiting, free, tile=tile)
                stream_block(x, visiting, block[len(free):], tile=tile, col_offset=offset)
            if step_ranks is not None:
                row_rank.add_(step_ranks.rows[: x.n])
                col_rank.add_(step_ranks.cols[offset:])
            if step_top is not None:
                found_rows = step_top.row_index
                found_rows = torch.where(found_rows >= 0, found_rows - offset + self.starts[step.shard], found_rows)
                row_values, row_index = keep_best(row_values, row_index, step_top.row_values, found_rows, dim=1)
                found_cols = step_top.col_index[:, offset:]
                found_cols = torch.where(found_cols >= 0, found_cols + self.start, found_cols)
                state[2], state[3] = keep_best(col_values, col_index, step_top.col_values[:, offset:], found_cols,
                                               dim=0)
            self._visited()

        final = ring_pass(self.group, y, self.sizes, False, visit, state=state, state_shapes=state_shapes,
                          what="the cross pass")
        # the column state this rank ends with is that of the last shard it visited
        last = visits(self.group.rank, self.group.world, False)[-1].shard
        if ranks is not None:
            ranks.rows = self._in_order(row_rank, self.group.rank, "gathering row ranks")
            ranks.cols = self._in_order(final[1], last, "gathering column ranks")
            ranks.ties_counted = False  # the ring carries the rank counts, not the tie counts
        if top is not None:
            top.row_values = self._in_order(row_values, self.group.rank, "gathering top-k", dim=0)
            top.row_index = self._in_order(row_index, self.group.rank, "gathering top-k", dim=0)
            top.col_values = self._in_order(final[2], last, "gathering top-k", dim=1)
            top.col_index = self._in_order(final[3], last, "gathering top-k", dim=1)

    def _in_order(self, part: torch.Tensor, shard: int, what: str, dim: int = 0) -> torch.Tensor:
        """Every rank's ``part`` (the statistics of shard ``shard`` along ``dim``) concatenated in shard order."""
        shards = self.group.all_gather_objects(shard, what)
        shapes = []
        for s in shards:
            shape = list(part.shape)
            shape[dim] = self.sizes[s]
            shapes.append(tuple(shape))
        parts = self.group.all_gather_shaped(part, shapes, what)
        ordered = [p for _, p in sorted(zip(shards, parts, strict=True), key=lambda item: item[0])]
        return torch.cat([p.to(part.device) for p in ordered], dim=dim)
