"""Computes the statistics a run's families need, in one process: each distinct statistic once.

The needs (:mod:`embspace.families.base`) are grouped by kind and computed in a fixed order: first the O(N·D)
pass (:mod:`embspace.row_pass`: each row block read once, validated, hashed, normalised, written into the rows held
for later passes, and summed into the pair sums (``centroid``), the moments of each modality (``cone``) and the Gram
matrices (``spectrum``) together), then the sampled pairs, the exact pairwise passes — one per pair space: each
modality against itself, then one against the other, each tile handed to every reduction that needs it — the
sampled queries (``retrieval``) and the probe's rows (``separability``). A pass that runs out of memory is rerun
alone with half the tile (the passes before it stand).
:class:`embspace.distributed.executor.ShardedExecutor` computes the same statistics across ranks.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from embspace import row_pass
from embspace.embeddings import Embeddings
from embspace.families.base import Context, Need, PairPass, RowStat, Sampled, Statistics
from embspace.io.digest import content_hash
from embspace.io.duplicates import duplicate_rows
from embspace.kernels.budget import Plan, retry_on_oom, tile_within
from embspace.kernels.engine import stream_pairs
from embspace.kernels.pairwise import count_tiles
from embspace.kernels.rows import ResidentRows, Rows
from embspace.metrics import sampled, separability, uniformity
from embspace.spaces.sums import SpaceSums, sums_of_rows

CROSS = "cross"


class Needs:
    """A run's needs grouped by kind, each distinct statistic once, in the order the families asked."""

    def __init__(self, needs: list[Need], names: tuple[str, ...]) -> None:
        unique = list(dict.fromkeys(needs))
        self.rows = [n for n in unique if isinstance(n, RowStat)]
        self.passes: dict[str, list[PairPass]] = {}
        for space in (*names, CROSS):
            found = [n for n in unique if isinstance(n, PairPass) and n.space == space]
            if found:
                self.passes[space] = found
        self.sampled: dict[str, Sampled] = {}
        for need in (n for n in needs if isinstance(n, Sampled)):  # equal keys, options merged
            known = self.sampled.get(need.what)
            options = {**need.options, **(known.options if known else {})}
            self.sampled[need.what] = Sampled(need.what, label=known.label if known else need.label, options=options)
        self.pass_label = "+".join(dict.fromkeys(n.label for n in unique if isinstance(n, PairPass)))

    def row(self, kind: str) -> list[RowStat]:
        return [n for n in self.rows if n.kind == kind]


