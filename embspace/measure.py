"""`measure`: the whole geometry suite on one or two modalities, returned as a :class:`~embspace.report.Report`.

>>> import numpy as np, embspace
>>> rng = np.random.default_rng(0)
>>> image, text = rng.normal(size=(200, 16)) + 2, rng.normal(size=(200, 16)) - 2
>>> report = embspace.measure(image=image, text=text, metrics="gap,uniformity")
>>> round(report["gap"], 2) > 1.0
True
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterable, Mapping
from contextlib import contextmanager
from datetime import datetime, timezone
from functools import partial
from typing import Any

import numpy as np
import torch

from embspace.embeddings import Embeddings
from embspace.errors import InputError
from embspace.kernels.budget import Plan, parse_size, plan, retry_on_oom, tile_within
from embspace.kernels.pairwise import DEFAULT_BINS, DEFAULT_TILE, ExpSum, Histogram, count_tiles, stream_pairs
from embspace.kernels.rows import (
    Rows,
    StreamedRows,
    as_embeddings,
    available_memory,
    matmul_precision,
    precision_name,
    prepare_rows,
    resolve_device,
    resolve_precision,
)
from embspace.metrics import centroid, retrieval, sampled, separability, spectrum, uniformity
from embspace.metrics.conventions import convention
from embspace.report import Report, flatten

PAIRED_FAMILIES = ("gap", "alignment", "rmg", "retrieval", "hubness", "separability")
SINGLE_FAMILIES = ("cone", "uniformity", "spectrum", "histograms")
FAMILIES = ("gap", "alignment", "cone", "rmg", "uniformity", "spectrum", "retrieval", "hubness", "separability",
            "histograms")
ALIASES = {
    "centroid_cosine": "gap", "gap_direction": "gap", "matched_cosine": "alignment", "recall": "retrieval",
    "rankme": "spectrum", "effective_rank": "spectrum", "participation_ratio": "spectrum", "alpha_req": "spectrum",
    "linear_separability": "separability", "uniformity_mean": "uniformity", "uniformity_joint": "uniformity",
    "uniformity_cross": "uniformity", "histogram": "histograms",
}
HISTOGRAM_CONVENTION = ("counts of the cosine similarity x̂·ŷ in equal bins over [−1, 1] (numpy.histogram's edges and "
                        "half-open bins): matched = true pairs i = j, unmatched = cross-modal pairs i ≠ j, "
                        "within = pairs i < j of each modality; exact")

ESTIMATES = ("auto", "exact", "sampled")
SAMPLE_ABOVE = 200_000  # rows per modality above which estimate="auto" samples the N² families
PAIRS = 1_000_000  # sampled pairs per uniformity variant and similarity histogram
QUERIES = 10_000  # sampled queries per recall direction

Data = Embeddings | np.ndarray | torch.Tensor


def parse_metrics(metrics: str | Iterable[str] | None) -> list[str]:
    """``"uniformity,gap"`` or a list → the families to compute, in canonical order; None or "all" → every one."""
    if metrics is None:
        return list(FAMILIES)
    names = [m.strip() for m in (metrics.split(",") if isinstance(metrics, str) else metrics) if m.strip()]
    if names == ["all"]:
        return list(FAMILIES)
    chosen = set()
    for name in names:
        family = ALIASES.get(name, name)
        if family not in FAMILIES:
            raise InputError("--metrics", f"unknown metric {name!r}; choose from {', '.join(FAMILIES)} (or all)")
        chosen.add(family)
    return [f for f in FAMILIES if f in chosen]


def measure(
    modalities: Mapping[str, Data] | None = None,
    /,
    *,
    metrics: str | Iterable[str] | None = None,
    t: float = 2.0,
    alpha: float = 2.0,
    device: str = "auto",
    precision: str = "auto",
    normalize: bool = True,
    drop_invalid: bool = False,
    recall_ks: tuple[int, ...] = retrieval.RECALL_KS,
    hubness_k: int = retrieval.HUBNESS_K,
    alpha_req_range: tuple[int, int] | None = None,
    histogram_bins: int = DEFAULT_BINS,
    seed: int = 0,
    tile: int = DEFAULT_TILE,
    memory: int | str | None = None,
    estimate: str = "auto",
    sample_above: int = SAMPLE_ABOVE,
    pairs: int = PAIRS,
    queries: int = QUERIES,
    backend: str | None = None,
    progress: bool = False,
    **named: Data,
) -> Report:
    """Measure the embedding space of one modality or of two paired ones.

    Args:
        modalities: name → N×D array, tensor or :class:`~embspace.embeddings.Embeddings`; or pass them by keyword
            (``measure(image=X, text=Y)``). Row i of every modality is one pair.
        metrics: families to compute (``"gap,uniformity"``); default all of them. One modality gets the
            single-modality families only (cone, uniformity, spectrum).
        t: uniformity temperature. alpha: alignment exponent.
        device: ``"auto"`` (CUDA when present), ``"cpu"`` or ``"cuda"``.
        precision: tile precision, ``auto`` (``fp16`` tiles with fp32 accumulation on CUDA, ``fp32`` on the CPU,
            where half matrix products are slow) / ``fp64`` / ``fp32`` / ``tf32`` / ``bf16`` / ``fp16``; sums are
            float64 always. The report records the resolved name.
        normalize: L2-normalise rows (every metric is defined on unit rows); ``False`` refuses rows whose norm is
            not 1 (within 1e-3) instead.
        drop_invalid: drop rows with NaN/Inf or zero norm (pair-consistently) instead of refusing them.
        recall_ks, hubness_k, alpha_req_range, seed: metric settings (see each metric's docstring).
        histogram_bins: bins over [−1, 1] of the similarity histograms (the ``histograms`` family, stored in
            ``report.histograms``: matched, unmatched and within-modality pairs).
        tile: rows per tile of the pairwise engine (at most; halved until tiles fit the memory budget).
        memory: the memory budget in bytes, or a size such as ``"512MB"`` / ``"8GB"`` (default: free memory on
            the device). Rows stay resident only within a quarter of it, otherwise they are streamed from their
            source; tiles and row blocks are sized to fit; an out-of-memory retries with half the tile.
        estimate: ``exact`` (every pair), ``sampled`` (uniformity and similarity histograms from ``pairs`` random
            pairs, recall from ``queries`` random queries ranked against every candidate, each with a 95 %
            interval in ``report.uncertainty``), or ``auto``: sampled above ``sample_above`` rows. Hubness, gap,
            cone, alignment, RMG and spectrum are exact either way (see :mod:`embspace.metrics.sampled`).
        backend: the pairwise engine: ``"auto"`` (the fused Triton kernels on CUDA where they run, torch
            otherwise), ``"torch"`` or ``"triton"`` (an error where the kernels cannot run); None reads
            ``$EMBSPACE_BACKEND`` (default ``auto``). The report records the resolved one (``torch`` or
            ``triton``) in ``settings["backend"]``, and in ``settings["pairwise_passes"]`` how many tiled passes
            each path really ran (under ``auto`` a pass without a fused kernel runs on torch). See
            :mod:`embspace.kernels.fused`.
        progress: show a progress bar on stderr.
    """
    from embspace import distributed as sharded
    from embspace.kernels import fused

    given = {**(dict(modalities) if modalities else {}), **named}
    families = _families(given, metrics)
    if histogram_bins < 1:
        raise InputError("--histogram-bins", f"needs at least 1 bin, got {histogram_bins}")
    torch_device = resolve_device(device)
    group = sharded.join(device)  # None in a single process; under torchrun each rank measures its row shard
    precision = precision_name(precision, torch_device)
    dtype = resolve_precision(precision)
    resolved_backend = fused.resolve_backend(backend, torch_device, dtype)
    passes = "torch" if resolved_backend == "torch" else fused.requested_backend(backend)[0]  # auto stays auto
    budget = parse_size(memory) if memory is not None else available_memory(torch_device)
    embeddings, layout = _validated(given, families, budget, tile, drop_invalid, group)
    method = (choose_estimate(estimate, next(iter(embeddings.values())).n, sample_above, pairs, queries)
              if group is None else sharded.exact_estimate(estimate))
    settings = {
        "t": t, "alpha": alpha, "device": torch_device.type, "precision": precision, "backend": resolved_backend,
        "normalize": normalize,
        "metrics": families, "recall_ks": list(recall_ks), "hubness_k": hubness_k, "seed": seed, "tile": layout.tile,
        "drop_invalid": drop_invalid, "histogram_bins": histogram_bins,
        "estimate": {"method": method, "requested": estimate, "sample_above": sample_above,
                     **({"pairs": pairs, "queries": queries} if method == "sampled" else {})},
        "memory": {"budget": budget, "given": memory is not None},
    }
    run = (_Run(embeddings, families, settings, progress, layout) if group is None
           else sharded.ShardedRun(group, embeddings, families, settings, progress, layout))
    with matmul_precision(precision), fused.use_backend(passes) as passes_run, run.bar():
        rows = {name: prepare_rows(emb, torch_device, dtype, require_normalized=not normalize, memory_budget=budget,
                                   chunk_rows=layout.block_rows) if group is None
                else sharded.resident_shard(group, emb, torch_device, dtype, require_normalized=not normalize,
                                            chunk_rows=layout.block_rows)
                for name, emb in embeddings.items()}
        settings["memory"]["streamed"] = [name for name, r in rows.items() if isinstance(r, StreamedRows)]
        run.compute(rows, alpha_req_range=alpha_req_range)
        settings["pairwise_passes"] = dict(passes_run)  # which path each tiled pass really took
    return run.report()


def check_inputs(
    modalities: Mapping[str, Data] | None = None,
    /,
    *,
    metrics: str | Iterable[str] | None = None,
    device: str = "auto",
    memory: int | str | None = None,
    tile: int = DEFAULT_TILE,
    drop_invalid: bool = False,
    **named: Data,
) -> dict[str, Embeddings]:
    """Open and validate the modalities exactly as :func:`measure` does before it measures (one streamed scan:
    NaN/Inf and zero-norm rows, unpaired rows, dimensions), and return them validated; nothing is measured.
    Bad input raises :class:`~embspace.errors.InputError` naming file, key and row: how a run of several dumps
    refuses a bad one before it writes any report."""
    given = {**(dict(modalities) if modalities else {}), **named}
    families = _families(given, metrics)
    budget = parse_size(memory) if memory is not None else available_memory(resolve_device(device))
    return _validated(given, families, budget, tile, drop_invalid)[0]


def _families(given: Mapping[str, Data], metrics: str | Iterable[str] | None) -> list[str]:
    """The families to compute for one modality or two paired ones."""
    if not 1 <= len(given) <= 2:
        raise InputError("measure", f"takes one modality or two paired ones, got {len(given)}")
    families = parse_metrics(metrics)
    return families if len(given) == 2 else [f for f in families if f in SINGLE_FAMILIES]


def _validated(given: Mapping[str, Data], families: list[str], budget: int, tile: int, drop_invalid: bool,
               group: Any = None) -> tuple[dict[str, Embeddings], Plan]:
    """The modalities opened and validated (each rank its shard under torchrun), and the memory plan."""
    from embspace import distributed as sharded
    from embspace.io import validate

    paired = len(given) == 2
    unread = {name: as_embeddings(data, _source(name, data)) for name, data in given.items()}
    layout = plan(budget, max(e.dim for e in unread.values()), tile)
    check = validate if group is None else partial(sharded.validate_shards, group)
    embeddings = check(unread, paired=paired,
                       same_dim=paired and bool(set(families) & {*PAIRED_FAMILIES, "uniformity"}),
                       drop_invalid=drop_invalid, chunk_rows=layout.block_rows)
    return embeddings, layout


def choose_estimate(estimate: str, n: int, sample_above: int, pairs: int, queries: int) -> str:
    """``exact`` or ``sampled`` for N rows per modality: ``auto`` samples above ``sample_above`` rows.

    Sampling that would draw more than (2N)² pairs — more than every ordered pair of the joint set of both
    modalities, the largest set a uniformity variant averages over — costs more than the exact pass and is less
    accurate, so the exact estimate is chosen instead (the report's ``settings["estimate"]`` then shows
    ``"requested": "sampled"`` with ``"method": "exact"``): ``--pairs 10**15`` on 64 rows ends at once instead of
    drawing pairs for days."""
    if estimate not in ESTIMATES:
        raise InputError("--estimate", f"unknown estimator {estimate!r}; choose one of {', '.join(ESTIMATES)}")
    for option, value, least in (("--sample-above", sample_above, 0), ("--pairs", pairs, 2), ("--queries", queries, 1)):
        if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < least:
            raise InputError(option, f"must be an integer ≥ {least}, got {value!r}")
    method = estimate if estimate != "auto" else "sampled" if n > sample_above else "exact"
    if method == "sampled" and int(pairs) > (2 * int(n)) ** 2:
        return "exact"  # more draws than the exact pass has terms: exact is cheaper, and exact
    return method


def _source(name: str, data: Data) -> str:
    return data.source if isinstance(data, Embeddings) else f"<{name}: {type(data).__name__}>"


SPECTRUM_KEYS = ("rankme", "effective_rank", "effective_rank_centered", "participation_ratio", "alpha_req")


def in_table_order(metrics: dict[str, Any]) -> dict[str, Any]:
    """The metrics in the order of the table: centroid metrics (gap … cone), uniformity, spectrum, recall@k,
    hubness, separability (a stable sort: the order within each group is kept)."""

    def group(key: str) -> int:
        if key.startswith("recall@"):
            return 3
        return {"uniformity": 1, "hubness": 4, "linear_separability": 5}.get(key, 2 if key in SPECTRUM_KEYS else 0)

    return dict(sorted(metrics.items(), key=lambda item: group(item[0])))


class _Run:
    """One measurement: computes the requested families and collects values, conventions and timings."""

    def __init__(self, embeddings: dict[str, Embeddings], families: list[str], settings: dict[str, Any],
                 progress: bool, layout: Plan) -> None:
        self.embeddings = embeddings
        self.plan = layout
        self.sampled = settings["estimate"]["method"] == "sampled"
        self.uncertainty: dict[str, dict[str, Any]] = {}
        self.names = list(embeddings)
        self.families = families
        self.settings = settings
        self.show_progress = progress
        self.metrics: dict[str, Any] = {}
        self.timings: dict[str, float] = {}
        self.vectors: dict[str, list[float]] = {}
        self.spectra: dict[str, dict[str, list[float]]] = {}
        self.histograms: dict[str, Any] = {}
        self.advance: Callable[[int], None] | None = None

    @contextmanager
    def bar(self):
        if not self.show_progress:
            yield
            return
        from tqdm.auto import tqdm

        n = next(iter(self.embeddings.values())).n
        families = self.exact_pairwise()
        total = 0
        if {"uniformity", "histograms"} & set(families):
            total += len(self.names) * count_tiles(n, None, self.plan.tile)
        if families and len(self.names) == 2:
            total += count_tiles(n, n, self._cross_tile(families))
        with tqdm(total=total, desc="measuring", unit="tile", file=sys.stderr, leave=False) as bar:
            self.advance = bar.update
            yield

    @contextmanager
    def timed(self, family: str):
        start = time.perf_counter()
        yield
        self.timings[family] = round(self.timings.get(family, 0.0) + time.perf_counter() - start, 6)

    def compute(self, rows: dict[str, Rows], alpha_req_range: tuple[int, int] | None) -> None:
        names, fams = self.names, set(self.families)
        if len(names) == 2 and fams & {"gap", "alignment", "cone", "rmg"}:
            with self.timed("centroid"):
                self._centroid(*(rows[n] for n in names))
        elif "cone" in fams:
            with self.timed("cone"):
                self.metrics["cone"] = {n: self._moment_sums(rows[n]).cone() for n in names}
        if self.sampled and fams & {"uniformity", "histograms"}:
            with self.timed("uniformity" if "uniformity" in fams else "histograms"):
                self._sampled_pairs(rows)
        pairwise = self.exact_pairwise()
        if pairwise:
            with self.timed("+".join(pairwise)):
                self._pairwise(rows, pairwise)
        if "spectrum" in fams:
            with self.timed("spectrum"):
                self._spectrum(rows, alpha_req_range)
        if self.sampled and "retrieval" in fams and "hubness" not in fams:
            with self.timed("retrieval"):
                values, self.uncertainty["retrieval"] = sampled.recall(
                    *(rows[n] for n in names), names, ks=self.settings["recall_ks"],
                    queries=self.settings["estimate"]["queries"], seed=self.settings["seed"], tile=self.plan.tile)
                self.metrics.update(values)
        if "separability" in fams:
            with self.timed("separability"):
                self._separability(*(rows[n] for n in names))
        self.metrics = in_table_order(self.metrics)
        self.settings["tile"] = self.plan.tile

    def _exact(self, rows: dict[str, Rows], what: str, compute: Callable[[dict[str, Rows]], None]) -> None:
        """One exact pass; after an out-of-memory it is rerun from scratch with half the tile and row blocks."""

        def attempt(layout: Plan) -> None:
            self.plan = layout
            compute(rows)

        def shrink(layout: Plan) -> None:
            for r in rows.values():
                r.max_rows = layout.block_rows

        retry_on_oom(attempt, self.plan, what=f"the exact {what} pass", on_retry=shrink)

    def exact_pairwise(self) -> tuple[str, ...]:
        """The families computed exactly from the tiles of X̂·Ŷᵀ, in one pass per pair space: uniformity,
        retrieval (recall and hubness; exact whenever hubness is asked for) and histograms, those requested."""
        fams = set(self.families)
        wanted = {"uniformity": "uniformity" in fams and not self.sampled,
                  "retrieval": bool(fams & {"retrieval", "hubness"}) and not (self.sampled and "hubness" not in fams),
                  "histograms": "histograms" in fams and not self.sampled}
        return tuple(family for family, asked in wanted.items() if asked)

    def _cross_tile(self, families: tuple[str, ...]) -> int:
        """The tile of the cross pass: with retrieval, top-k tables and rank counts (N·k) come out of the budget
        first and the tiles fit what is left."""
        if "retrieval" not in families:
            return self.plan.tile
        n = next(iter(self.embeddings.values())).n
        return tile_within(self.plan, retrieval.state_bytes(n, n, self.settings["hubness_k"]))

    def _sampled_pairs(self, rows: dict[str, Rows]) -> None:
        fams = set(self.families)
        values, uncertainty, histograms = sampled.uniformity_and_histograms(
            rows, t=self.settings["t"], pairs=self.settings["estimate"]["pairs"], seed=self.settings["seed"],
            uniformity="uniformity" in fams, histogram_bins=self.settings["histogram_bins"] if "histograms" in fams
            else None, budget=self.plan.budget)
        if values:
            self.metrics["uniformity"] = values
            self.uncertainty["uniformity"] = uncertainty
        self.histograms = histograms

    # Per-shard statistics: a sharded run (embspace.distributed) overrides these to merge them across ranks.
    def _moment_sums(self, rows: Rows) -> centroid.MomentSums:
        return centroid.moment_sums(rows)

    def _pair_sums(self, x: Rows, y: Rows) -> centroid.PairSums:
        return centroid.pair_sums(x, y, self.settings["alpha"])

    def _gram(self, rows: Rows) -> spectrum.Gram:
        return spectrum.Gram.of_rows(rows)

    def _separability_pairs(self, dim: int) -> int:
        """Pairs the probe may use: at most separability.MAX_PAIRS, fewer (down to 1,000) when a quarter of the
        budget is smaller."""
        return min(separability.MAX_PAIRS, max(self.plan.budget // 4 // (48 * dim), 1000))

    def _separability(self, x: Rows, y: Rows) -> None:
        result = separability.linear_separability(x, y, seed=self.settings["seed"],
                                                  max_pairs=self._separability_pairs(x.dim))
        self.metrics["linear_separability"] = result["accuracy"]
        self.settings["separability"] = {"pairs_used": result["pairs_used"], "test_pairs": result["test_pairs"],
                                         "C": 1.0}

    def _centroid(self, x: Rows, y: Rows) -> None:
        a, b = self.names
        values = centroid.centroid_metrics(self._pair_sums(x, y))
        fams = set(self.families)
        if "gap" in fams:
            self.metrics["gap"] = values["gap"]
            self.metrics["centroid_cosine"] = values["centroid_cosine"]
            self.vectors["gap_direction"] = values["gap_direction"].tolist()
        if "alignment" in fams:
            self.metrics["alignment"] = values["alignment"]
            self.metrics["matched_cosine"] = values["matched_cosine"]
        if "rmg" in fams:
            self.metrics["rmg"] = values["rmg"]
        if "cone" in fams:
            self.metrics["cone"] = {a: values["cone_x"], b: values["cone_y"]}

    def _spectrum(self, rows: dict[str, Rows], fit_range: tuple[int, int] | None) -> None:
        results = {n: spectrum.spectrum_metrics(self._gram(rows[n]), fit_range) for n in self.names}
        for key in SPECTRUM_KEYS:
            self.metrics[key] = {n: r[key] for n, r in results.items()}
        self.settings["alpha_req_range"] = {n: list(r["alpha_req_range"]) for n, r in results.items()}
        self.spectra = {n: {"singular_values": r["singular_values"].tolist(),
                            "singular_values_centered": r["singular_values_centered"].tolist()}
                        for n, r in results.items()}

    def _pairwise(self, rows: dict[str, Rows], families: tuple[str, ...]) -> None:
        """Uniformity, retrieval and histograms (``families``: those asked for) from one pass per pair space.

        Each modality against itself feeds its exp-sum (U) and its within histogram (pairs i < j); for a pair, the
        cross pass over X̂·Ŷᵀ feeds the cross exp-sum (i ≠ j), the recall ranks and top-k tables, and the matched /
        unmatched histogram. Each tile is computed once and handed to every reduction that needs it. A pass that
        runs out of memory is rerun alone, with half the tile (:meth:`_exact`); the passes done before it stand.
        """
        t, bins, label = self.settings["t"], self.settings["histogram_bins"], "+".join(families)
        sums: dict[str, ExpSum] = {}
        within: dict[str, Histogram] = {}
        for name in self.names if {"uniformity", "histograms"} & set(families) else ():

            def within_pass(r: dict[str, Rows], name: str = name) -> None:  # rerun whole after an out-of-memory
                acc = ExpSum(t, symmetric=True, exclude_diagonal=True) if "uniformity" in families else None
                hist = Histogram(bins, symmetric=True, device=r[name].device) if "histograms" in families else None
                stream_pairs(r[name], None, [q for q in (acc, hist) if q is not None], tile=self.plan.tile,
                             progress=self.advance)
                if acc is not None:
                    sums[name] = acc
                if hist is not None:
                    within[name] = hist

            self._exact(rows, label, within_pass)
        cross: dict[str, Any] = {}
        if len(self.names) == 2:

            def cross_pass(r: dict[str, Rows]) -> None:
                x, y = (r[n] for n in self.names)
                tile = self._cross_tile(families)  # after a retry: from the halved plan
                found = {"sum": ExpSum(t, symmetric=False, exclude_diagonal=True) if "uniformity" in families
                         else None,
                         "hist": Histogram(bins, symmetric=False, device=x.device) if "histograms" in families
                         else None}
                if "retrieval" in families:
                    found["ranks"], found["top"] = retrieval.retrieval_reductions(
                        x, y, hubness_k=self.settings["hubness_k"], tile=tile)
                stream_pairs(x, y, [q for q in found.values() if q is not None], tile=tile, progress=self.advance)
                cross.update(found)

            self._exact(rows, label, cross_pass)
        if "uniformity" in families:
            self._uniformity_from(rows, {n: acc.log_sum() for n, acc in sums.items()}, cross.get("sum"))
        if "retrieval" in families:
            self._retrieval_from(retrieval.retrieval_results(cross["ranks"], cross["top"], self.settings["recall_ks"]))
        if "histograms" in families:
            self.histograms = {"edges": next(iter(within.values())).edges.tolist()}
            if cross.get("hist") is not None:
                self.histograms.update(cross["hist"].counts())
            self.histograms["within"] = {n: h.counts()["within"] for n, h in within.items()}

    def _uniformity_from(self, rows: dict[str, Rows], log_sums: dict[str, float], cross: ExpSum | None) -> None:
        """The uniformity variants from the exp-sums of each modality (and of the cross pairs)."""
        n_rows = rows[self.names[0]].n
        if cross is None:
            name = self.names[0]
            self.metrics["uniformity"] = {name: uniformity.log_mean(log_sums[name], n_rows * (n_rows - 1) // 2)}
            return
        a, b = self.names
        self.metrics["uniformity"] = uniformity.uniformity_variants(
            log_sums[a], log_sums[b], cross.log_sum(), uniformity.matched_log_sum(rows[a], rows[b], self.settings["t"]),
            n_rows, names=(a, b))

    def _retrieval_from(self, result: dict[str, object]) -> None:
        """recall@k and hubness, both ways, from the exact pass's results."""
        a, b = self.names
        if "retrieval" in self.families:
            for k in self.settings["recall_ks"]:
                self.metrics[f"recall@{k}"] = {f"{a}->{b}": result["recall_x->y"][k],
                                               f"{b}->{a}": result["recall_y->x"][k]}
        if "hubness" in self.families:
            self.metrics["hubness"] = {f"{a}->{b}": result["hubness_x->y"], f"{b}->{a}": result["hubness_y->x"]}

    def _content_hash(self, embeddings: Embeddings) -> str | None:
        from embspace.io.digest import content_hash

        return content_hash(embeddings, self.plan.block_rows)  # row blocks of the memory budget; same hash

    def report(self) -> Report:
        from embspace import __version__
        from embspace.report import environment

        with self.timed("content_hash"):  # provenance: which rows were measured (embspace.io.digest)
            inputs = {n: {"source": e.source, "n": e.n, "dim": e.dim, "dtype": e.dtype_name, "dropped": e.dropped,
                          "content_hash": self._content_hash(e)} for n, e in self.embeddings.items()}
        conventions = {name: convention(name) for name in self.metrics if convention(name)}
        if self.histograms:
            conventions["histograms"] = HISTOGRAM_CONVENTION
        uncertainty = {path: {"method": "exact"} for path in flatten(self.metrics)}
        for family in self.uncertainty.values():
            uncertainty.update(family)
        return Report(inputs=inputs, settings=self.settings, metrics=self.metrics, uncertainty=uncertainty,
                      conventions=conventions, timings=self.timings, vectors=self.vectors, spectra=self.spectra,
                      histograms=self.histograms, environment=environment(str(self.settings["device"])),
                      embspace_version=__version__, created=datetime.now(timezone.utc).isoformat(timespec="seconds"))
