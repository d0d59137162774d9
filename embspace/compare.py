"""`compare(before, after)`: each metric's change between two reports, and whether it exceeds the noise.

Without the embeddings, a comparison pairs the numbers of two reports and warns when their settings differ. Given
the embeddings behind both reports (``data_before=``, ``data_after=``: the same N pairs before and after), it adds a
**paired bootstrap over pairs** (Efron & Tibshirani 1993, ch. 16): draw B sets of N pair indices with replacement,
recompute each metric on before and after with the SAME indices, and form the BCa interval (Efron 1987;
:mod:`embspace.bootstrap`) of the B differences; a change is "beyond noise" when that interval excludes 0. Its
coverage is measured by simulation in ``benchmarks/bootstrap_coverage.py`` (docs/compare.md). See
:func:`paired_bootstrap` for what is resampled and at which cost.
"""

from __future__ import annotations

import html
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from embspace.bootstrap import (
    acceleration,
    bca_interval,
    bias_share,
    half_sample_interval,
    half_samples,
    jackknife_blocks,
    percentile_interval,
)
from embspace.errors import InputError
from embspace.families import FAMILIES, REGISTRY, Weighted, in_table_order
from embspace.kernels.threads import single_threaded_scipy_blas
from embspace.label_changes import bootstrap_settings, label_losses
from embspace.metrics.retrieval import RECALL_KS
from embspace.report import Report, format_value
from embspace.significance import MetricTest, Significance

SETTINGS_THAT_CHANGE_VALUES = ("t", "alpha", "normalize", "precision", "recall_ks", "hubness_k", "seed", "drop_invalid",
                               "histogram_bins", "rmg_floor", "alpha_req_fit")

RESAMPLES = 1000
SUBSAMPLE = 2000
BLOCK_ELEMENTS = 4_000_000  # resamples per block × pairs: bounds the (b, N) count matrices
HALF_SAMPLES = 100  # half-samples behind the intervals of the fitted metrics (Procrustes, gap_subspace)
HALF_SAMPLE_POOL = 1_000  # pairs they are drawn from (each half holds 500)
JACKKNIFE_GROUPS = 2_000  # leave-one-pair-out up to this many pairs, delete-one-of-this-many-groups beyond
INTERVALS = ("bca", "percentile")

__all__ = ["Change", "Comparison", "MetricTest", "Significance", "compare", "paired_bootstrap", "provenance_warnings"]


@dataclass
class Change:
    """One number before and after (None where a report lacks it)."""

    path: str
    before: float | None
    after: float | None

    @property
    def delta(self) -> float | None:
        if self.before is None or self.after is None:
            return None
        return self.after - self.before

    @property
    def relative(self) -> float | None:
        delta = self.delta
        if delta is None or self.before == 0:
            return None
        return delta / abs(self.before)


