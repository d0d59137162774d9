"""`measure`: the whole geometry suite on one or two modalities, returned as a :class:`~embspace.report.Report`.

>>> import numpy as np, embspace
>>> rng = np.random.default_rng(0)
>>> image, text = rng.normal(size=(200, 16)) + 2, rng.normal(size=(200, 16)) - 2
>>> report = embspace.measure(image=image, text=text, metrics="gap,uniformity")
>>> round(report["gap"], 2) > 1.0
True
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from functools import partial
from typing import Any

import numpy as np
import torch

from embspace import distributed as sharded
from embspace import options
from embspace.distributed.executor import ShardedExecutor
from embspace.embeddings import Embeddings
from embspace.errors import InputError
from embspace.executor import LocalExecutor
from embspace.families import FAMILIES, PAIRED_FAMILIES, SINGLE_FAMILIES, parse_metrics
from embspace.families.directions import select as select_directions
from embspace.io.validate import validate
from embspace.kernels.backend import matmul_precision, use_backend
from embspace.kernels.budget import Plan, parse_size, plan
from embspace.kernels.engine import resolve_compute
from embspace.kernels.pairwise import DEFAULT_BINS, DEFAULT_TILE
from embspace.kernels.rows import StreamedRows, as_embeddings, available_memory, prepare_rows
from embspace.label_families import with_label_families
from embspace.labels import check_label_inputs
from embspace.metrics.retrieval import HUBNESS_K, RECALL_KS
from embspace.metrics.zeroshot import DEFAULT_LOGIT_SCALE
from embspace.report import Report
from embspace.runner import Measurement

ESTIMATES = ("auto", "exact", "sampled")
SAMPLE_ABOVE = 200_000  # rows per modality above which estimate="auto" samples the N² families
PAIRS = 1_000_000  # sampled pairs per uniformity variant and similarity histogram
QUERIES = 10_000  # sampled queries per recall direction

Data = Embeddings | np.ndarray | torch.Tensor

__all__ = ["ESTIMATES", "FAMILIES", "PAIRS", "QUERIES", "SAMPLE_ABOVE", "check_inputs", "choose_estimate", "measure",
           "parse_metrics"]


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
    recall_ks: tuple[int, ...] = RECALL_KS,
    hubness_k: int = HUBNESS_K,
    alpha_req_range: tuple[int, int] | None = None,
    alpha_req_fit: str = "reptrix",
    rmg_floor: str = "source",
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
    labels: Any = None,
    prompts: Any = None,
    logit_scale: float = DEFAULT_LOGIT_SCALE,
    pair_ids: Any = None,
    directions: Mapping[str, Any] | str | None = None,
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
        alpha_req_fit: ``"reptrix"`` (the authors' 1/k-weighted fit, default k = 11…100) or ``"ols"`` (unweighted,
            every eigenvalue); ``alpha_req_range`` replaces either default range (:mod:`embspace.metrics.spectrum`).
        rmg_floor: ``"source"`` (Schrodi et al.'s ``compute_rmg``: 1e-3 replaces only a matched distance ≤ 0) or
            ``"clamp"`` (max(d_m, 1e-3)); see :mod:`embspace.families.rmg`.
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
        labels, prompts, logit_scale: one integer class per row (an (N,) array for every modality, or a mapping
            name → array), one prompt embedding per class ((C, D): zero-shot scores every labelled modality of
            dimension D) and the softmax scale of the zero-shot logits (default 100, CLIP's). With labels the label
            families run (``zeroshot`` needs prompts too; ``classes``, ``probe``); without, they are left out
            (see :mod:`embspace.labels`, :mod:`embspace.families.zeroshot`).
        pair_ids: many-to-many pairs (modalities of different row counts): for each row of one modality the row
            of the other it belongs to (MSCOCO: each caption's image), or ``{name: ids}`` shared item ids for both;
            an integer array or ``PATH[:KEY]`` (.npy, .npz, .parquet, clip-retrieval metadata). See
            :mod:`embspace.pairs` and :mod:`embspace.manytomany` (which families use which rows).
        directions: subspace name → (k, D) array of directions in the embedding space, or the path of an
            ``.npz`` of them: the ``directions`` family (variance along each subspace, the gap's share in it;
            :mod:`embspace.families.directions`) runs only when they are given.
    """
    given = {**(dict(modalities) if modalities else {}), **named}
    if pair_ids is not None:
        from embspace.manytomany import measure_many

        if labels is not None or prompts is not None or directions is not None:
            raise InputError("pair_ids", "labels=, prompts= and directions= measure 1:1 pairs; give them without "
                                         "pair_ids")

        return measure_many(given, pair_ids, dict(
            metrics=metrics, t=t, alpha=alpha, device=device, precision=precision, normalize=normalize,
            drop_invalid=drop_invalid, recall_ks=recall_ks, hubness_k=hubness_k, alpha_req_range=alpha_req_range,
            histogram_bins=histogram_bins, seed=seed, tile=tile, memory=memory, estimate=estimate,
            sample_above=sample_above, pairs=pairs, queries=queries, backend=backend, progress=progress,
            alpha_req_fit=alpha_req_fit, rmg_floor=rmg_floor), measure=measure, check_inputs=check_inputs)
    families = select_directions(_families(given, metrics), metrics, directions)
    options.check_measure_options(t=t, alpha=alpha, histogram_bins=histogram_bins, recall_ks=recall_ks,
                                  hubness_k=hubness_k, tile=tile, seed=seed, alpha_req_range=alpha_req_range)
    if histogram_bins < 1:
        raise InputError("histogram_bins", f"needs at least 1 bin, got {histogram_bins}")
    compute = resolve_compute(device, precision, backend)
    group = sharded.join(device)  # None in a single process; under torchrun each rank measures its row shard
    budget = parse_size(memory, "memory") if memory is not None else available_memory(compute.device)
    defer = group is None and not drop_invalid  # rows validated by the O(N·D) pass, where they are first read
    embeddings, layout = _validated(given, families, budget, tile, drop_invalid, group, check_rows=not defer)
    label_set = check_label_inputs(labels, prompts, logit_scale, embeddings)
    families = with_label_families(families, metrics, label_set, sharded=group is not None)
    method = (choose_estimate(estimate, next(iter(embeddings.values())).n, sample_above, pairs, queries)
              if group is None else sharded.exact_estimate(estimate))
    settings = {
        "t": t, "alpha": alpha, "device": compute.device.type, "precision": compute.precision,
        "backend": compute.backend, "normalize": normalize,
        "metrics": families, "recall_ks": list(recall_ks), "hubness_k": hubness_k, "seed": seed, "tile": layout.tile,
        "drop_invalid": drop_invalid, "histogram_bins": histogram_bins,
        "estimate": {"method": method, "requested": estimate, "sample_above": sample_above,
                     **({"pairs": pairs, "queries": queries} if method == "sampled" else {})},
        "memory": {"budget": budget, "given": memory is not None},
    }
    if label_set is not None:
        settings["labels"] = label_set.settings({name: e.dim for name, e in embeddings.items()})
    executor = (LocalExecutor(layout, compute.passes, validate_rows=defer) if group is None
                else ShardedExecutor(group, embeddings, settings, layout, compute.passes))
    run = Measurement(embeddings, families, settings, executor, progress,
                      options={"alpha_req_range": alpha_req_range, "alpha_req_fit": alpha_req_fit,
                               "rmg_floor": rmg_floor, "labels": label_set, "directions": directions})
    with matmul_precision(compute.precision), use_backend(compute.passes) as passes_run, run.bar():
        rows = {name: prepare_rows(emb, compute.device, compute.dtype, require_normalized=not normalize,
                                   memory_budget=budget, chunk_rows=layout.block_rows,
                                   resident=run.reads_rows_again(), fill=False) if group is None
                else sharded.resident_shard(group, emb, compute.device, compute.dtype,
                                            require_normalized=not normalize, chunk_rows=layout.block_rows)
                for name, emb in embeddings.items()}
        settings["memory"]["streamed"] = [name for name, r in rows.items() if isinstance(r, StreamedRows)]
        run.compute(rows)
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
    budget = parse_size(memory, "memory") if memory is not None else available_memory(resolve_compute(device).device)
    return _validated(given, families, budget, tile, drop_invalid)[0]


