"""Normalised row blocks on the compute device: what every kernel reads.

`Rows` hides whether the matrix sits on the device (``ResidentRows``) or is read from its source tile by tile
(``StreamedRows``, for inputs larger than the memory budget). Device and precision are resolved once, by
:func:`resolve_device` and :func:`resolve_precision`, at the entry point.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np
import torch

from embspace.embeddings import Embeddings
from embspace.errors import InputError
from embspace.kernels.budget import OOM_ERRORS

NORM_TOLERANCE = 1e-3
CENTRE_ROWS, CENTRE_STEP = 4096, 256  # the centre of the centred rows: the mean of the first 4096, read 256 at a time
SAFE_PEAK = (2.0**-50, 2.0**50)  # largest |x_k| of rows that square safely in float32: D·2^100 < 2^128


def row_peaks(wide: torch.Tensor) -> torch.Tensor:
    """The largest |x_k| of every row, (B, 1): NaN or inf where a row holds NaN or inf, 0 for an all-zero row.
    max(max_k x_k, −min_k x_k): exactly max_k |x_k|, without a copy of the block."""
    if not (wide.shape[1] and len(wide)):
        return wide.new_zeros((len(wide), 1))
    low, high = torch.aminmax(wide, dim=1, keepdim=True)  # (B, 1) each; NaN propagates
    return torch.maximum(high, low.neg())


def row_norms(wide: torch.Tensor, peak: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(x / 2^e, 2^e) per row, 2^e the power of two just above the row's largest |x_k|: the scaled rows have
    max |x_k| in [1/2, 1), so their squared norm lies in [1/4, D] whatever the scale of x — rows of norm 1e30 in
    float32 or 1e200 in float64 no longer square to inf, subnormal rows no longer square to 0.

    Scaling by a power of two is exact (it only moves the exponent); it is applied in two halves so that neither
    factor leaves the dtype's range (2^149 does not exist in float32, 2^1074 not in float64). All-zero rows keep
    scale 1 (the validation refuses them; their norm is 0). Rows inside :data:`SAFE_PEAK` are returned as they
    are (scale 1), so ordinary data are normalised exactly as a plain ``x / ‖x‖`` would. Returns
    ``(scaled (B, D), scale (B, 1))``; ``peak`` is :func:`row_peaks` of ``wide`` where already known.
    """
    peak = row_peaks(wide) if peak is None else peak  # (B, 1)
    if len(wide) == 0 or bool(((peak > SAFE_PEAK[0]) & (peak < SAFE_PEAK[1])).all()):
        return wide, torch.ones_like(peak)  # squares can neither overflow nor underflow: nothing to scale
    exponent = torch.frexp(peak).exponent.to(wide.dtype).masked_fill_(peak == 0, 0)  # peak = m·2^e, m ∈ [½, 1)
    first = torch.floor(exponent / 2)
    scaled = wide * torch.exp2(-first) * torch.exp2(first - exponent)
    return scaled, torch.exp2(exponent)


def normalize_block(
    block: torch.Tensor, source: str, start: int, require_normalized: bool, dtype: torch.dtype = torch.float32,
    *, peaks: list[torch.Tensor] | None = None,
) -> torch.Tensor:
    """x̂ = x / ‖x‖ in float32 (float64 when either side is float64); refuses non-unit rows if asked to.

    The norm is taken scale-safely (:func:`row_norms`): every finite non-zero row, from subnormal to the largest
    float, gives a unit row; a row whose norm is 0 (all zeros) is refused here too, with its row number, in case
    the validation scan was skipped. ``peaks``, when given, is appended the rows' largest |x_k| ((B, 1): NaN or
    inf for a row holding NaN or inf, 0 for an all-zero row), which is how the O(N·D) pass
    (:mod:`embspace.row_pass`) validates the rows it normalises without reading them again.
    """
    wide = block.double() if torch.float64 in (block.dtype, dtype) else block.float()
    peak = row_peaks(wide)  # (B, 1)
    if peaks is not None:
        peaks.append(peak)
    scaled, scale = row_norms(wide, peak)  # (B, D), (B, 1)
    norms = scaled.norm(dim=1, keepdim=True)  # (B, 1) in [1/2, √D] for non-zero rows
    zero = norms.squeeze(1) == 0
    if bool(zero.any()):
        row = start + int(torch.nonzero(zero)[0])
        raise InputError(source, f"row {row} has zero norm and cannot be normalised")
    if require_normalized:
        true_norms = norms.double() * scale.double()  # (B, 1), finite in float64 for any float32 row
        off = ~((true_norms.squeeze(1) - 1).abs() <= NORM_TOLERANCE)
        if bool(off.any()):
            row = start + int(torch.nonzero(off)[0])
            raise InputError(source, f"row {row} has norm {float(true_norms[row - start]):.6g}, not 1 "
                                     f"(normalisation was refused; drop --require-normalized to normalise)")
    return scaled / norms if scaled is block else scaled.div_(norms)  # in place only on a copy: never the input


