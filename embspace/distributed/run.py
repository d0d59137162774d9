"""A measurement over K ranks: each family as the sharded form of the single-process computation.

Every rank computes the statistics of its shard with the same functions as one process, and the statistics merge
by their own rules: moment sums, Gram matrices, histogram and rank counts add (float64 / int64 all-reduce);
sums of exponentials merge with their log-shifts (:meth:`ExpSum._add`); top-k candidates merge with the engine's
``_keep_best``. Pairwise families run one ring pass per problem (:mod:`embspace.distributed.ring`). Every rank
returns the same :class:`~embspace.report.Report`, but for the inputs' content hashes, which rank 0 alone computes.
"""

from __future__ import annotations

import dataclasses
import math
import sys
from contextlib import contextmanager
from typing import Any

import numpy as np
import torch

from embspace.distributed.group import Group
from embspace.distributed.plan import Visit, ring_steps, shard_bounds
from embspace.distributed.ring import ring_pass, rows_of, stream_between, stream_block
from embspace.distributed.shards import PickedRows
from embspace.embeddings import Embeddings
from embspace.kernels.budget import Plan
from embspace.kernels.pairwise import (
    ExpSum,
    Histogram,
    RankCount,
    Reduction,
    TopK,
    _keep_best,
    matched_similarities,
    stream_pairs,
    tile_product,
)
from embspace.kernels.rows import ResidentRows, Rows
from embspace.measure import _Run
from embspace.metrics import centroid, retrieval, separability, spectrum, uniformity


