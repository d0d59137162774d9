"""`compare_spaces(before, after)`: how much of its structure a space kept between two dumps of the same rows
(two checkpoints, two models), per modality, with bootstrap intervals and the rows whose neighbourhoods moved most.

For each modality present in both, over the same N rows in the same order (the dimensions may differ):

- ``cka_unbiased``, ``cka_biased`` — linear CKA between before and after (:mod:`embspace.spaces.cka`), exact;
- ``procrustes`` — the orthogonal Procrustes residual (:mod:`embspace.spaces.procrustes`), exact;
- ``mutual_knn`` — mean_i |kNN_before(i) ∩ kNN_after(i)|/k (:mod:`embspace.spaces.neighbours`), exact;
- ``moved`` — the rows with the smallest overlap m_i (ties: the lower row id first), with their captions where
  given.

Noise bounds, seeded, at level ``confidence``:

- CKA and Procrustes: a **delete-d jackknife** (Shao & Wu 1989) rather than the bootstrap, because a bootstrap
  resample holds copies of rows, and copies are perfectly matched pairs for a pairwise statistic: on the bundled
  sample (image, step 0 → 800) the bootstrap's 95 % interval of the unbiased CKA, [0.900, 0.908], lay entirely
  above the measured 0.898, and Procrustes' below it. From a seeded pool of P = min(N, 2·``subsample``) rows,
  ``resamples`` half-samples of m = P/2 rows (without replacement) are measured; the variance of the statistic
  at N rows is v = (m/(P − m))·var(half-samples)·(P/N), and the interval is value ± z·√v (normal). Cost
  O(B·m·D² + B·D³) (:func:`embspace.bootstrap.half_sample_interval`).
- mutual-kNN: a bootstrap over rows of the per-row overlaps m_i (percentile interval); the neighbour sets are those
  of all N rows, not recomputed per resample.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from embspace.bootstrap import half_sample_interval, half_samples, percentile_interval
from embspace.embeddings import Embeddings
from embspace.errors import InputError
from embspace.kernels.rows import as_embeddings
from embspace.spaces.cka import CKA_CONVENTION, cka_from_sums
from embspace.spaces.neighbours import KNN_K, MUTUAL_KNN_CONVENTION, neighbours_of, overlap
from embspace.spaces.procrustes import PROCRUSTES_CONVENTION, procrustes_from_sums
from embspace.spaces.sums import SpaceSums, stream_sums, unit_rows

SPACE_RESAMPLES = 100
SPACE_SUBSAMPLE = 500
MOVED = 10  # rows listed as having moved most
METRICS = ("cka_unbiased", "cka_biased", "mutual_knn", "procrustes")


@dataclass
class MovedRow:
    """A row whose neighbourhood changed: its id, the share of its k neighbours kept, its caption (or None)."""

    row: int
    kept: float
    caption: str | None = None


@dataclass
class SpaceChange:
    """The structure one modality kept between before and after."""

    modality: str
    n: int
    dims: tuple[int, int]
    values: dict[str, float]
    intervals: dict[str, tuple[float, float]]
    moved: list[MovedRow]
    kept: np.ndarray = field(repr=False)  # (N,) per-row overlap m_i

    def to_dict(self) -> dict[str, Any]:
        return {"n": self.n, "dims": list(self.dims), **{name: self.values[name] for name in METRICS},
                "intervals": {name: list(ci) for name, ci in self.intervals.items()},
                "moved": [{"row": m.row, "kept": m.kept, **({"caption": m.caption} if m.caption is not None else {})}
                          for m in self.moved]}


@dataclass
class SpaceComparison:
    """Per modality, the structure kept between two dumps of the same rows (see the module docstring)."""

    changes: dict[str, SpaceChange]
    k: int
    resamples: int
    subsample: int
    seed: int
    confidence: float

    @property
    def conventions(self) -> dict[str, str]:
        return {"cka": CKA_CONVENTION, "mutual_knn": f"{MUTUAL_KNN_CONVENTION}; k = {self.k}",
                "procrustes": PROCRUSTES_CONVENTION,
                "intervals": f"{self.confidence:.0%}, seed {self.seed}, {self.resamples} resamples: CKA and "
                             f"Procrustes by a delete-d jackknife (half-samples without replacement of a pool of "
                             f"≤ {2 * self.subsample:,} rows, normal interval); mutual-kNN by a bootstrap over rows "
                             "of the per-row overlaps (percentile)",
                "moved": "rows with the fewest of their k before-neighbours among their k after-neighbours"}

    def to_dict(self) -> dict[str, Any]:
        return {"k": self.k, "resamples": self.resamples, "subsample": self.subsample, "seed": self.seed,
                "confidence": self.confidence, "conventions": self.conventions,
                "modalities": {name: change.to_dict() for name, change in self.changes.items()}}

    def table(self) -> str:
        level = f"{self.confidence:.0%} CI"
        lines = [f"structure kept, before → after (k = {self.k})",
                 f"  {'modality':<10} {'metric':<13} {'value':>8}  {level:>19}"]
        for name, change in self.changes.items():
            for metric in METRICS:
                low, high = change.intervals[metric]
                lines.append(f"  {name:<10} {metric:<13} {change.values[metric]:>8.4f}  [{low:.4f}, {high:.4f}]")
        for name, change in self.changes.items():
            lines.append(f"  {name}: rows that moved most (share of their {self.k} neighbours kept)")
            for m in change.moved:
                caption = f"  {m.caption}" if m.caption else ""
                lines.append(f"    row {m.row:>7}  {m.kept:.2f}{caption}")
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.table()


def _spaces(data: Mapping[str, Any] | Embeddings | np.ndarray | torch.Tensor, where: str) -> dict[str, Embeddings]:
    if isinstance(data, Mapping):
        return {name: as_embeddings(value, f"{where}:{name}") for name, value in data.items()}
    return {"space": as_embeddings(data, where)}


def captions_of(source: str, n: int) -> list[str] | None:
    """The ``captions`` of the .npz file a dump was read from (``path.npz:key``), when it holds n of them."""
    path = Path(source.rsplit(":", 1)[0]) if ":" in source else Path(source)
    if path.suffix != ".npz" or not path.is_file():
        return None
    with np.load(path, allow_pickle=False) as archive:
        if "captions" not in archive.files:
            return None
        captions = archive["captions"]
    return [str(c) for c in captions] if captions.ndim == 1 and len(captions) == n else None


def _half_samples(a: Embeddings, b: Embeddings, pool: np.ndarray, halves: np.ndarray) -> dict[str, np.ndarray]:
    """CKA (both) and Procrustes of every half-sample ``halves`` (B, m): positions into the pool rows ``pool``."""
    rows_a = unit_rows(a.take(pool).to_tensor(torch.float64), a.source, 0)  # (P, D_A)
    rows_b = unit_rows(b.take(pool).to_tensor(torch.float64), b.source, 0)  # (P, D_B)
    rows_a, rows_b = rows_a - rows_a.mean(0), rows_b - rows_b.mean(0)  # any fixed centre
    out = {name: np.empty(len(halves)) for name in ("cka_unbiased", "cka_biased", "procrustes")}
    for r, half in enumerate(halves):
        pick = torch.from_numpy(half)
        sums = SpaceSums.of_block(rows_a[pick], rows_b[pick])
        cka = cka_from_sums(sums)
        out["cka_unbiased"][r], out["cka_biased"][r] = cka["unbiased"], cka["biased"]
        out["procrustes"][r] = procrustes_from_sums(sums, exact=False)
    return out


def _overlap_means(kept: np.ndarray, resamples: int, rng: np.random.Generator) -> np.ndarray:
    """(B,) means of the per-row overlaps over rows drawn with replacement (in blocks of ≤ 4·10⁶ draws)."""
    n = len(kept)
    block = max(1, 4_000_000 // n)
    means = [kept[rng.integers(0, n, size=(min(block, resamples - s), n))].mean(1) for s in range(0, resamples, block)]
    return np.concatenate(means)


def compare_spaces(
    before: Mapping[str, Any] | Embeddings | np.ndarray | torch.Tensor,
    after: Mapping[str, Any] | Embeddings | np.ndarray | torch.Tensor,
    *,
    k: int = KNN_K,
    resamples: int = SPACE_RESAMPLES,
    subsample: int = SPACE_SUBSAMPLE,
    seed: int = 0,
    confidence: float = 0.95,
    moved: int = MOVED,
    captions: Sequence[str] | None = None,
    device: str = "cpu",
) -> SpaceComparison:
    """CKA, mutual-kNN and Procrustes between two dumps of the same rows, per modality (module docstring).

    ``before`` / ``after``: a mapping name → array or :class:`~embspace.embeddings.Embeddings` (as
    :func:`embspace.load` returns; the modalities both hold are compared) or one array each. ``captions``: one per
    row, listed beside the rows that moved; by default the ``captions`` array of the .npz the dumps came from.

    >>> import numpy as np
    >>> x = np.random.default_rng(0).normal(size=(200, 16))
    >>> result = compare_spaces(x, x @ np.linalg.qr(np.random.default_rng(1).normal(size=(16, 16)))[0],
    ...                         resamples=20)
    >>> round(result.changes["space"].values["cka_unbiased"], 6), result.changes["space"].values["mutual_knn"]
    (1.0, 1.0)
    """
    old, new = _spaces(before, "before"), _spaces(after, "after")
    names = [name for name in old if name in new]
    if not names:
        raise InputError("compare_spaces", f"before holds {', '.join(old)} and after {', '.join(new)}: no modality "
                                           "in common")
    if k < 1 or resamples < 10 or subsample < 4 or not 0 < confidence < 1:
        raise InputError("compare_spaces", f"needs k ≥ 1, ≥ 10 resamples, a subsample ≥ 4 and 0 < confidence < 1; "
                                           f"got k={k}, resamples={resamples}, subsample={subsample}, "
                                           f"confidence={confidence}")
    rng = np.random.default_rng(seed)
    changes = {}
    for name in names:
        a, b = old[name], new[name]
        if a.n != b.n:
            raise InputError(f"after:{name}", f"has {b.n} rows but before has {a.n}: the same rows are compared")
        sums, _, _ = stream_sums(a, b)
        cka = cka_from_sums(sums)
        values = {"cka_unbiased": cka["unbiased"], "cka_biased": cka["biased"],
                  "procrustes": procrustes_from_sums(sums)}
        kept = overlap(neighbours_of(a, k, device=device), neighbours_of(b, k, device=device)).numpy()  # (N,)
        values["mutual_knn"] = float(kept.mean())
        pool_size = min(a.n, 2 * subsample)
        pool = np.sort(rng.choice(a.n, size=pool_size, replace=False)) if pool_size < a.n else np.arange(a.n)
        halves = half_samples(rng, pool_size, resamples)  # (B, m)
        resampled = _half_samples(a, b, pool, halves)
        intervals = {metric: half_sample_interval(values[metric], resampled[metric], pool_size, a.n, confidence)
                     for metric in ("cka_unbiased", "cka_biased", "procrustes")}
        intervals["mutual_knn"] = _finite_interval(_overlap_means(kept, resamples, rng), confidence)
        labels = list(captions) if captions is not None else captions_of(a.source, a.n) or captions_of(b.source, b.n)
        if labels is not None and len(labels) != a.n:
            raise InputError("captions", f"has {len(labels)} entries for {a.n} rows")
        order = np.argsort(kept, kind="stable")[: max(0, moved)]
        listed = [MovedRow(int(i), float(kept[i]), labels[i] if labels is not None else None) for i in order]
        changes[name] = SpaceChange(name, a.n, (a.dim, b.dim), values, intervals, listed, kept)
    return SpaceComparison(changes, k, resamples, subsample, seed, confidence)


def _finite_interval(values: np.ndarray, confidence: float) -> tuple[float, float]:
    finite = values[np.isfinite(values)]
    if len(finite) < 2:
        return (math.nan, math.nan)
    low, high = percentile_interval(finite, confidence)
    return float(low), float(high)