@dataclass
class CentredBlock:
    """Rows of one block written about a centre c: x̂_i = c + w_i·v_i, for distances without cancellation.

    ‖x̂_i − x̂_j‖² = ‖w_i v_i − w_j v_j‖² is translation-invariant, and for rows in a narrow cone the offsets
    w_i·v_i are small: their products keep the precision that 2 − 2·x̂_i·x̂_j loses to cancellation (at cone
    0.99998, 1 − s ≈ 2·10⁻⁵ against s's float32 rounding of 6·10⁻⁸). ``vectors`` are stored in the tile dtype,
    each scaled by a power of two ``scale`` (so that half precision keeps its full mantissa however small the
    offsets are; 1 for float32 / float64 tiles); ``sq_norm`` is ‖w_i v_i‖² of the stored vectors, in float64.
    """

    vectors: torch.Tensor  # (B, D) v_i in the tile dtype
    scale: torch.Tensor  # (B,) float64 w_i, a power of two
    sq_norm: torch.Tensor  # (B,) float64 ‖w_i v_i‖²
    centre: torch.Tensor  # (D,) float64 c

    def __len__(self) -> int:
        return len(self.vectors)

    def offsets(self) -> torch.Tensor:
        """w_i·v_i = x̂_i − c as stored, (B, D) float64."""
        return self.vectors.double() * self.scale[:, None]


HALF = (torch.float16, torch.bfloat16)


def centre_block(unit: torch.Tensor, centre: torch.Tensor, dtype: torch.dtype) -> CentredBlock:
    """Unit rows (any float dtype, the more precise the better: half-precision rows have already lost what
    centring would keep) as a :class:`CentredBlock` about ``centre`` in the tile ``dtype``.

    The offsets x̂ − c are formed in float64 (float32 for float32 / half input: its rounding, 2⁻²⁴·|x̂_k|, is far
    below the tiles' own), scaled for half tiles by the power of two above each row's largest offset.
    """
    wide = torch.float64 if torch.float64 in (unit.dtype, dtype) else torch.float32
    offsets = unit.to(wide) - centre.to(unit.device, wide)  # (B, D)
    if dtype in HALF and len(offsets):
        peak = offsets.abs().amax(dim=1) if offsets.shape[1] else offsets.new_zeros(len(offsets))  # (B,)
        scale = torch.exp2(torch.frexp(peak).exponent.to(wide)).masked_fill_(peak == 0, 1.0)  # |offset/scale| < 1
        vectors = (offsets / scale[:, None]).to(dtype)
        scale = scale.double()
    else:
        vectors = offsets.to(dtype)
        scale = torch.ones(len(offsets), dtype=torch.float64, device=offsets.device)
    sq_norm = vectors.double().pow(2).sum(1) * scale.pow(2)  # (B,) of the stored vectors
    return CentredBlock(vectors, scale, sq_norm, centre.to(unit.device, torch.float64))