@dataclass
class Comparison:
    """The changes between two reports, the reasons they may not be comparable, and (given the embeddings) which
    changes exceed the noise."""

    before: Report
    after: Report
    changes: list[Change] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    significance: Significance | None = None
    spaces: Any = None  # embspace.spaces.compare.SpaceComparison, with compare(..., spaces=True)

    @property
    def retrieval_losses(self) -> list[str]:
        """Recall@k paths that dropped beyond the noise (empty without a significance test)."""
        return self.significance.retrieval_losses() if self.significance is not None else []

    def table(self) -> str:
        width = max((len(c.path) for c in self.changes), default=10)
        tested = self.significance.metrics if self.significance is not None else {}
        header = f"  {'metric':<{width}} {'before':>10} {'after':>10} {'change':>10}"
        if tested:
            header += f"  {self._ci_label():>22}  beyond noise"
        lines = [header]
        for c in self.changes:
            delta = "—" if c.delta is None else f"{c.delta:+.4f}"
            line = f"  {c.path:<{width}} {format_value(c.before):>10} {format_value(c.after):>10} {delta:>10}"
            if c.path in tested:
                entry = tested[c.path]
                line += f"  {entry.ci_text():>22}  {entry.verdict()}"
            lines.append(line)
        notes = self.significance.notes if self.significance is not None else []
        spaces = [self.spaces.table()] if self.spaces is not None else []
        return "\n".join([*(f"warning: {w}" for w in self.warnings), *lines, *(f"note: {n}" for n in notes),
                          *spaces])

    def _ci_label(self) -> str:
        level = self.significance.confidence if self.significance is not None else 0.95
        return f"{level:.0%} CI of change"

    def __str__(self) -> str:
        return self.table()

    def to_frame(self):  # -> pandas.DataFrame
        import pandas as pd

        tested = self.significance.metrics if self.significance is not None else {}
        rows = []
        for c in self.changes:
            entry = tested.get(c.path)
            rows.append((c.path, c.before, c.after, c.delta, entry.ci[0] if entry else None,
                         entry.ci[1] if entry else None, entry.significant if entry else None))
        return pd.DataFrame(rows, columns=["metric", "before", "after", "change", "ci_low", "ci_high",
                                           "beyond_noise"])

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "warnings": self.warnings,
            "changes": [{"metric": c.path, "before": c.before, "after": c.after, "change": c.delta}
                        for c in self.changes],
        }
        if self.significance is not None:
            out["significance"] = self.significance.to_dict()
        if self.spaces is not None:
            out["spaces"] = self.spaces.to_dict()
        return out

    def _repr_html_(self) -> str:
        tested = self.significance.metrics if self.significance is not None else {}
        rows = []
        for c in self.changes:
            entry = tested.get(c.path)
            extra = f"<td>{entry.ci_text()}</td><td>{entry.verdict()}</td>" if entry else "<td></td><td></td>"
            rows.append(f"<tr><td>{html.escape(c.path)}</td><td>{format_value(c.before)}</td>"
                        f"<td>{format_value(c.after)}</td><td>{'—' if c.delta is None else f'{c.delta:+.4f}'}</td>"
                        f"{extra if tested else ''}</tr>")
        head = "<th>metric</th><th>before</th><th>after</th><th>change</th>"
        if tested:
            head += f"<th>{self._ci_label()}</th><th>beyond noise</th>"
        notes = "".join(f"<p>⚠ {html.escape(w)}</p>" for w in self.warnings)
        return f"<div>{notes}<table><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table></div>"


