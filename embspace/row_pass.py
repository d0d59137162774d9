"""The O(N·D) pass: every row block read once, for every statistic that is a sum over rows.

One pass over blocks of rows (the same blocks for every modality, ``step`` rows each) does, per block and per
modality, in this order:

1. read the stored rows once (``Embeddings.read``);
2. hash them for the report's provenance: the content hash (:mod:`embspace.io.digest`) and the 128-bit row keys
   of the duplicate count (:mod:`embspace.io.duplicates`), both of the stored bytes;
3. normalise them once (:func:`~embspace.kernels.rows.normalize_block`), which also validates them: the largest
   |x_k| of a row is NaN / inf for a row holding NaN / Inf and 0 for an all-zero row, and such a row is refused
   with the message of :func:`embspace.io.validate.validate` (the modalities are then scanned in order, so the
   message names the same file, count and first row as a scan before the pass would);
4. write them into the held rows where a later pass reads every row again (pairwise passes, sampled pairs);
5. accumulate, in float64, from one float64 copy of the block: Σx̂ and Σ‖x̂‖² (:class:`~embspace.metrics.centroid.
   MomentSums`), Σx̂·ŷ and Σ‖x̂ − ŷ‖^α over the pairs (:class:`~embspace.metrics.centroid.PairSums`) and the D×D
   Gram Σx̂ᵀx̂ (:class:`~embspace.metrics.spectrum.Gram`).

The sums are those of :func:`~embspace.metrics.centroid.pair_sums`, :func:`~embspace.metrics.centroid.moment_sums`
and :meth:`~embspace.metrics.spectrum.Gram.of_rows` to the last bit: the same blocks, the same float64 operations
on tensors of the same shape (x̂·ŷ and x̂ − ŷ are formed from the float64 copy of x̂ and ŷ as stored, which float64
represents exactly). Memory: per modality the stored block, its normalised rows in the tile dtype, and one float64
block shared by all modalities — for 65,536 rows of 512 float16 values 64 + 128 MiB each and 256 MiB shared; the rows
themselves are held only where ``prepare_rows`` allocated them for a later pass.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

import numpy as np
import torch

from embspace.errors import InputError
from embspace.io.digest import ALGORITHM, header, little_endian_bytes
from embspace.io.duplicates import count_duplicates, row_keys
from embspace.io.validate import refuse_or_drop, scan
from embspace.kernels.budget import MAX_BLOCK_ROWS
from embspace.kernels.rows import ResidentRows, Rows, StreamedRows
from embspace.metrics.centroid import MomentSums, PairSums
from embspace.metrics.spectrum import Gram

PASS_KINDS = ("pair_sums", "moments", "gram")
"""The kinds of :class:`~embspace.families.base.RowStat` the pass computes."""


@dataclass(frozen=True)
class Wanted:
    """What one pass computes over modalities ``names`` (in order): the pair sums of the first two (with ``alpha``)
    when ``alpha`` is set, the moments and Gram matrices of the modalities named, and, for rows read from their
    source, the provenance (content hash, duplicate rows) and the validation (NaN / Inf and zero rows refused)."""

    names: tuple[str, ...]
    alpha: float | None = None
    moments: frozenset[str] = frozenset()
    grams: frozenset[str] = frozenset()
    provenance: bool = False
    validate: bool = False


@dataclass
class Results:
    """The pass's statistics, and the provenance of each modality read from its source."""

    pair_sums: PairSums | None = None
    moments: dict[str, MomentSums] = field(default_factory=dict)
    grams: dict[str, Gram] = field(default_factory=dict)
    content_hashes: dict[str, str] = field(default_factory=dict)
    duplicate_rows: dict[str, int] = field(default_factory=dict)


def reads_source(rows: Rows) -> bool:
    """Whether the pass reads ``rows`` from their source (streamed rows, or held rows it fills) rather than from
    rows already held."""
    source = getattr(rows, "embeddings", None)
    return source is not None and (isinstance(rows, StreamedRows) or
                                   (isinstance(rows, ResidentRows) and not rows.filled))


def block_step(rows: dict[str, Rows]) -> int:
    """Rows per block: those of :func:`~embspace.metrics.centroid.pair_sums` and :meth:`Gram.of_rows`, so that the
    sums are theirs to the last bit."""
    return max(1, min(MAX_BLOCK_ROWS, *(r.max_rows for r in rows.values())))