def _families(given: Mapping[str, Data], metrics: str | Iterable[str] | None) -> list[str]:
    """The families to compute for one modality or two paired ones."""
    if not 1 <= len(given) <= 2:
        raise InputError("measure", f"takes one modality or two paired ones, got {len(given)}")
    families = parse_metrics(metrics)
    return families if len(given) == 2 else [f for f in families if f in SINGLE_FAMILIES]


def _validated(given: Mapping[str, Data], families: list[str], budget: int, tile: int, drop_invalid: bool,
               group: Any = None, check_rows: bool = True) -> tuple[dict[str, Embeddings], Plan]:
    """The modalities opened and validated (each rank its shard under torchrun), and the memory plan;
    ``check_rows=False``: shapes only, the rows are validated by the O(N·D) pass (:mod:`embspace.row_pass`)."""
    paired = len(given) == 2
    unread = {name: as_embeddings(data, _source(name, data)) for name, data in given.items()}
    layout = plan(budget, max(e.dim for e in unread.values()), tile)
    check = partial(validate, check_rows=check_rows) if group is None else partial(sharded.validate_shards, group)
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
        raise InputError("estimate", f"unknown estimator {estimate!r}; choose one of {', '.join(ESTIMATES)}")
    for option, value, least in (("sample_above", sample_above, 0), ("pairs", pairs, 2), ("queries", queries, 1)):
        if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < least:
            raise InputError(option, f"must be an integer ≥ {least}, got {value!r}")
    method = estimate if estimate != "auto" else "sampled" if n > sample_above else "exact"
    if method == "sampled" and int(pairs) > (2 * int(n)) ** 2:
        return "exact"  # more draws than the exact pass has terms: exact is cheaper, and exact
    return method


def _source(name: str, data: Data) -> str:
    return data.source if isinstance(data, Embeddings) else f"<{name}: {type(data).__name__}>"
