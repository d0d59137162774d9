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
from typing import Any

import numpy as np
import torch

from embspace.embeddings import Embeddings
from embspace.errors import InputError
from embspace.kernels.pairwise import DEFAULT_BINS, DEFAULT_TILE, ExpSum, Histogram, count_tiles, stream_pairs
from embspace.kernels.rows import (
    Rows,
    as_embeddings,
    matmul_precision,
    prepare_rows,
    resolve_device,
    resolve_precision,
)
from embspace.metrics import centroid, retrieval, separability, spectrum, uniformity
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
    precision: str = "fp32",
    normalize: bool = True,
    drop_invalid: bool = False,
    recall_ks: tuple[int, ...] = retrieval.RECALL_KS,
    hubness_k: int = retrieval.HUBNESS_K,
    alpha_req_range: tuple[int, int] | None = None,
    histogram_bins: int = DEFAULT_BINS,
    seed: int = 0,
    tile: int = DEFAULT_TILE,
    memory: int | None = None,
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
        precision: tile precision, ``fp64`` / ``fp32`` / ``tf32`` / ``bf16`` / ``fp16``; sums are float64 always.
        normalize: L2-normalise rows (every metric is defined on unit rows); ``False`` refuses rows whose norm is
            not 1 (within 1e-3) instead.
        drop_invalid: drop rows with NaN/Inf or zero norm (pair-consistently) instead of refusing them.
        recall_ks, hubness_k, alpha_req_range, seed: metric settings (see each metric's docstring).
        histogram_bins: bins over [−1, 1] of the similarity histograms (the ``histograms`` family, stored in
            ``report.histograms``: matched, unmatched and within-modality pairs).
        tile: rows per tile of the pairwise engine. memory: bytes the resident rows may take (default: free memory).
        progress: show a progress bar on stderr.
    """
    from embspace.io import validate

    given = {**(dict(modalities) if modalities else {}), **named}
    if not 1 <= len(given) <= 2:
        raise InputError("measure", f"takes one modality or two paired ones, got {len(given)}")
    families = parse_metrics(metrics)
    if histogram_bins < 1:
        raise InputError("--histogram-bins", f"needs at least 1 bin, got {histogram_bins}")
    paired = len(given) == 2
    if not paired:
        families = [f for f in families if f in SINGLE_FAMILIES]
    embeddings = validate({name: as_embeddings(data, _source(name, data)) for name, data in given.items()},
                          paired=paired, same_dim=paired and bool(set(families) & {*PAIRED_FAMILIES, "uniformity"}),
                          drop_invalid=drop_invalid)
    torch_device = resolve_device(device)
    dtype = resolve_precision(precision)
    settings = {
        "t": t, "alpha": alpha, "device": torch_device.type, "precision": precision, "normalize": normalize,
        "metrics": families, "recall_ks": list(recall_ks), "hubness_k": hubness_k, "seed": seed, "tile": tile,
        "drop_invalid": drop_invalid, "histogram_bins": histogram_bins,
    }
    run = _Run(embeddings, families, settings, progress)
    with matmul_precision(precision), run.bar():
        rows = {name: prepare_rows(emb, torch_device, dtype, require_normalized=not normalize, memory_budget=memory)
                for name, emb in embeddings.items()}
        run.compute(rows, alpha_req_range=alpha_req_range)
    return run.report()


def _source(name: str, data: Data) -> str:
    return data.source if isinstance(data, Embeddings) else f"<{name}: {type(data).__name__}>"


class _Run:
    """One measurement: computes the requested families and collects values, conventions and timings."""

    def __init__(self, embeddings: dict[str, Embeddings], families: list[str], settings: dict[str, Any],
                 progress: bool) -> None:
        self.embeddings = embeddings
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
        tile = self.settings["tile"]
        total = 0
        if "uniformity" in self.families:
            total += len(self.names) * count_tiles(n, None, tile) + (count_tiles(n, n, tile) if len(self.names) == 2
                                                                    else 0)
        if {"retrieval", "hubness"} & set(self.families):
            total += count_tiles(n, n, tile)
        if "histograms" in self.families:
            total += len(self.names) * count_tiles(n, None, tile) + (count_tiles(n, n, tile) if len(self.names) == 2
                                                                    else 0)
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
                self.metrics["cone"] = {n: centroid.moment_sums(rows[n]).cone() for n in names}
        if "uniformity" in fams:
            with self.timed("uniformity"):
                self._uniformity(rows)
        if "spectrum" in fams:
            with self.timed("spectrum"):
                self._spectrum(rows, alpha_req_range)
        if fams & {"retrieval", "hubness"}:
            with self.timed("retrieval"):
                self._retrieval(*(rows[n] for n in names))
        if "separability" in fams:
            with self.timed("separability"):
                result = separability.linear_separability(*(rows[n] for n in names), seed=self.settings["seed"])
                self.metrics["linear_separability"] = result["accuracy"]
                self.settings["separability"] = {"pairs_used": result["pairs_used"],
                                                 "test_pairs": result["test_pairs"], "C": 1.0}
        if "histograms" in fams:
            with self.timed("histograms"):
                self._histograms(rows)

    def _centroid(self, x: Rows, y: Rows) -> None:
        a, b = self.names
        values = centroid.centroid_metrics(centroid.pair_sums(x, y, self.settings["alpha"]))
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

    def _uniformity(self, rows: dict[str, Rows]) -> None:
        t, tile = self.settings["t"], self.settings["tile"]
        sums = {n: uniformity.self_exp_sum(rows[n], t, tile=tile, progress=self.advance).log_sum()
                for n in self.names}
        n_rows = rows[self.names[0]].n
        if len(self.names) == 1:
            self.metrics["uniformity"] = {self.names[0]: uniformity.log_mean(sums[self.names[0]],
                                                                             n_rows * (n_rows - 1) // 2)}
            return
        a, b = self.names
        cross = ExpSum(t, symmetric=False, exclude_diagonal=True)
        stream_pairs(rows[a], rows[b], [cross], tile=tile, progress=self.advance)
        variants = uniformity.uniformity_variants(sums[a], sums[b], cross.log_sum(),
                                                  uniformity.matched_log_sum(rows[a], rows[b], t), n_rows)
        self.metrics["uniformity"] = {a: variants["x"], b: variants["y"], "mean": variants["mean"],
                                      "joint": variants["joint"], "cross": variants["cross"]}

    def _spectrum(self, rows: dict[str, Rows], fit_range: tuple[int, int] | None) -> None:
        results = {n: spectrum.spectrum_metrics(spectrum.Gram.of_rows(rows[n]), fit_range) for n in self.names}
        for key in ("rankme", "effective_rank", "effective_rank_centered", "participation_ratio", "alpha_req"):
            self.metrics[key] = {n: r[key] for n, r in results.items()}
        self.settings["alpha_req_range"] = {n: list(r["alpha_req_range"]) for n, r in results.items()}
        self.spectra = {n: {"singular_values": r["singular_values"].tolist(),
                            "singular_values_centered": r["singular_values_centered"].tolist()}
                        for n, r in results.items()}

    def _retrieval(self, x: Rows, y: Rows) -> None:
        a, b = self.names
        result = retrieval.retrieval_metrics(x, y, ks=self.settings["recall_ks"], hubness_k=self.settings["hubness_k"],
                                             tile=self.settings["tile"], progress=self.advance)
        if "retrieval" in self.families:
            for k in self.settings["recall_ks"]:
                self.metrics[f"recall@{k}"] = {f"{a}->{b}": result["recall_x->y"][k],
                                               f"{b}->{a}": result["recall_y->x"][k]}
        if "hubness" in self.families:
            self.metrics["hubness"] = {f"{a}->{b}": result["hubness_x->y"], f"{b}->{a}": result["hubness_y->x"]}

    def _histograms(self, rows: dict[str, Rows]) -> None:
        """Similarity histograms: within each modality (i < j) and, for a pair, matched (i = j) and unmatched."""
        bins, tile = self.settings["histogram_bins"], self.settings["tile"]
        within = {}
        for name in self.names:
            hist = Histogram(bins, symmetric=True, device=rows[name].device)
            stream_pairs(rows[name], None, [hist], tile=tile, progress=self.advance)
            within[name] = hist.counts()["within"]
        self.histograms = {"edges": hist.edges.tolist()}
        if len(self.names) == 2:
            cross = Histogram(bins, symmetric=False, device=rows[self.names[0]].device)
            stream_pairs(rows[self.names[0]], rows[self.names[1]], [cross], tile=tile, progress=self.advance)
            self.histograms.update(cross.counts())
        self.histograms["within"] = within

    def report(self) -> Report:
        from embspace import __version__
        from embspace.io.digest import content_hash
        from embspace.report import environment

        with self.timed("content_hash"):  # provenance: which rows were measured (embspace.io.digest)
            inputs = {n: {"source": e.source, "n": e.n, "dim": e.dim, "dtype": e.dtype_name, "dropped": e.dropped,
                          "content_hash": content_hash(e)} for n, e in self.embeddings.items()}
        conventions = {name: convention(name) for name in self.metrics if convention(name)}
        if self.histograms:
            conventions["histograms"] = HISTOGRAM_CONVENTION
        uncertainty = {path: {"method": "exact"} for path in flatten(self.metrics)}
        return Report(inputs=inputs, settings=self.settings, metrics=self.metrics, uncertainty=uncertainty,
                      conventions=conventions, timings=self.timings, vectors=self.vectors, spectra=self.spectra,
                      histograms=self.histograms, environment=environment(str(self.settings["device"])),
                      embspace_version=__version__, created=datetime.now(timezone.utc).isoformat(timespec="seconds"))
