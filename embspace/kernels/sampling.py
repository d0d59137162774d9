"""Pair-sampling estimators with confidence intervals, for N too large for the exact N² pass.

Uniformity is the log of a mean over pairs, U = log μ with μ = E_pairs exp(−t‖a − b‖²). Drawing m pairs uniformly
(with replacement) from the pairs the variant counts gives the unbiased estimate μ̂ = (1/m) Σ G_k with standard
error se = s/√m; the normal interval μ̂ ± z·se maps through the (monotone) log to an interval for U, and the point
estimate is log μ̂ (consistent; its Jensen bias, −se²/(2μ²), is far inside the interval). Each ‖a − b‖² is the
float64 squared difference of the rows' offsets from their centres (:meth:`~embspace.kernels.rows.Rows.centred`),
never 2 − 2a·b, which cancels on narrow cones. Recall@k is a mean of
Bernoulli outcomes over queries: sampled queries are ranked exactly against ALL candidates, and the Wilson score
interval is reported.

Pairs are drawn block by block so that streamed inputs are read a few times, not once per pair: the pair space is
cut into cells (a block of left rows × a block of right rows), the number of pairs in every cell is drawn from the
multinomial with probabilities proportional to the cell's valid pairs, and each cell's pairs are drawn uniformly
inside it (pairs of an item with itself rejected and redrawn). The result is exactly m i.i.d. uniform draws.

Every estimate comes back as an :class:`Estimate` (value, interval, sample size, method), which the report writes
into its ``uncertainty`` block.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass

import numpy as np
import torch

from embspace.kernels.pairwise import TileBuffer, tile_product
from embspace.kernels.rows import CentredBlock, ResidentRows, Rows

Z_95 = 1.959963984540054
PAIR_BATCH = 8192  # pairs drawn per batch (the draws, and so a seed's sample, depend on it)
DOT_CHUNK = 2048  # pairs gathered and multiplied at a time: two (2048, D) float32 operands, 8 MiB at D = 512


@dataclass(frozen=True)
class Estimate:
    """A sampled value with its confidence interval (``std_error``: the delta-method standard error of value)."""

    value: float
    low: float
    high: float
    samples: int
    method: str = "sampled"
    confidence: float = 0.95
    std_error: float = math.nan

    def to_dict(self) -> dict[str, float | int | str]:
        out = asdict(self)
        out["ci"] = [out.pop("low"), out.pop("high")]
        return out

    def uncertainty(self) -> dict[str, object]:
        """The report's ``uncertainty`` entry: method, samples, ci, confidence."""
        return {"method": self.method, "samples": self.samples, "ci": [self.low, self.high],
                "confidence": self.confidence}


def sample_pairs(n: int, m: int, generator: np.random.Generator, *, distinct: bool = True) -> tuple[np.ndarray,
                                                                                                     np.ndarray]:
    """m index pairs (i, j) drawn uniformly with replacement; i ≠ j when ``distinct``."""
    i = generator.integers(0, n, size=m)
    if not distinct:
        return i, generator.integers(0, n, size=m)
    j = generator.integers(0, n - 1, size=m)
    j += j >= i  # uniform over the n − 1 indices other than i
    return i, j


def gather(rows: Rows, index: np.ndarray, chunk: int = 65_536) -> torch.Tensor:
    """Rows ``index`` (any order, repeats allowed) as one (len(index), D) float64 tensor, read block by block.

    Only the blocks that hold requested rows are read, each at most ``min(chunk, rows.max_rows)`` rows long.
    """
    chunk = max(1, min(chunk, rows.max_rows))
    order = np.argsort(index, kind="stable")
    sorted_index = index[order]
    out = torch.empty((len(index), rows.dim), dtype=torch.float64, device=rows.device)  # (m, D)
    lo = 0
    while lo < len(sorted_index):
        start = int(sorted_index[lo])
        stop = min(start + chunk, rows.n)
        hi = int(np.searchsorted(sorted_index, stop, side="left"))
        block = rows.block(start, stop)
        local = torch.from_numpy(sorted_index[lo:hi] - start).to(rows.device)
        out.index_copy_(0, torch.from_numpy(order[lo:hi]).to(rows.device), block.index_select(0, local).double())
        lo = hi
    return out


# ---- pair spaces -------------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class Segment:
    """Rows ``[start, stop)`` of ``rows``; ``key`` is the index of row ``start`` in the pair space (two segments
    whose key ranges overlap hold the same items, and an item is never paired with itself)."""

    rows: Rows
    start: int
    stop: int
    key: int

    def __len__(self) -> int:
        return self.stop - self.start

    def same_rows(self, other: Segment) -> bool:
        return self.rows is other.rows and (self.start, self.stop) == (other.start, other.stop)