def run(rows: dict[str, Rows], wanted: Wanted, scan_rows: int = MAX_BLOCK_ROWS) -> Results:
    """One pass over ``rows`` (name → rows, the modalities of ``wanted.names``) computing ``wanted``.

    ``scan_rows``: the row blocks of the scan that names the bad rows when the pass meets one."""
    names = wanted.names
    first = rows[names[0]]
    n, step = first.n, block_step(rows)
    from_source = {name: reads_source(rows[name]) for name in names}
    digests = {name: _digest(rows[name]) for name in names if wanted.provenance and from_source[name]}
    keys = {name: np.empty((n, 2), dtype=np.uint64) for name in digests}  # (N, 2) row keys, allocated once
    moments = {name: MomentSums() for name in names if name in wanted.moments}
    pair = PairSums(alpha=wanted.alpha) if wanted.alpha is not None else None
    grams = {name: (torch.zeros((rows[name].dim, rows[name].dim), dtype=torch.float64, device=rows[name].device),
                    torch.zeros(rows[name].dim, dtype=torch.float64, device=rows[name].device))
             for name in names if name in wanted.grams}  # (D, D) Σx̂ᵀx̂ and (D,) Σx̂
    wide_needed = [name for name in names if name in moments or name in grams or
                   (pair is not None and name in names[:2])]
    buffer: list[torch.Tensor] = []  # one (step, D) float64 block, shared by the modalities

    def read(start: int, stop: int) -> dict[str, torch.Tensor]:
        """The block's normalised rows of every modality, validated and hashed where read from the source."""
        units = {}
        for name in names:
            r = rows[name]
            if not from_source[name]:
                units[name] = r.block(start, stop)
                continue
            raw = r.embeddings.read(start, stop)  # (B, D) as stored
            if name in digests:
                digests[name].update(little_endian_bytes(raw))
                keys[name][start:stop] = row_keys(raw)
            peaks: list[torch.Tensor] | None = [] if wanted.validate else None
            try:
                units[name] = r.from_source(raw, start, peaks)
            except InputError:
                if wanted.validate:
                    _refuse_bad_rows(rows, names, scan_rows)
                raise
            if peaks and not _valid(peaks[0]):
                _refuse_bad_rows(rows, names, scan_rows)
                raise InputError(r.source, f"rows {start}…{stop - 1} hold NaN, Inf or zero rows")  # not reached
            del raw  # the stored block is not held beside the next one
        return units

    def wide_block(unit: torch.Tensor) -> torch.Tensor:
        """``unit`` copied into the shared float64 block, (B, D)."""
        if not buffer or buffer[0].shape[1] != unit.shape[1] or buffer[0].device != unit.device:
            buffer[:] = [torch.empty((step, unit.shape[1]), dtype=torch.float64, device=unit.device)]
        return buffer[0][: len(unit)].copy_(unit)  # contiguous

    def add(units: dict[str, torch.Tensor]) -> None:
        """The block's sums, from one float64 copy of each modality's rows."""
        for name in wide_needed:
            unit = units[name]
            wide = wide_block(unit)
            block_total = wide.sum(0)  # (D,)
            if name in grams:
                gram, total = grams[name]
                gram.addmm_(wide.T, wide)
                total += block_total
            targets = [s for s in (moments.get(name), _pair_side(pair, names, name)) if s is not None]
            if targets:
                squares = float(wide.pow_(2).sum())  # the copy's last use
                for sums in targets:
                    sums.total = block_total if sums.total is None else sums.total + block_total
                    sums.squares += squares
                    sums.n += len(unit)
        if pair is not None:
            x, y = units[names[0]], units[names[1]]
            pair.dots += float(_in_parts(wide_block(x), torch.Tensor.mul_, y).sum())  # Σ x̂_i·ŷ_i: (x̂ ⊙ ŷ).sum()
            pair.distances += float(_in_parts(wide_block(x), torch.Tensor.sub_, y).norm(dim=1).pow(pair.alpha).sum())
            pair.n += len(x)

    for start in range(0, n, step):
        add(read(start, min(start + step, n)))  # the block's rows are released before the next is read
    for name in names:
        if from_source[name] and isinstance(rows[name], ResidentRows):
            rows[name].filled = True  # every row written: later passes read the held rows
    results = Results(pair_sums=pair, moments=moments)
    for name, (gram, total) in grams.items():
        results.grams[name] = Gram(rows[name].n, gram.cpu(), total.cpu())
    for name, digest in digests.items():
        results.content_hashes[name] = f"{ALGORITHM}:{digest.hexdigest()}"
        results.duplicate_rows[name] = count_duplicates([keys[name]], rows[name].n)
    return results


def _pair_side(pair: PairSums | None, names: tuple[str, ...], name: str) -> MomentSums | None:
    if pair is None or name not in names[:2]:
        return None
    return pair.x if name == names[0] else pair.y


PART_ROWS = 4096  # rows per part of an in-place float64 ⊙ / − with the tile-dtype rows: a float64 copy of a part


def _in_parts(wide: torch.Tensor, operation, other: torch.Tensor) -> torch.Tensor:
    """``operation(wide, other)`` in place, :data:`PART_ROWS` rows at a time: the float64 copy of ``other`` that
    type promotion makes is one part's, not the block's (elementwise, so the values are those of the whole)."""
    for start in range(0, len(wide), PART_ROWS):
        operation(wide[start : start + PART_ROWS], other[start : start + PART_ROWS])
    return wide


def _valid(peak: torch.Tensor) -> bool:
    """No row of the block holds NaN / Inf (its largest |x_k| is finite) or is all zeros (0)."""
    return bool((torch.isfinite(peak) & (peak != 0)).all())


def _digest(rows: Rows) -> hashlib.blake2b:
    digest = hashlib.blake2b(digest_size=32)
    digest.update(header(rows.embeddings))
    return digest


def _refuse_bad_rows(rows: dict[str, Rows], names: tuple[str, ...], scan_rows: int) -> None:
    """Scan the modalities in order and refuse the first with NaN / Inf or zero rows, as the validation before a
    measurement does (returns when none has any)."""
    items = [(name, rows[name].embeddings) for name in names]
    bad = {name: scan(embeddings, scan_rows) for name, embeddings in items}
    refuse_or_drop(items, bad, paired=len(items) == 2, drop_invalid=False)