def compare(
    before: Report | str,
    after: Report | str,
    *,
    data_before: Mapping[str, Any] | Sequence[Any] | None = None,
    data_after: Mapping[str, Any] | Sequence[Any] | None = None,
    resamples: int = RESAMPLES,
    seed: int = 0,
    confidence: float = 0.95,
    subsample: int = SUBSAMPLE,
    recall_ks: Sequence[int] = RECALL_KS,
    labels: Any = None,
    prompts_before: Any = None,
    prompts_after: Any = None,
    pair_ids: Any = None,
    spaces: bool = False,
    space_resamples: int | None = None,
) -> Comparison:
    """Pair every number of two reports (reports or paths to their JSON) and flag differing settings.

    With many-to-many pairs (``pair_ids``, as :func:`embspace.measure` takes it) the bootstrap resamples items, an
    image with all its captions (:func:`embspace.item_bootstrap.item_bootstrap`), instead of pairs.

    With ``data_before`` and ``data_after`` (the embeddings the reports were measured on: two paired modalities
    each, as a mapping name → array or an (A, B) sequence; the same pairs in the same order), add the paired
    bootstrap (:func:`paired_bootstrap`) in ``comparison.significance`` and a warning for every
    recall@k that dropped beyond the noise. With ``labels`` (one class per pair) and the class prompts before and
    after (``prompts_before=``, ``prompts_after=``), zero-shot top-k and ECE are bootstrapped too, and a zero-shot
    drop or an ECE rise beyond the noise is flagged (:mod:`embspace.label_changes`).
    With ``spaces=True`` as well, ``comparison.spaces`` holds the structure
    each modality kept between the two dumps (:func:`embspace.spaces.compare.compare_spaces`: CKA, mutual-kNN,
    Procrustes with intervals, the rows that moved most). ``space_resamples`` half-samples are behind those
    intervals and behind the paired test's Procrustes and gap_subspace (:func:`half_sampled_tests`).
    """
    before = before if isinstance(before, Report) else Report.from_json(before)
    after = after if isinstance(after, Report) else Report.from_json(after)
    old, new = before.flat(), after.flat()
    paths = list(old) + [p for p in new if p not in old]
    changes = [Change(p, _number(old.get(p)), _number(new.get(p))) for p in paths]
    warnings = provenance_warnings(before, after)
    comparison = Comparison(before, after, changes, warnings)
    if (data_before is None) != (data_after is None):
        raise InputError("compare", "the significance test needs the embeddings both before and after")
    if data_before is not None and pair_ids is not None:
        from embspace.item_bootstrap import item_bootstrap

        comparison.significance = item_bootstrap(
            data_before, data_after, pair_ids, resamples=resamples, seed=seed, confidence=confidence,
            recall_ks=recall_ks, alpha=float(after.settings.get("alpha", 2.0)), reported={"before": old, "after": new})
    elif data_before is not None:
        names = tuple(after.modalities) if len(after.modalities) == 2 else None
        comparison.significance = paired_bootstrap(
            data_before, data_after, names=names, resamples=resamples, seed=seed, confidence=confidence,
            subsample=subsample, t=float(after.settings.get("t", 2.0)),
            alpha=float(after.settings.get("alpha", 2.0)), recall_ks=recall_ks,
            reported={"before": old, "after": new}, labels=labels,
            prompts=None if labels is None else (prompts_before, prompts_after),
            logit_scale=after.settings.get("labels", {}).get("logit_scale"),
            rmg_floor=after.settings.get("rmg_floor", "clamp"), half_sample_count=space_resamples or HALF_SAMPLES)
    if data_before is not None:
        warnings.extend(_data_mismatches(comparison.significance, old, new))
        for path in comparison.retrieval_losses:
            entry = comparison.significance.metrics[path]
            warnings.append(f"RETRIEVAL LOSS beyond noise: {path} changed by {entry.change:+.4f} "
                            f"({comparison.significance.confidence:.0%} CI {entry.ci_text()})")
        for path, what in label_losses(comparison.significance.metrics):
            entry = comparison.significance.metrics[path]
            warnings.append(f"{what} beyond noise: {path} changed by {entry.change:+.4f} "
                            f"({comparison.significance.confidence:.0%} CI {entry.ci_text()})")
        if spaces:
            from embspace.spaces.compare import SPACE_RESAMPLES, compare_spaces

            pair = names or ("image", "text")
            as_map = (lambda d: d if isinstance(d, Mapping) else dict(zip(pair, d, strict=False)))  # noqa: E731
            comparison.spaces = compare_spaces(as_map(data_before), as_map(data_after), seed=seed,
                                               confidence=confidence, resamples=space_resamples or SPACE_RESAMPLES)
    return comparison