class ShardedRun(_Run):
    """:class:`~embspace.measure._Run` whose rows are this rank's shard; results merged across the group."""

    def __init__(self, group: Group, embeddings: dict[str, Embeddings], families: list[str],
                 settings: dict[str, Any], progress: bool, layout: Plan) -> None:
        super().__init__(embeddings, families, settings, progress and group.main, layout)
        self.group = group
        self.n = next(iter(embeddings.values())).n
        self.sizes = [stop - start for start, stop in shard_bounds(self.n, group.world)]
        self.start = shard_bounds(self.n, group.world)[group.rank][0]
        tiles = group.all_gather(torch.tensor([self.plan.tile]), "agreeing on the tile")  # budgets may differ
        self.plan = dataclasses.replace(self.plan, tile=int(torch.cat(tiles).min()))
        settings["distributed"] = {**group.describe(), "schedule": "ring", "shard_rows": self.sizes,
                                   "ring_steps": {"symmetric": ring_steps(group.world, True),
                                                  "cross": ring_steps(group.world, False)}}

    @contextmanager
    def bar(self):
        """Rank 0's bar, one step per shard it visits in the ring passes (its 1/K share of every pass: the ranks
        move in step, each waiting for the next shard). The other ranks show none."""
        if not self.show_progress:
            yield
            return
        from tqdm.auto import tqdm

        world, names = self.group.world, self.names
        within, cross = ring_steps(world, True), ring_steps(world, False) if len(names) == 2 else 0
        per_family = {"uniformity": len(names) * within + cross, "histograms": len(names) * within + cross,
                      "retrieval": cross}
        total = sum(per_family[family] for family in self.exact_pairwise())
        with tqdm(total=total, desc=f"measuring (rank 0 of {world})", unit="shard", file=sys.stderr,
                  leave=False) as bar:
            self.advance = bar.update
            yield

    def _visited(self) -> None:
        """One shard of a ring pass done (the bar of rank 0)."""
        if self.advance is not None:
            self.advance(1)

    def compute(self, rows: dict[str, Rows], alpha_req_range: tuple[int, int] | None) -> None:
        super().compute(rows, alpha_req_range)
        self.group.all_gather_objects(True, "finishing")  # every rank got here: the report is complete

    def _content_hash(self, embeddings: Embeddings) -> str | None:
        """The input's hash on rank 0 (a sequential hash: rank 0 reads every row once, after the last exchange);
        the other ranks, which write nothing, leave it out (None)."""
        return super()._content_hash(embeddings) if self.group.main else None

    # --- merges -------------------------------------------------------------------------------------------------

    def _sum(self, values: torch.Tensor, what: str) -> torch.Tensor:
        return self.group.all_reduce(values, what)

    def _merge_moments(self, sums: centroid.MomentSums, dim: int, what: str) -> centroid.MomentSums:
        total = sums.total if sums.total is not None else torch.zeros(dim, dtype=torch.float64)
        packed = self._sum(torch.cat([total.double().cpu(), torch.tensor([sums.squares, sums.n], dtype=torch.float64)]),
                           what)
        return centroid.MomentSums(n=int(packed[-1]), total=packed[:dim], squares=float(packed[dim]))

    def _merge_exp(self, acc: ExpSum, what: str) -> float:
        """log Σ over all ranks' ExpSums (each kept as shift + log(total))."""
        merged = ExpSum(acc.t, symmetric=acc.symmetric, exclude_diagonal=acc.exclude_diagonal)
        parts = self.group.all_gather(torch.tensor([acc.shift, acc.total], dtype=torch.float64), what)
        for part in parts:
            merged._add(float(part[0]), float(part[1]))
        return merged.log_sum()

    def _ring(self, x: ResidentRows, y: ResidentRows | None, reductions: list[Reduction], what: str) -> None:
        """One ring pass of a problem whose reductions ignore positions (sums, histograms)."""
        tile = self.plan.tile

        def visit(step: Visit, visiting: Rows, state: list[torch.Tensor]) -> None:
            if step.own:
                stream_pairs(x, y, reductions, tile=tile)
            else:
                r0, r1, c0, c1 = step.block(x.n, visiting.n)
                stream_between(rows_of(x, r0, r1), rows_of(visiting, c0, c1), reductions, tile=tile)
            self._visited()

        ring_pass(self.group, x if y is None else y, self.sizes, y is None, visit, what=what)

    # --- families -----------------------------------------------------------------------------------------------

    def _exact(self, rows: dict[str, Rows], what: str, compute) -> None:
        compute(rows)  # no out-of-memory retry: one rank retrying alone would leave the others waiting

    def _moment_sums(self, rows: Rows) -> centroid.MomentSums:
        return self._merge_moments(centroid.moment_sums(rows), rows.dim, "merging the moment sums")

    def _pair_sums(self, x: Rows, y: Rows) -> centroid.PairSums:
        local = centroid.pair_sums(x, y, self.settings["alpha"])
        merged = centroid.PairSums(alpha=local.alpha)
        merged.x = self._merge_moments(local.x, x.dim, "merging the moment sums")
        merged.y = self._merge_moments(local.y, y.dim, "merging the moment sums")
        pair = self._sum(torch.tensor([local.dots, local.distances, local.n], dtype=torch.float64), "merging pairs")
        merged.dots, merged.distances, merged.n = float(pair[0]), float(pair[1]), int(pair[2])
        return merged

    def _gram(self, rows: Rows) -> spectrum.Gram:
        local = spectrum.Gram.of_rows(rows)
        return spectrum.Gram(self.n, self._sum(local.gram, "merging Gram matrices"),
                             self._sum(local.total, "merging Gram matrices"))

    def _pairwise(self, rows: dict[str, Rows], families: tuple[str, ...]) -> None:
        """The exact N² families, each in its own ring passes (one ring schedule per family)."""
        if "uniformity" in families:
            self._uniformity(rows)
        if "retrieval" in families:
            self._retrieval(*(rows[n] for n in self.names))
        if "histograms" in families:
            self._histograms(rows)

    def _uniformity(self, rows: dict[str, Rows]) -> None:
        t = self.settings["t"]
        sums = {}
        for name in self.names:
            acc = ExpSum(t, symmetric=True, exclude_diagonal=True)
            self._ring(rows[name], None, [acc], f"uniformity of {name}")
            sums[name] = self._merge_exp(acc, "merging uniformity sums")
        n = self.n
        if len(self.names) == 1:
            self.metrics["uniformity"] = {self.names[0]: uniformity.log_mean(sums[self.names[0]], n * (n - 1) // 2)}
            return
        a, b = self.names
        cross = ExpSum(t, symmetric=False, exclude_diagonal=True)
        self._ring(rows[a], rows[b], [cross], "cross uniformity")
        matched = self.group.all_gather(torch.tensor([uniformity.matched_log_sum(rows[a], rows[b], t)],
                                                     dtype=torch.float64), "merging matched sums")
        matched_log = float(torch.logsumexp(torch.cat(matched), 0))
        self.metrics["uniformity"] = uniformity.uniformity_variants(
            sums[a], sums[b], self._merge_exp(cross, "merging cross sums"), matched_log, n, names=(a, b))

    def _retrieval(self, x: Rows, y: Rows) -> None:
        a, b = self.names
        ks, k = self.settings["recall_ks"], self.settings["hubness_k"]
        rows_rank, rows_top, cols = self._retrieval_pass(x, y, k)
        cols_rank, cols_top = cols
        counts = torch.tensor([[int((rank < kk).sum()) for kk in ks] for rank in (rows_rank, cols_rank)],
                              dtype=torch.int64)  # (2, len(ks))
        counts = self._sum(counts, "merging recall counts")
        occurrence = torch.stack([
            torch.from_numpy(retrieval.k_occurrence(rows_top, self.n)),  # (N,) how often each y is a neighbour
            torch.from_numpy(retrieval.k_occurrence(cols_top, self.n))])  # (N,) how often each x is a neighbour
        occurrence = self._sum(occurrence, "merging k-occurrences").numpy()
        if "retrieval" in self.families:
            for i, kk in enumerate(ks):
                self.metrics[f"recall@{kk}"] = {f"{a}->{b}": int(counts[0, i]) / self.n,
                                                f"{b}->{a}": int(counts[1, i]) / self.n}
        if "hubness" in self.families:
            self.metrics["hubness"] = {f"{a}->{b}": retrieval.skewness(occurrence[0]),
                                       f"{b}->{a}": retrieval.skewness(occurrence[1])}

    def _retrieval_pass(self, x: Rows, y: ResidentRows, k: int):
        """Ranks and top-k of this rank's rows (x) over all columns, and of one shard's columns over all rows.

        The column statistics of a Y shard (ranks, top-k values and global row indices) travel with it around the
        ring; the row statistics stay. Returns (row ranks, row top-k indices, (column ranks, column top-k indices)).
        """
        tile, device = self.plan.tile, x.device
        width = min(k, self.n)  # (the single-process TopK keeps min(k, N))
        sizes, starts = self.sizes, [start for start, _ in shard_bounds(self.n, self.group.world)]
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
            ranks = RankCount(own_matched if step.own else torch.cat([own_matched, matched]))
            top = TopK(x.n, offset + visiting.n, k, device)
            if step.own:
                stream_pairs(x, visiting, [ranks, top], tile=tile)
            else:
                stream_block(x, visiting, [ranks, top], tile=tile, col_offset=offset)
            row_rank.add_(ranks.rows[: x.n])
            col_rank.add_(ranks.cols[offset:])
            found = top.row_index
            found = torch.where(found >= 0, found - offset + starts[step.shard], found)
            row_values, row_index = _keep_best(row_values, row_index, top.row_values, found, dim=1)
            found = top.col_index[:, offset:]
            found = torch.where(found >= 0, found + self.start, found)
            state[2], state[3] = _keep_best(col_values, col_index, top.col_values[:, offset:], found, dim=0)
            self._visited()

        final = ring_pass(self.group, y, sizes, False, visit, state=state, state_shapes=state_shapes,
                          what="retrieval")
        return row_rank, row_index, (final[1], final[3])

    def _separability(self, x: Rows, y: Rows) -> None:
        """Fahim et al.'s probe, run on rank 0 on the seeded pairs one process would draw, their rows gathered there."""
        seed = self.settings["seed"]
        max_pairs = self.group.broadcast_object(self._separability_pairs(x.dim), "agreeing on the probe's pairs")
        size = min(self.n, max_pairs)
        pairs = np.sort(np.random.default_rng(seed).choice(self.n, size=size, replace=False))  # as the probe draws
        bounds = shard_bounds(self.n, self.group.world)
        cuts = [tuple(int(i) for i in np.searchsorted(pairs, bound)) for bound in bounds]  # per rank: its slice
        picked = []
        for rows in (x, y):
            lo, hi = cuts[self.group.rank]
            mine = torch.from_numpy(separability.gather_rows(rows, pairs[lo:hi] - self.start))  # (p_r, D) float64
            shapes = [(b - a, rows.dim) for a, b in cuts]
            parts = self.group.gather(mine, shapes, "gathering rows for the probe")
            picked.append(None if parts is None else torch.cat(parts).cpu())
        if self.group.main:
            held = [PickedRows(r.source, self.n, r.dim, torch.device("cpu"), torch.float64, index=pairs, data=data)
                    for r, data in zip((x, y), picked, strict=True)]
            super()._separability(*held)
        shared = self.group.broadcast_object((self.metrics.get("linear_separability"),
                                              self.settings.get("separability")), "sharing the probe's result")
        self.metrics["linear_separability"] = shared[0]
        self.settings["separability"] = {**shared[1], "computed_on": "rank 0, from rows gathered from every rank"}

    def _histograms(self, rows: dict[str, Rows]) -> None:
        bins = self.settings["histogram_bins"]
        within = {}
        for name in self.names:
            hist = Histogram(bins, symmetric=True, device=rows[name].device)
            self._ring(rows[name], None, [hist], f"histogram of {name}")
            within[name] = self._sum(hist.within, "merging histograms").cpu().tolist()
        self.histograms = {"edges": hist.edges.tolist()}
        if len(self.names) == 2:
            a, b = self.names
            cross = Histogram(bins, symmetric=False, device=rows[a].device)
            self._ring(rows[a], rows[b], [cross], "cross histogram")
            self.histograms["matched"] = self._sum(cross.matched, "merging histograms").cpu().tolist()
            self.histograms["unmatched"] = self._sum(cross.unmatched, "merging histograms").cpu().tolist()
        self.histograms["within"] = within