@dataclass
class Rows:
    """Row-normalised N×D matrix readable in blocks on ``device`` in ``dtype``.

    :meth:`centred` gives the same rows about a fixed centre (:class:`CentredBlock`), what the uniformity sums
    read; ``centre`` is set where the rows are prepared, else taken as the mean of the first block.
    """

    source: str
    n: int
    dim: int
    device: torch.device
    dtype: torch.dtype
    max_rows: int = 65_536  # the most rows :meth:`blocks` yields at once (set from the memory budget)
    centre: torch.Tensor | None = field(default=None, repr=False)  # (D,) float64, the centre of :meth:`centred`
    centre_from_source: bool = field(default=False, repr=False)  # centre: :func:`first_centre`, at first use

    def block(self, start: int, stop: int) -> torch.Tensor:
        raise NotImplementedError

    def blocks(self, rows: int) -> Iterator[tuple[int, torch.Tensor]]:
        """``(start, rows[start:start+step])`` over the matrix, step = min(rows, max_rows)."""
        step = max(1, min(rows, self.max_rows))
        for start in range(0, self.n, step):
            yield start, self.block(start, min(start + step, self.n))

    def centre_vector(self) -> torch.Tensor:
        """The centre of :meth:`centred` (any point works: distances do not depend on it; one near the rows keeps
        the offsets small). Default: the float64 mean of the first block of rows; :func:`first_centre` of the
        source where ``centre_from_source`` is set (rows prepared before the pass that validates them)."""
        source = getattr(self, "embeddings", None)
        if self.centre is None and self.centre_from_source and source is not None:
            strict = bool(getattr(self, "require_normalized", False))
            self.centre = first_centre(source, self.device, self.max_rows, strict)
        if self.centre is None:
            first = self.block(0, min(self.n, self.max_rows))
            self.centre = (first.double().mean(0) if len(first) else
                           torch.zeros(self.dim, dtype=torch.float64, device=self.device))
        return self.centre

    def centred(self, start: int, stop: int) -> CentredBlock:
        """Rows [start, stop) about :meth:`centre_vector`, in the tile dtype. This default centres the stored rows
        (exact for float32 / float64 tiles; half-precision rows keep their storage rounding, 2⁻¹¹ or 2⁻⁸ of each
        unit row, which :class:`ResidentRows` and :class:`StreamedRows` avoid by centring before rounding)."""
        return centre_block(self.block(start, stop), self.centre_vector(), self.dtype)


@dataclass
class ResidentRows(Rows):
    """All rows held on the device.

    For half-precision tiles prepared from a source (``embeddings``), :meth:`centred` reads the source once more
    and keeps the centred rows, rounded only after centring, beside the rows (built at the first call).
    """

    data: torch.Tensor | None = None
    embeddings: Embeddings | None = field(default=None, repr=False)
    require_normalized: bool = False
    filled: bool = True  # False until the O(N·D) pass has written every row (prepare_rows(fill=False))
    _centred: CentredBlock | None = field(default=None, repr=False)

    def block(self, start: int, stop: int) -> torch.Tensor:
        return self.data[start:stop]

    def from_source(self, raw: torch.Tensor, start: int, peaks: list[torch.Tensor] | None = None) -> torch.Tensor:
        """Rows ``raw`` (stored rows from ``start``) normalised into the held rows, as :func:`prepare_rows` fills
        them; returns them (what :meth:`block` gives from now on)."""
        unit = normalize_block(raw.to(self.device), self.source, start, self.require_normalized, self.dtype,
                               peaks=peaks)
        self.data[start : start + len(raw)] = unit.to(self.dtype)
        return self.data[start : start + len(raw)]

    def centred(self, start: int, stop: int) -> CentredBlock:
        if self.dtype not in HALF or self.embeddings is None:
            return super().centred(start, stop)
        if self._centred is None:
            self._centred = self._centre_all()
        if self._centred.vectors.shape[0] != self.n:  # the copy did not fit: centre each block from the source
            return centred_from_source(self.embeddings, start, stop, self.centre_vector(), self.dtype, self.device,
                                       self.source, self.require_normalized)
        whole = self._centred
        return CentredBlock(whole.vectors[start:stop], whole.scale[start:stop], whole.sq_norm[start:stop],
                            whole.centre)

    def _centre_all(self) -> CentredBlock:
        """Every row centred from the source (an empty block when the copy does not fit in memory)."""
        centre = self.centre_vector()
        try:
            vectors = torch.empty((self.n, self.dim), dtype=self.dtype, device=self.device)  # (N, D)
            scale = torch.empty(self.n, dtype=torch.float64, device=self.device)  # (N,)
            sq_norm = torch.empty(self.n, dtype=torch.float64, device=self.device)  # (N,)
        except OOM_ERRORS:
            return CentredBlock(self.data[:0], centre.new_empty(0), centre.new_empty(0), centre)
        for start in range(0, self.n, self.max_rows):
            stop = min(start + self.max_rows, self.n)
            part = centred_from_source(self.embeddings, start, stop, centre, self.dtype, self.device, self.source,
                                       self.require_normalized)
            vectors[start:stop], scale[start:stop], sq_norm[start:stop] = part.vectors, part.scale, part.sq_norm
        return CentredBlock(vectors, scale, sq_norm, centre)


def centred_from_source(embeddings: Embeddings, start: int, stop: int, centre: torch.Tensor, dtype: torch.dtype,
                        device: torch.device, source: str, require_normalized: bool) -> CentredBlock:
    """Rows [start, stop) read from the source and normalised; for half tiles centred in float32 / float64 and
    rounded after, for float32 / float64 tiles rounded to the tile dtype first (as the resident rows are, so that
    both give the same tiles; the rounding of a float32 unit row is far below what centring keeps)."""
    raw = embeddings.read(start, stop).to(device)
    unit = normalize_block(raw, source, start, require_normalized, dtype)
    return centre_block(unit if dtype in HALF else unit.to(dtype), centre, dtype)