def provenance_warnings(before: Report, after: Report) -> list[str]:
    """Why two reports' numbers may differ for reasons other than the embeddings' geometry.

    Settings that change values (t, α, precision, seeds, the estimation method, …); the device (the same tiles on
    another device may differ in the last digits); the embspace / torch / numpy versions; the modalities; and an
    input file that holds other data than it did (same source, different content hash). Different data from
    different sources is what a before/after comparison is for and gives no warning. When the content hashes,
    settings, device and versions all agree, the numbers must agree too: any difference is reported as not
    reproduced. Reports holding different metrics, or inputs of different row counts, are said to differ too.
    """
    warnings = [f"setting {key!r} differs: {before.settings.get(key)!r} before, {after.settings.get(key)!r} after"
                for key in SETTINGS_THAT_CHANGE_VALUES if before.settings.get(key) != after.settings.get(key)]
    method = [_estimate(report.settings) for report in (before, after)]
    if method[0] != method[1]:
        warnings.append(f"estimation differs: {method[0]} before, {method[1]} after")
    if before.settings.get("device") != after.settings.get("device"):
        warnings.append(f"device differs: {before.settings.get('device')} before, {after.settings.get('device')} "
                        "after (the same computation may differ in the last digits)")
    versions = {"embspace": (before.embspace_version, after.embspace_version)}
    for package in ("torch", "numpy"):
        versions[package] = (before.environment.get(package), after.environment.get(package))
    for package, (old, new) in versions.items():
        if old and new and old != new:
            warnings.append(f"{package} version differs: {old} before, {new} after")
    if before.modalities != after.modalities:
        warnings.append(f"modalities differ: {before.modalities} before, {after.modalities} after")
        return warnings
    old_paths, new_paths = set(before.flat()), set(after.flat())
    if old_paths != new_paths:
        only = [f"{side}: {', '.join(sorted(paths)[:4])}{', …' if len(paths) > 4 else ''}"
                for side, paths in (("only before", old_paths - new_paths), ("only after", new_paths - old_paths))
                if paths]
        warnings.append(f"the reports hold different metrics ({'; '.join(only)})")
    for name in before.modalities:
        rows = before.inputs[name].get("n"), after.inputs[name].get("n")
        if rows[0] != rows[1]:
            warnings.append(f"input {name!r} has {rows[0]} rows before and {rows[1]} after: not the same pairs")
    same_data = True
    for name in before.modalities:
        old, new = before.inputs[name].get("content_hash"), after.inputs[name].get("content_hash")
        if not (old and new) or old != new:
            same_data = False
        source = before.inputs[name].get("source")
        if old and new and old != new and _is_file(source) and source == after.inputs[name].get("source"):
            warnings.append(f"input {name!r} ({source}) holds different data than when the before report was made: "
                            f"content hash {_short(old)} before, {_short(new)} after")
    if same_data and not warnings:
        old_values, new_values = before.flat(), after.flat()
        differing = [path for path in old_values if path in new_values and not _same(old_values[path],
                                                                                      new_values[path])]
        if differing:
            warnings.append(f"not reproduced: the same inputs and settings gave different values "
                            f"({', '.join(differing[:3])}{', …' if len(differing) > 3 else ''})")
    return warnings


def _same(a: object, b: object) -> bool:
    """Equal values; two NaN (or a NaN and the null it is written as) count as equal."""
    def undefined(v: object) -> bool:
        return v is None or (isinstance(v, float) and math.isnan(v))

    return (undefined(a) and undefined(b)) or a == b


def _estimate(settings: dict[str, Any]) -> str:
    """``exact``, or ``sampled (pairs=…, queries=…)``, from a report's settings (exact when not recorded)."""
    estimate = settings.get("estimate")
    if not isinstance(estimate, dict) or estimate.get("method", "exact") == "exact":
        return "exact"
    sizes = ", ".join(f"{key}={estimate[key]}" for key in ("pairs", "queries") if key in estimate)
    return f"{estimate.get('method')} ({sizes})" if sizes else str(estimate.get("method"))


def _is_file(source: object) -> bool:
    """A source that names a file or folder (``coco.npz:img``), not an in-memory array (``<image: ndarray>``)."""
    return isinstance(source, str) and bool(source) and not source.startswith("<")


def _short(digest: str) -> str:
    algorithm, _, hexdigest = digest.partition(":")
    return f"{algorithm}:{hexdigest[:12]}…" if hexdigest else digest[:24]


def _data_mismatches(significance: Significance, old: dict[str, Any], new: dict[str, Any],
                     tolerance: float = 1e-3) -> list[str]:
    """A warning per side whose embeddings do not reproduce its report's exact O(N·D) metrics."""
    warnings = []
    for side, reported in (("before", old), ("after", new)):
        for path, entry in significance.metrics.items():
            value = _number(reported.get(path))
            data = entry.data_before if side == "before" else entry.data_after
            if entry.method == "all pairs" and value is not None and abs(value - data) > tolerance:
                warnings.append(f"the {side} embeddings do not match the {side} report ({path}: {data:.4f} from "
                                f"the embeddings, {value:.4f} in the report)")
                break
    return warnings