def segments(parts: Sequence[tuple[Rows, int]], size: int) -> list[Segment]:
    """Cut each (rows, key offset) into segments of at most ``size`` rows."""
    out = []
    for rows, offset in parts:
        for start in range(0, rows.n, max(size, 1)):
            stop = min(start + size, rows.n)
            out.append(Segment(rows, start, stop, offset + start))
    return out


def segment_rows(rows: Rows, budget: int | None = None) -> int:
    """Rows per segment of a pair space: the whole of resident rows; for streamed rows, two normalised float32
    segments and the raw copy of the one being read fill half of ``budget`` (default: 4 of the row blocks). The
    sampled pass needs no tiles, and the pair batches take an eighth."""
    if isinstance(rows, ResidentRows):
        return rows.n
    if budget is None:
        return 4 * rows.max_rows
    return max(rows.max_rows, budget // 2 // (3 * 4 * rows.dim))


def pair_batch(dim: int, budget: int | None = None) -> int:
    """Pairs per batch: the two gathered (batch, D) float32 operands and their product in an eighth of ``budget``."""
    if budget is None:
        return PAIR_BATCH
    return int(min(PAIR_BATCH, max(256, budget // 8 // (3 * 4 * dim))))


def _overlap(a: Segment, b: Segment) -> int:
    return max(0, min(a.key + len(a), b.key + len(b)) - max(a.key, b.key))


def sampled_similarities(left: Sequence[Segment], right: Sequence[Segment], pairs: int,
                         generator: np.random.Generator, *, batch: int = PAIR_BATCH) -> Iterator[torch.Tensor]:
    """Cosines x̂_i·ŷ_j of ``pairs`` pairs drawn uniformly with replacement from left × right (i ≠ j by key),
    yielded in float64 batches of at most ``batch``."""
    for sims, _ in sampled_pairs(left, right, pairs, generator, batch=batch):
        yield sims


def sampled_pairs(left: Sequence[Segment], right: Sequence[Segment], pairs: int, generator: np.random.Generator,
                  *, batch: int = PAIR_BATCH, cosines: bool = True,
                  distances: bool = False) -> Iterator[tuple[torch.Tensor | None, torch.Tensor | None]]:
    """(cosines x̂_i·ŷ_j, squared distances ‖x̂_i − ŷ_j‖²) of ``pairs`` pairs drawn uniformly with replacement from
    left × right (i ≠ j by key), in float64 batches of at most ``batch``; each None unless asked for.

    The distances come from the rows centred about a point of their cone (:meth:`Rows.centred
    <embspace.kernels.rows.Rows.centred>`): ‖p_i − p'_j + (c_a − c_b)‖², a difference of small offsets, never
    2 − 2·x̂_i·ŷ_j, which cancels in narrow cones. With distances, the cosines of the same pairs are 1 − d²/2 (unit
    rows), so only the centred blocks are held. The same pairs are drawn either way.
    """
    sizes = np.array([[len(a) * len(b) - _overlap(a, b) for b in right] for a in left], dtype=np.float64)
    counts = generator.multinomial(pairs, (sizes / sizes.sum()).ravel()).reshape(sizes.shape)
    for ai, a in enumerate(left):
        if not counts[ai].any():
            continue
        block_a = a.rows.block(a.start, a.stop) if cosines and not distances else None  # (|A|, D)
        centred_a = a.rows.centred(a.start, a.stop) if distances else None
        for bi, b in enumerate(right):
            remaining = int(counts[ai, bi])
            if not remaining:
                continue
            same = b.same_rows(a)
            block_b = (block_a if same else b.rows.block(b.start, b.stop)) if block_a is not None else None
            centred_b = (centred_a if same else b.rows.centred(b.start, b.stop)) if distances else None
            while remaining > 0:
                size = min(batch, remaining)
                i, j = _draw_in_cell(a, b, size, generator)
                if distances:
                    squared = _distances(centred_a, centred_b, i, j)
                    yield (1 - squared / 2 if cosines else None), squared
                else:
                    yield _dots(block_a, block_b, i, j), None
                remaining -= size


def _draw_in_cell(a: Segment, b: Segment, size: int, generator: np.random.Generator) -> tuple[np.ndarray,
                                                                                              np.ndarray]:
    """``size`` uniform pairs of the cell a × b whose keys differ (rejection of i = j, redrawn)."""
    i = generator.integers(0, len(a), size=size)
    j = generator.integers(0, len(b), size=size)
    if _overlap(a, b):
        same = np.flatnonzero(a.key + i == b.key + j)
        while len(same):
            i[same] = generator.integers(0, len(a), size=len(same))
            j[same] = generator.integers(0, len(b), size=len(same))
            same = same[a.key + i[same] == b.key + j[same]]
    return i, j


def _dots(block_a: torch.Tensor, block_b: torch.Tensor, i: np.ndarray, j: np.ndarray) -> torch.Tensor:
    """Row-wise dot products a_i·b_j, in float32 (float64 for float64 rows), returned in float64.

    Rows are gathered :data:`DOT_CHUNK` pairs at a time with ``index_select`` (several times faster than advanced
    indexing on the CPU) and multiplied in place."""
    wide = torch.float64 if torch.float64 in (block_a.dtype, block_b.dtype) else torch.float32
    left, right = torch.from_numpy(i).to(block_a.device), torch.from_numpy(j).to(block_b.device)
    out = torch.empty(len(i), dtype=torch.float64, device=block_a.device)  # (m,)
    for lo in range(0, len(i), DOT_CHUNK):
        a = block_a.index_select(0, left[lo : lo + DOT_CHUNK]).to(wide)  # (chunk, D), a fresh tensor
        b = block_b.index_select(0, right[lo : lo + DOT_CHUNK]).to(wide)  # (chunk, D)
        out[lo : lo + DOT_CHUNK] = a.mul_(b).sum(1)
    return out


def _distances(a: CentredBlock, b: CentredBlock, i: np.ndarray, j: np.ndarray) -> torch.Tensor:
    """Row-wise ‖x̂_i − ŷ_j‖² = ‖p_i − p'_j + δ‖² (p the stored offsets about each block's centre, δ = c_a − c_b),
    formed in float32 (float64 for float64 rows: the difference keeps its relative precision, and a near-zero
    difference is a near-zero distance), squared and summed in float64, :data:`DOT_CHUNK` pairs at a time: two
    (chunk, D) float32 operands, as :func:`_dots` takes."""
    device = a.vectors.device
    wide = torch.float64 if torch.float64 in (a.vectors.dtype, b.vectors.dtype) else torch.float32
    left, right = torch.from_numpy(i).to(device), torch.from_numpy(j).to(b.vectors.device)
    delta = (a.centre - b.centre.to(device)).to(wide)  # (D,)
    scale_a, scale_b = a.scale.to(wide), b.scale.to(wide)
    out = torch.empty(len(i), dtype=torch.float64, device=device)  # (m,)
    for lo in range(0, len(i), DOT_CHUNK):
        rows, cols = left[lo : lo + DOT_CHUNK], right[lo : lo + DOT_CHUNK]
        p = a.vectors.index_select(0, rows).to(wide).mul_(scale_a.index_select(0, rows)[:, None])  # (chunk, D)
        q = b.vectors.index_select(0, cols).to(wide).mul_(scale_b.index_select(0, cols)[:, None]).to(device)
        out[lo : lo + DOT_CHUNK] = p.sub_(q).add_(delta).square_().sum(1, dtype=torch.float64)
    return out


# ---- estimators --------------------------------------------------------------------------------------------


class MeanOfExp:
    """Running mean and variance of exp(e) over batches of exponents e, merged exactly (Chan et al.) and kept on a
    log-shift so that large t cannot underflow."""

    def __init__(self) -> None:
        self.count = 0
        self.shift = -math.inf
        self.mean = 0.0  # of exp(e − shift)
        self.m2 = 0.0  # Σ (exp(e − shift) − mean)²

    def update(self, exponent: torch.Tensor) -> None:
        if len(exponent) == 0:
            return
        top = float(exponent.max())
        if top > self.shift:
            scale = math.exp(self.shift - top) if self.count else 0.0
            self.mean, self.m2, self.shift = self.mean * scale, self.m2 * scale * scale, top
        w = torch.exp(exponent - self.shift)  # (m,) float64
        n, mean = len(w), float(w.mean())
        m2 = float((w - mean).pow(2).sum())
        total = self.count + n
        delta = mean - self.mean
        self.mean += delta * n / total
        self.m2 += m2 + delta * delta * self.count * n / total
        self.count = total

    def log_estimate(self, z: float = Z_95) -> Estimate:
        """log of the mean with the normal interval of the mean mapped through the log."""
        m = self.count
        se = math.sqrt(self.m2 / (m - 1) / m) if m > 1 else math.inf
        low = self.mean - z * se
        value = math.log(self.mean) + self.shift
        return Estimate(value, math.log(low) + self.shift if low > 0 else -math.inf,
                        math.log(self.mean + z * se) + self.shift, m, std_error=se / self.mean)


def pair_space(x: Rows, y: Rows | None, joint: bool, size: int) -> tuple[list[Segment], list[Segment]]:
    """Left and right segments of: X with itself (``y`` None), X against Y (i ≠ j), or the union X ∪ Y."""
    if y is None:
        parts_left = parts_right = [(x, 0)]
    elif not joint:
        parts_left, parts_right = [(x, 0)], [(y, 0)]
    else:  # the union: key k < n is x_k, k ≥ n is y_{k−n}
        parts_left = parts_right = [(x, 0), (y, x.n)]
    return segments(parts_left, size), segments(parts_right, size)


def sampled_uniformity(x: Rows, y: Rows | None = None, *, t: float = 2.0, pairs: int = 1_000_000, seed: int = 0,
                       joint: bool = False, budget: int | None = None,
                       consumers: Sequence[Callable[[torch.Tensor], None]] = ()) -> Estimate:
    """U(X) (``y`` None), cross U(X, Y) (pairs i ≠ j) or joint U(X ∪ Y) (``joint=True``) from sampled pairs.

    ``budget`` (bytes) sizes the segments of streamed rows and the pair batches. ``consumers`` also receive every
    batch of sampled cosines (a similarity histogram of the same pairs, say).
    """
    generator = np.random.default_rng(seed)
    size = min(segment_rows(r, budget) for r in (x, y) if r is not None)
    batch = pair_batch(x.dim, budget)
    left, right = pair_space(x, y, joint, size)
    acc = MeanOfExp()
    for sims, squared in sampled_pairs(left, right, pairs, generator, batch=batch, cosines=bool(consumers),
                                       distances=True):
        acc.update(squared.mul_(-t))  # the exponent of exp(−t‖a − b‖²), from the centred rows
        for consume in consumers:
            consume(sims)
    return acc.log_estimate()


def wilson_interval(hits: int, trials: int, z: float = Z_95) -> tuple[float, float]:
    """Wilson score interval for a binomial proportion."""
    if trials == 0:
        return 0.0, 1.0
    p = hits / trials
    centre = (p + z * z / (2 * trials)) / (1 + z * z / trials)
    half = z * math.sqrt(p * (1 - p) / trials + z * z / (4 * trials * trials)) / (1 + z * z / trials)
    return max(0.0, centre - half), min(1.0, centre + half)


def sampled_recall(x: Rows, y: Rows, ks: Sequence[int], *, queries: int = 10_000, seed: int = 0,
                   tile: int = 65_536) -> dict[int, Estimate]:
    """recall@k of x → y on sampled queries, each ranked exactly against all of y (Wilson intervals).

    Queries are taken ``tile`` at a time against blocks of ``tile`` candidates: a (tile × tile) score matrix at most.
    """
    generator = np.random.default_rng(seed)
    chosen = np.sort(generator.choice(x.n, size=min(queries, x.n), replace=False))
    better = np.empty(len(chosen), dtype=np.int64)
    for lo in range(0, len(chosen), tile):
        better[lo : lo + tile] = _ranks_of(x, y, chosen[lo : lo + tile], tile)
    out = {}
    for k in ks:
        hits = int((better < k).sum())
        low, high = wilson_interval(hits, len(chosen))
        out[k] = Estimate(hits / len(chosen), low, high, len(chosen))
    return out


def _ranks_of(x: Rows, y: Rows, chosen: np.ndarray, tile: int) -> np.ndarray:
    """#{j ≠ i : x̂_i·ŷ_j > x̂_i·ŷ_i} for each query i in ``chosen`` (sorted), against every row of y."""
    wide = torch.float64 if x.dtype == torch.float64 else torch.float32
    q = gather(x, chosen).to(wide)  # (q, D)
    matched = (q * gather(y, chosen).to(wide)).sum(1)  # (q,)
    better = torch.zeros(len(chosen), dtype=torch.int64, device=q.device)
    own = torch.from_numpy(chosen).to(q.device)
    buffer = TileBuffer()
    for c0, cols in y.blocks(tile):
        beats = tile_product(q, cols.to(wide), buffer) > matched[:, None]  # (q, C)
        inside = (own >= c0) & (own < c0 + len(cols))
        beats[inside.nonzero().flatten(), (own[inside] - c0)] = False  # the partner never beats itself
        better += beats.sum(1, dtype=torch.int32)
    return better.cpu().numpy()
