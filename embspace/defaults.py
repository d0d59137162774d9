"""The defaults of the public API's parameters, in a module that imports nothing (no torch, numpy or matplotlib).

The command line's option defaults are these names (``embspace measure --t`` is :data:`T`), so that ``embspace …
--help`` starts without loading torch and the CLI never restates a default; the API's signatures use the same
names. ``tests/test_cli_defaults.py`` checks every option's default against the signature of the function it
feeds.
"""

from __future__ import annotations

# ---- measure (embspace.measure) --------------------------------------------------------------------------------
METRICS = "all"
"""Every metric family (one modality: the single-modality ones)."""
T = 2.0
"""Uniformity temperature t of log mean exp(−t‖x − y‖²) (Wang & Isola 2020)."""
ALPHA = 2.0
"""Alignment exponent α of mean ‖x_i − y_i‖^α (Wang & Isola 2020)."""
DEVICE = "auto"
"""CUDA when present, else the CPU."""
PRECISION = "auto"
"""fp16 tiles with fp32 accumulation on CUDA, fp32 on the CPU."""
ESTIMATE = "auto"
"""Exact up to :data:`SAMPLE_ABOVE` rows per modality, sampled above."""
SAMPLE_ABOVE = 200_000
"""Rows per modality above which ``estimate="auto"`` samples the N² families."""
PAIRS = 1_000_000
"""Sampled pairs per uniformity variant and similarity histogram."""
QUERIES = 10_000
"""Sampled queries per recall direction."""
RMG_FLOOR = "source"
"""The RMG's floor on the matched distance: Schrodi et al.'s (1e-3 replaces only d_m ≤ 0); ``clamp``: max(d_m, 1e-3)."""
ALPHA_REQ_FIT = "reptrix"
"""The α-ReQ fit: the authors' (reptrix: 1/k-weighted least squares over k = 11…100); ``ols``: unweighted."""
PAIR_NAMES = ("image", "text")
"""Names of the two halves of a (2, N, D) stack (``pairs=``)."""

# ---- trajectories (embspace.measure_trajectory) ----------------------------------------------------------------
UNIT = "step"
"""What a step of a run counts; the x-axis label of curves."""

# ---- compare (embspace.compare) --------------------------------------------------------------------------------
RESAMPLES = 1000
"""Bootstrap resamples of the noise check."""
SEED = 0
"""Seed of the bootstrap (and of a fine-tuning run)."""
CONFIDENCE = 0.95
"""Level of the interval of each change."""
SUBSAMPLE = 2000
"""Pairs used by the bootstrap of the quadratic metrics (uniformity, recall)."""

# ---- shift (embspace.finetune.shift_dump) ----------------------------------------------------------------------
SHIFT_LAM = 0.5
"""Step λ along the gap vector Δ of Liang et al.'s shift (0.5 meets in the middle)."""

# ---- figures (embspace.plot) -----------------------------------------------------------------------------------
CURVE_METRICS = ("gap", "uniformity", "alignment")
"""Metrics drawn by :func:`embspace.plot.curves`."""
PLANE_UNIFORMITY = "mean"
"""Which uniformity is the y axis of :func:`embspace.plot.plane`."""
MAP_METHOD = "pca"
"""Projection of :func:`embspace.plot.embedding_map`."""