class LocalExecutor:
    """The statistics of one process's rows. ``passes`` is the backend the pairwise calls are handed."""

    def __init__(self, layout: Plan, passes: str, validate_rows: bool = False) -> None:
        self.plan = layout
        self.passes = passes
        self.validate_rows = validate_rows  # the O(N·D) pass refuses NaN / Inf and zero rows (no scan before it)
        self.advance: Callable[[int], None] | None = None
        self.timings: dict[str, float] = {}
        self._timing_key: dict[Need, str] = {}
        self._provenance: dict[int, tuple[Embeddings, str, int]] = {}  # id → (embeddings, hash, duplicates)

    # --- what a run sees ----------------------------------------------------------------------------------------

    @contextmanager
    def bar(self, context: Context, needs: Needs, show: bool) -> Iterator[None]:
        """A progress bar on stderr counting the tiles of the exact passes."""
        if not show:
            yield
            return
        from tqdm.auto import tqdm

        total = sum(count_tiles(context.n, None if space != CROSS else context.n, self._tile(space, found))
                    for space, found in needs.passes.items())
        with tqdm(total=total, desc="measuring", unit="tile", file=sys.stderr, leave=False) as bar:
            self.advance = bar.update
            yield

    @contextmanager
    def timed(self, key: str) -> Iterator[None]:
        start = time.perf_counter()
        yield
        self.timings[key] = round(self.timings.get(key, 0.0) + time.perf_counter() - start, 6)

    def timing_key(self, need: Need) -> str:
        """The timing a need's statistic was recorded under (a family's finish is added to it)."""
        return self._timing_key.get(need, need.label)

    def compute(self, context: Context, needs: Needs, rows: dict[str, Rows]) -> Statistics:
        stats = Statistics()
        names = context.names
        self.row_pass(context, needs, rows, stats)
        if "pairs" in needs.sampled:
            need = needs.sampled["pairs"]
            with self.timed(self._key(need, need.label)):
                stats[need] = sampled.uniformity_and_histograms(
                    rows, t=context.settings["t"], pairs=context.settings["estimate"]["pairs"],
                    seed=context.settings["seed"], uniformity=bool(need.options.get("uniformity")),
                    histogram_bins=need.options.get("bins"), budget=self.plan.budget)
        if needs.passes:
            label = needs.pass_label
            with self.timed(label):
                for space, found in needs.passes.items():
                    for need in found:
                        self._timing_key[need] = label
                    x, y = (rows[names[0]], rows[names[1]]) if space == CROSS else (rows[space], None)
                    self.pairwise(context, space, found, x, y, stats, label)
                for need in needs.row("matched_log_sum"):
                    self._timing_key[need] = label
                    stats[need] = self.matched_log_sum(rows[names[0]], rows[names[1]], context.settings["t"])
        if "recall" in needs.sampled:
            need = needs.sampled["recall"]
            with self.timed(self._key(need, need.label)):
                settings = context.settings
                stats[need] = sampled.recall(rows[names[0]], rows[names[1]], names, ks=settings["recall_ks"],
                                             queries=settings["estimate"]["queries"], seed=settings["seed"],
                                             tile=self.plan.tile)
        for need in needs.row("space_sums"):
            with self.timed(self._key(need, need.label)):
                stats[need] = self.space_sums(rows[names[0]], rows[names[1]])
        for need in needs.row("probe_rows"):
            with self.timed(self._key(need, need.label)):
                stats[need] = self.probe_rows(rows[names[0]], rows[names[1]], need.options["index"])
        for need in needs.row("label_rows"):  # the label families' rows (embspace.families.labelled)
            with self.timed(self._key(need, need.label)):
                index = need.options["index"]
                stats[need] = index, separability.gather_rows(rows[need.modality], index)
        return stats

    def row_pass(self, context: Context, needs: Needs, rows: dict[str, Rows], stats: Statistics) -> None:
        """The O(N·D) statistics (pair sums, moments, Gram matrices) in one pass over the rows
        (:mod:`embspace.row_pass`), which also validates rows read from their source (where no scan came before),
        hashes them for the report and fills the rows held for the passes after it."""
        served = [n for n in needs.rows if n.kind in row_pass.PASS_KINDS]
        label = "+".join(dict.fromkeys(n.label for n in served)) or "rows"
        pairs = [n for n in served if n.kind == "pair_sums"]
        wanted = row_pass.Wanted(
            names=context.names, alpha=context.settings["alpha"] if pairs else None,
            moments=frozenset(n.modality for n in served if n.kind == "moments"),
            grams=frozenset(n.modality for n in served if n.kind == "gram"),
            provenance=self.hashes_in_pass, validate=self.validate_rows)
        if not served and not any(row_pass.reads_source(r) and (wanted.provenance or wanted.validate or
                                                                isinstance(r, ResidentRows)) for r in rows.values()):
            return
        with self.timed(label):
            found = self.merged(row_pass.run(rows, wanted, scan_rows=self.plan.block_rows), rows)
        for name, digest in found.content_hashes.items():
            embeddings = rows[name].embeddings
            self._provenance[id(embeddings)] = (embeddings, digest, found.duplicate_rows[name])
        for need in served:
            self._timing_key[need] = label
            stats[need] = (found.pair_sums if need.kind == "pair_sums" else
                           found.moments[need.modality] if need.kind == "moments" else found.grams[need.modality])

    hashes_in_pass = True  # a rank of a sharded run hashes nothing of its shard (rank 0 hashes every row)

    def merged(self, found: row_pass.Results, rows: dict[str, Rows]) -> row_pass.Results:
        """The pass's statistics of every process's rows (one process: its own)."""
        return found

    def _key(self, need: Need, key: str) -> str:
        self._timing_key[need] = key
        return key

    def _tile(self, space: str, found: list[PairPass]) -> int:
        """The tile of a pass: with state that grows with N (top-k tables, rank counts) that comes out of the
        budget first and the tiles fit what is left."""
        return tile_within(self.plan, sum(n.state_bytes for n in found)) if space == CROSS else self.plan.tile

    # --- the statistics (a sharded executor merges each across ranks) -----------------------------------------

    def space_sums(self, x: Rows, y: Rows) -> SpaceSums:
        """The sums of two spaces over the same rows (:mod:`embspace.spaces.sums`): CKA, Procrustes."""
        return sums_of_rows(x, y)

    def matched_log_sum(self, x: Rows, y: Rows, t: float) -> float:
        return uniformity.matched_log_sum(x, y, t)

    def probe_rows(self, x: Rows, y: Rows, index: Any) -> tuple[Any, Any, Any, str | None]:
        """The probe's pairs ``index`` gathered as float64 arrays, and where they were computed (None: here)."""
        return index, separability.gather_rows(x, index), separability.gather_rows(y, index), None

    def pairwise(self, context: Context, space: str, found: list[PairPass], x: Rows, y: Rows | None,
                 stats: Statistics, label: str) -> None:
        """One exact pass over a pair space into every reduction asked of it; rerun whole, with half the tile and
        row blocks, after an out-of-memory."""
        rows = [r for r in (x, y) if r is not None]

        def attempt(layout: Plan) -> None:
            self.plan = layout
            tile = self._tile(space, found)  # after a retry: from the halved plan
            reductions = [need.make(context, x, y, tile) for need in found]
            stream_pairs(x, y, reductions, tile=tile, progress=self.advance, backend=self.passes)
            for need, reduction in zip(found, reductions, strict=True):
                stats[need] = reduction

        def shrink(layout: Plan) -> None:
            for r in rows:
                r.max_rows = layout.block_rows

        retry_on_oom(attempt, self.plan, what=f"the exact {label} pass", on_retry=shrink)

    def content_hash(self, embeddings: Embeddings) -> str | None:
        known = self._provenance.get(id(embeddings))
        if known is not None and known[0] is embeddings:  # hashed by the O(N·D) pass
            return known[1]
        return content_hash(embeddings, self.plan.block_rows)  # row blocks of the memory budget; same hash

    def duplicate_rows(self, embeddings: Embeddings) -> int:
        """N − the number of distinct stored rows (:mod:`embspace.io.duplicates`)."""
        known = self._provenance.get(id(embeddings))
        if known is not None and known[0] is embeddings:
            return known[2]
        return duplicate_rows(embeddings, self.plan.block_rows)

    def finished(self) -> None:
        """Called once every statistic and family is done (a sharded executor waits for every rank)."""