@dataclass
class StreamedRows(Rows):
    """Rows read from their source, normalised and moved to the device on every request."""

    embeddings: Embeddings | None = None
    require_normalized: bool = False

    def block(self, start: int, stop: int) -> torch.Tensor:
        return self.from_source(self.embeddings.read(start, stop), start)

    def from_source(self, raw: torch.Tensor, start: int, peaks: list[torch.Tensor] | None = None) -> torch.Tensor:
        """Rows ``raw`` (stored rows from ``start``) as :meth:`block` gives them: normalised, on the device."""
        unit = normalize_block(raw, self.source, start, self.require_normalized, self.dtype, peaks=peaks)
        return unit.to(self.device, self.dtype, non_blocking=True)

    def centred(self, start: int, stop: int) -> CentredBlock:
        return centred_from_source(self.embeddings, start, stop, self.centre_vector(), self.dtype, self.device,
                                   self.source, self.require_normalized)


def available_memory(device: torch.device) -> int:
    """Free bytes on the device (GPU: cudaMemGetInfo; CPU: MemAvailable)."""
    if device.type == "cuda":
        return torch.cuda.mem_get_info(device)[0]
    try:
        with open("/proc/meminfo") as handle:
            for line in handle:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 4 << 30


def as_embeddings(data: Embeddings | np.ndarray | torch.Tensor, source: str = "<array>") -> Embeddings:
    return data if isinstance(data, Embeddings) else Embeddings.from_array(data, source)


def prepare_rows(
    data: Embeddings | np.ndarray | torch.Tensor,
    device: torch.device,
    dtype: torch.dtype,
    *,
    require_normalized: bool = False,
    memory_budget: int | None = None,
    chunk_rows: int = 65_536,
    resident: bool = True,
    fill: bool = True,
) -> Rows:
    """Normalise rows chunk by chunk; keep them on the device when they fit in a quarter of the budget.

    Otherwise (or when allocating them runs out of memory, or ``resident`` is False: nothing will read them twice)
    the rows are streamed from their source; either way :meth:`Rows.blocks` yields at most ``chunk_rows`` rows at a
    time. ``fill=False`` reads nothing: the held rows are allocated and left for the O(N·D) pass to fill
    (:mod:`embspace.row_pass`, through ``from_source``), and the centre of the centred rows is read at
    first use, after that pass has validated them.
    """
    emb = as_embeddings(data)
    budget = memory_budget if memory_budget is not None else available_memory(device)
    size = emb.n * emb.dim * torch.finfo(dtype).bits // 8
    centre = first_centre(emb, device, chunk_rows, require_normalized) if fill else None
    streamed = StreamedRows(emb.source, emb.n, emb.dim, device, dtype, max_rows=chunk_rows, centre=centre,
                            centre_from_source=not fill, embeddings=emb, require_normalized=require_normalized)
    if size > budget // 4 or not resident:
        return streamed
    try:
        out = torch.empty((emb.n, emb.dim), dtype=dtype, device=device)  # (N, D) unit rows
    except OOM_ERRORS:
        return streamed
    rows = ResidentRows(emb.source, emb.n, emb.dim, device, dtype, max_rows=chunk_rows, centre=centre,
                        centre_from_source=not fill, data=out, embeddings=emb, require_normalized=require_normalized,
                        filled=fill)
    if fill:
        for start, raw in emb.chunks(chunk_rows):
            rows.from_source(raw, start)
    return rows


def first_centre(emb: Embeddings, device: torch.device, chunk_rows: int, require_normalized: bool) -> torch.Tensor:
    """The centre of the rows' :meth:`Rows.centred` form: the mean of the first :data:`CENTRE_ROWS` unit rows (a
    point inside the cone of the rows; its exact position does not matter), summed in float64 in a fixed order
    and rounded to float32, so that it is the same whatever the memory budget (``chunk_rows`` is not used)."""
    total = torch.zeros(emb.dim, dtype=torch.float64, device=device)  # (D,)
    count = min(emb.n, CENTRE_ROWS)
    for start in range(0, count, CENTRE_STEP):
        raw = emb.read(start, min(start + CENTRE_STEP, count)).to(device)
        total += normalize_block(raw, emb.source, start, require_normalized, torch.float64).sum(0)
    return (total / max(count, 1)).float().double()