def _number(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return None if math.isnan(value) else float(value)


# ------------------------------------------------------------------------------------------- paired bootstrap
def paired_bootstrap(
    data_before: Mapping[str, Any] | Sequence[Any],
    data_after: Mapping[str, Any] | Sequence[Any],
    *,
    names: tuple[str, str] | None = None,
    resamples: int = RESAMPLES,
    seed: int = 0,
    confidence: float = 0.95,
    subsample: int = SUBSAMPLE,
    t: float = 2.0,
    alpha: float = 2.0,
    recall_ks: Sequence[int] = RECALL_KS,
    reported: Mapping[str, Mapping[str, float]] | None = None,
    interval: str = "bca",
    labels: Any = None,
    prompts: tuple[Any, Any] | None = None,
    logit_scale: float | None = None,
    rmg_floor: str = "source",
    half_sample_count: int = HALF_SAMPLES,
) -> Significance:
    """Paired bootstrap over pairs of the change of every cheap metric (Efron & Tibshirani 1993).

    Resample b = 1…B draws N pair indices with replacement (``numpy.random.default_rng(seed)``); the counts
    w ∈ ℕᴺ, Σw = N, weight the pairs, the same w before and after. On the resampled data:

    * O(N·D), on all N pairs, exactly: gap ‖Σw x̂/N − Σw ŷ/N‖, centroid cosine, matched cosine Σw x̂·ŷ/N,
      alignment Σw ‖x̂ − ŷ‖^α/N, cone (‖Σw x̂‖² − Σw²‖x̂‖²)/(N² − Σw²), RMG from those;
    * O(S²) per resample, on a fixed seeded subsample of S = min(N, ``subsample``) pairs with the dense S×S
      matrices: uniformity per modality, mean, joint and cross, log Σ_{a≠b} w_a w_b e^{−t‖·‖²} / (N² − Σw²),
      and recall@k both ways (rank_a = Σ_b [s_ab > s_aa] over the S candidates; recall = Σ w_a [rank_a < k] / N),
      CKA (biased and unbiased, exact for the resampled rows from the S×S kernels, two copies of a row not similar:
      :mod:`embspace.spaces.weighted`), mutual-kNN and modality bias (Σw v_i/Σw of per-row values — neighbour
      overlap, own-modality share — with the neighbours searched once among the S rows and held fixed).

    Two copies of the same pair are never counted as a pair of distinct points (cone, uniformity), and the joint
    uniformity counts each resampled row with its own partner once, so that a duplicate's zero distance does not
    bias the resampled values; recall@k resamples the queries and ranks each against the whole (sub)sample, as
    retrieval benchmarks are resampled (copies of a candidate would otherwise count as several candidates and
    shift every resampled recall). With w = 1 every formula is the exact metric.

    The interval (``interval="bca"``, the default) is the BCa interval of the B changes (Efron 1987; formulas in
    :mod:`embspace.bootstrap`): the bias correction z₀ is Φ⁻¹ of the share of resampled changes below the measured
    change (ties half), the acceleration a comes from the jackknife of the change — leave one pair out, weights
    w = 1 − e_i, through the same weighted formulas, in blocks of ``BLOCK_ELEMENTS`` weights (O(b·N) memory): over
    the N pairs for the O(N·D) metrics (delete-one-group with ``JACKKNIFE_GROUPS`` groups above that many pairs) and
    over the S subsample pairs for the dense ones. ``interval="percentile"`` gives the plain percentile interval;
    each :class:`MetricTest` holds both. The percentile interval excluded its own estimate when the resampled
    statistic is biased (the gap of a nearly closed gap, recall@k); BCa's measured coverage on data with a known
    change is in docs/compare.md. "Beyond noise" means the interval excludes 0.

    Cost: O(B·N·D + B·S²) time for the resamples and O(min(N, G)·N·D + S³) for the jackknife (G =
    ``JACKKNIFE_GROUPS``), O(N·D + S²) memory. B = 1000, N = 10⁴, D = 512: 15 s with BCa, 10 s with the percentile
    interval, on two CPU cores shared with other work (load average 6). The resampled CKA costs five (b, S) × (S, S)
    products per block of weights, the larger part of the dense metrics' time: the same B, N, D, one thread, went
    from 4.3 s to 9.5 s when CKA, mutual-kNN and modality bias were added (1.6 s on the bundled sample's 1,000 pairs).
    The metrics fitted to the rows, the Procrustes residual (a rotation) and the subspace share of the gap (a
    principal subspace), are bounded by half-samples instead (:func:`half_sampled_tests`): a resample's copies of a
    row are extra, perfectly matched rows to a fitted rotation or subspace and bias it. Not tested (they need refits
    or have no cheap resampled form): linear separability, spectrum, hubness.
    With ``labels`` and ``prompts`` (before, after): zero-shot top-k and the ECE at ``logit_scale``, on all N
    pairs (:mod:`embspace.label_changes`).
    """
    xb, yb, names = _unit_pair(data_before, names, "data_before")
    xa, ya, _ = _unit_pair(data_after, names, "data_after")
    n = xb.shape[0]
    if xa.shape[0] != n:
        raise InputError("data_after", f"has {xa.shape[0]} pairs but data_before has {n}; the paired bootstrap "
                                       "needs the same pairs before and after")
    if resamples < 10 or not 0 < confidence < 1:
        raise InputError("bootstrap", f"needs ≥ 10 resamples and 0 < confidence < 1, got {resamples}, {confidence}")
    if interval not in INTERVALS:
        raise InputError("bootstrap", f"interval must be one of {', '.join(INTERVALS)}, got {interval!r}")
    rng = np.random.default_rng(seed)
    s = min(n, subsample)
    sub = torch.from_numpy(np.sort(rng.choice(n, size=s, replace=False))) if s < n else torch.arange(n)
    settings = {"t": t, "alpha": alpha, "recall_ks": tuple(recall_ks), "rmg_floor": rmg_floor}
    sides = bootstrap_settings(settings, labels, prompts, logit_scale, names, n, (xb.shape[1], yb.shape[1]))
    stats = [(_Resampled("pairs", x, y, names, side), _Resampled("subsample", x[sub], y[sub], names, settings))
             for (x, y), side in zip(((xb, yb), (xa, ya)), sides, strict=True)]
    point = [{**m.values(torch.ones(1, n)), **d.values(torch.ones(1, s))} for m, d in stats]
    diffs: dict[str, list[np.ndarray]] = {path: [] for path in point[0]}
    block = max(1, min(resamples, BLOCK_ELEMENTS // n))
    for start in range(0, resamples, block):
        b = min(block, resamples - start)
        w_all, w_sub = _counts(rng, n, b), _counts(rng, s, b)
        values = [{**m.values(w_all), **d.values(w_sub)} for m, d in stats]
        for path in diffs:
            diffs[path].append(values[1][path] - values[0][path])
    reported = reported or {}
    jackknife = _jackknife_changes(stats, n, s, seed) if interval == "bca" else {}
    result = Significance(resamples, seed, confidence, n, s, interval=interval)
    dense = set(stats[0][1].paths)
    for path, parts in diffs.items():
        changes = np.concatenate(parts)  # (B,) resampled after − before
        data_b, data_a = float(point[0][path][0]), float(point[1][path][0])
        old, new = reported.get("before", {}).get(path), reported.get("after", {}).get(path)
        before = float(old) if isinstance(old, int | float) else data_b
        after = float(new) if isinstance(new, int | float) else data_a
        percentile = percentile_interval(changes, confidence)
        share, a = bias_share(changes, data_a - data_b), math.nan
        if interval == "bca":
            a = acceleration(jackknife[path])
            ci = bca_interval(changes, data_a - data_b, jackknife[path], confidence)
        else:
            ci = percentile
        result.metrics[path] = MetricTest(path, before, after, after - before, ci,
                                          "subsample" if path in dense and s < n else "all pairs",
                                          data_a - data_b, data_b, data_a, interval=interval,
                                          percentile_ci=percentile, below_share=share, acceleration=a)
    if half_sample_count > 0:
        result.metrics.update(half_sampled_tests((xb, yb), (xa, ya), names, settings, reported, seed=seed,
                                                 count=half_sample_count, confidence=confidence))
        pool = min(n, HALF_SAMPLE_POOL)
        result.notes.append(f"{', '.join(p for p, m in result.metrics.items() if m.interval == 'jackknife')}: "
                            f"delete-d jackknife from {half_sample_count} seeded half-samples of {pool // 2:,} of "
                            f"{pool:,} pairs (Shao & Wu 1989), normal interval scaled to {n:,} pairs")
    one_sided = sorted(p for p, m in result.metrics.items() if m.one_sided)
    if one_sided:
        result.notes.append(f"{', '.join(one_sided)}: almost all resampled changes lie on one side of the measured "
                            "change (a metric at its boundary, such as a gap closed to ≈ 0, is biased under "
                            "resampling by more than its spread): the interval does not have its stated coverage")
    result.not_tested = [f.not_resampled for f in REGISTRY if f.not_resampled]  # a resampled family's left-out part too
    if s < n:
        result.notes.append(f"uniformity, recall@k, CKA, mutual-kNN and modality bias: bootstrap on a seeded subsample "
                            f"of {s:,} of {n:,} pairs with the dense formulas; their intervals bound the change on "
                            f"that subsample (recall@k, mutual-kNN and modality bias "
                            f"there rank within {s:,} candidates, not {n:,})")
    result.notes.append(f"paired bootstrap, {resamples} resamples, seed {seed}, {interval.replace('bca', 'BCa')} "
                        f"intervals; 'beyond noise' = the {confidence:.0%} interval excludes 0 (one test per metric, "
                        "no multiplicity correction)")
    return result


def half_sampled_tests(before: tuple[torch.Tensor, torch.Tensor], after: tuple[torch.Tensor, torch.Tensor],
                       names: tuple[str, str], settings: Mapping[str, Any],
                       reported: Mapping[str, Mapping[str, float]] | None = None, *, seed: int = 0,
                       count: int = HALF_SAMPLES, confidence: float = 0.95,
                       pool_size: int = HALF_SAMPLE_POOL) -> dict[str, MetricTest]:
    """The change of every half-sampled metric (the families' :meth:`~embspace.families.base.Family.on_rows`:
    Procrustes, gap_subspace) with its interval from the delete-d jackknife (:mod:`embspace.bootstrap`).

    From a seeded pool of P = min(N, ``pool_size``) pairs, ``count`` half-samples of m = ⌊P/2⌋ pairs each, the same
    pairs before and after; the change after − before on each half gives v = (m/(P − m))·var·(P/N), and the interval
    is the change on all N pairs ± z·√v. ``before``/``after``: (x̂, ŷ) unit rows, (N, D) each. The generator is
    ``numpy.random.default_rng((seed, 1))``, apart from the bootstrap's, so that its draws stay as they were. Cost:
    O(B·m·D² + B·D³) (one D×D cross-Gram and covariance per modality, and their eigenproblems, per half and side):
    about 6 s for B = 100 on the bundled sample (m = 500, D = 256), scipy's BLAS held to one thread
    (:func:`~embspace.kernels.threads.single_threaded_scipy_blas`, whose docstring has the measurement).
    """
    families = [f for f in in_table_order(FAMILIES) if f.half_sample_paths(names, settings)]
    if not families:
        return {}
    n = before[0].shape[0]
    wide = [(x.double(), y.double()) for x, y in (before, after)]

    def measured(rows: tuple[torch.Tensor, torch.Tensor], exact: bool) -> dict[str, float]:
        out: dict[str, float] = {}
        for family in families:
            out.update(family.on_rows(*rows, names, settings, exact=exact))
        return out

    rng = np.random.default_rng((seed, 1))
    pool_size = min(n, pool_size)
    pool = torch.from_numpy(np.sort(rng.choice(n, size=pool_size, replace=False))) if pool_size < n else None
    pooled = [(x[pool], y[pool]) if pool is not None else (x, y) for x, y in wide]
    with single_threaded_scipy_blas():  # many small eigenproblems between torch operations
        point = [measured(rows, exact=True) for rows in wide]
        changes: dict[str, list[float]] = {path: [] for path in point[0]}
        for half in half_samples(rng, pool_size, count if pool_size // 2 >= 2 else 0):
            pick = torch.from_numpy(half)
            old, new = (measured((x[pick], y[pick]), exact=False) for x, y in pooled)
            for path in changes:
                changes[path].append(new[path] - old[path])
    reported = reported or {}
    tests = {}
    for path, values in changes.items():
        data_b, data_a = point[0][path], point[1][path]
        old_value, new_value = reported.get("before", {}).get(path), reported.get("after", {}).get(path)
        value_b = float(old_value) if isinstance(old_value, int | float) else data_b
        value_a = float(new_value) if isinstance(new_value, int | float) else data_a
        ci = half_sample_interval(data_a - data_b, np.array(values), pool_size, n, confidence)
        tests[path] = MetricTest(path, value_b, value_a, value_a - value_b, ci, "half-samples", data_a - data_b,
                                 data_b, data_a, interval="jackknife")
    return tests


def _jackknife_changes(stats: Sequence[tuple[Any, Any]], n: int, s: int, seed: int) -> dict[str, np.ndarray]:
    """The jackknife values of every metric's change: leave one pair out (weights 1 − e_i) of the N pairs for the
    O(N·D) metrics and of the S subsample pairs for the dense ones (delete-a-group above ``JACKKNIFE_GROUPS``);
    computed in weight blocks of ``BLOCK_ELEMENTS`` entries through the metrics' own ``.values(w)``."""
    out: dict[str, np.ndarray] = {}
    for size, which in ((n, 0), (s, 1)):
        parts: dict[str, list[np.ndarray]] = {}
        for block in jackknife_blocks(size, BLOCK_ELEMENTS // size, JACKKNIFE_GROUPS, seed):
            w = torch.from_numpy(block)  # (b, size)
            before, after = (side[which].values(w) for side in stats)
            for path in after:
                parts.setdefault(path, []).append(after[path] - before[path])
        out.update({path: np.concatenate(values) for path, values in parts.items()})
    return out


def _unit_pair(data: Mapping[str, Any] | Sequence[Any], names: tuple[str, str] | None,
               where: str) -> tuple[torch.Tensor, torch.Tensor, tuple[str, str]]:
    """Two paired modalities as float32 unit rows, with their names."""
    from embspace.embeddings import Embeddings

    if isinstance(data, Mapping):
        items = list(data.items())
    else:
        if isinstance(data, np.ndarray | torch.Tensor) and data.ndim == 3:
            data = list(data)
        items = list(zip(names or ("image", "text"), data, strict=False))
    if len(items) != 2 or (not isinstance(data, Mapping) and len(data) != 2):
        raise InputError(where, "needs exactly two paired modalities")
    from embspace.io.validate import validate

    embeddings = {name: value if isinstance(value, Embeddings) else Embeddings.from_array(value, f"{where}:{name}")
                  for name, value in items}
    # the same checks as measure: paired rows, one dimension, no NaN / Inf and no zero rows (named by file and row)
    checked = validate(embeddings, paired=True, same_dim=True)
    x, y = (emb.to_tensor(torch.float32) for emb in checked.values())
    if not (torch.isfinite(x).all() and torch.isfinite(y).all()):  # finite float64 beyond float32's range
        raise InputError(where, "holds values beyond the float32 range (the bootstrap computes in float32)")
    unit = torch.nn.functional.normalize
    return unit(x, dim=1), unit(y, dim=1), names or (items[0][0], items[1][0])


def _counts(rng: np.random.Generator, n: int, b: int) -> torch.Tensor:
    """(b, n) float32 counts of n indices drawn with replacement, b times."""
    index = torch.from_numpy(rng.integers(0, n, size=(b, n)))
    return torch.zeros(b, n).scatter_add_(1, index, torch.ones(b, n))


class _Resampled:
    """The weighted forms of the families that ``compare`` bootstraps in one way (``kind``: ``"pairs"``, every pair;
    ``"subsample"``, the dense formulas on a subsample), over one set of rows: ``.paths`` and ``.values(w)``, the
    metrics under the weights w (b, N), one value per resample; w = 1 gives the exact metrics."""

    def __init__(self, kind: str, x: torch.Tensor, y: torch.Tensor, names: tuple[str, str],
                 settings: Mapping[str, Any]) -> None:
        self.families = [f for f in in_table_order(FAMILIES) if f.resampled == kind]
        self.view = Weighted(x, y, names, settings)
        self.paths = [path for f in self.families for path in f.resample_paths(names, settings)]

    def values(self, w: torch.Tensor) -> dict[str, np.ndarray]:
        self.view.at(w)
        out: dict[str, np.ndarray] = {}
        for family in self.families:
            out.update(family.resample(self.view))
        return out
