"""What a metric family declares: the statistics it needs, how they become numbers, its conventions, and its form
under pair weights (for the paired bootstrap of :mod:`embspace.compare`).

A run (:class:`embspace.runner.Measurement`) collects the :class:`Need` of every requested family, has an executor
compute each distinct statistic once — in one process (:mod:`embspace.executor`), across ranks
(:mod:`embspace.distributed.executor`) or from samples — and hands the finished statistics to each family's
:meth:`Family.finish`. Needs that name the same statistic are computed once: uniformity, retrieval and histograms
share one tiled pass per pair space (each modality against itself, then one against the other).

The kinds of statistic (the executor knows how to compute and merge each; a family only asks):

- :class:`RowStat`: O(N·D) sums over the rows — ``pair_sums`` (:class:`~embspace.metrics.centroid.PairSums`),
  ``moments`` of one modality, ``gram`` (:class:`~embspace.metrics.spectrum.Gram`), these three from one pass over
  the rows (:mod:`embspace.row_pass`), ``matched_log_sum``
  (log Σ_i exp(−t‖x̂_i − ŷ_i‖²)), ``probe_rows`` (seeded pairs gathered as float64 arrays);
- :class:`PairPass`: one reduction of the pairwise engine (:mod:`embspace.kernels.pairwise`) over a pair space —
  a modality against itself (``space`` = its name) or the cross space (``space`` = ``"cross"``);
- :class:`Sampled`: the estimators of :mod:`embspace.metrics.sampled` (``pairs``: uniformity and histograms from
  random pairs; ``recall``: random queries).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from embspace.kernels.pairwise import Reduction
from embspace.kernels.rows import Rows


@dataclass(frozen=True)
class Context:
    """What a family knows of the run: modality names (one or two), rows per modality, their dimension, settings
    (recorded in the report), the families requested, whether the N² families are sampled, and options the report
    does not record as given (``alpha_req_range``)."""

    names: tuple[str, ...]
    n: int
    dim: int
    settings: Mapping[str, Any]
    families: frozenset[str]
    sampled: bool = False
    options: Mapping[str, Any] = field(default_factory=dict)

    @property
    def paired(self) -> bool:
        return len(self.names) == 2

    def directions(self) -> tuple[str, str]:
        """``("a->b", "b->a")`` for modalities a, b."""
        a, b = self.names
        return f"{a}->{b}", f"{b}->{a}"


@dataclass(frozen=True)
class RowStat:
    """An O(N·D) statistic: ``kind`` is ``pair_sums``, ``moments``, ``gram``, ``matched_log_sum`` or
    ``probe_rows``; ``modality`` names the modality for ``moments`` and ``gram``. ``label`` names the timing."""

    kind: str
    modality: str | None = None
    label: str = field(default="", compare=False)
    options: Mapping[str, Any] = field(default_factory=dict, compare=False)


@dataclass(frozen=True)
class PairPass:
    """One reduction over a pair space of the pairwise engine. ``make(context, x, y, tile)`` builds it (``y`` is
    None for a modality against itself); ``state_bytes`` is what it holds whatever the tile (top-k tables, ranks);
    ``options`` tells a sharded executor what it needs to rebuild it per shard (``k`` of a top-k)."""

    space: str
    reduction: str
    make: Callable[[Context, Rows, Rows | None, int], Reduction] = field(compare=False)
    label: str = field(default="", compare=False)
    state_bytes: int = field(default=0, compare=False)
    options: Mapping[str, Any] = field(default_factory=dict, compare=False)


@dataclass(frozen=True)
class Sampled:
    """A sampled estimator: ``what`` is ``pairs`` (uniformity and/or histograms, ``options``: ``uniformity``,
    ``bins``) or ``recall``."""

    what: str
    label: str = field(default="", compare=False)
    options: Mapping[str, Any] = field(default_factory=dict, compare=False)


Need = RowStat | PairPass | Sampled


class Statistics:
    """The finished statistics of a run, looked up by the need that asked for them."""

    def __init__(self) -> None:
        self._values: dict[Need, Any] = {}

    def __setitem__(self, need: Need, value: Any) -> None:
        self._values[need] = value

    def __getitem__(self, need: Need) -> Any:
        return self._values[need]

    def __contains__(self, need: Need) -> bool:
        return need in self._values

    def row(self, kind: str, modality: str | None = None) -> Any:
        return self._values[RowStat(kind, modality)]

    def reduction(self, space: str, reduction: str) -> Any:
        return self._values[PairPass(space, reduction, make=_unused)]

    def sampled(self, what: str) -> Any:
        return self._values[Sampled(what)]


def exact_pass_left_out(context: Context, sharded: str, needs: str) -> str | None:
    """Why a run leaves out a family that needs exact N² passes: ``sharded`` under torchrun, and ``needs`` (what the
    family needs, ending in "(--estimate exact)") when the run samples its N² families; None otherwise."""
    if "distributed" in context.settings:
        return sharded
    if context.sampled:
        return f"the run samples its N² families; {needs}"
    return None


def _unused(context: Context, x: Rows, y: Rows | None, tile: int) -> Reduction:  # lookup keys never build anything
    raise AssertionError("a lookup key builds no reduction")


@dataclass
class Found:
    """A family's results: report metrics (in table order), and what goes beside them in the report."""

    metrics: dict[str, Any] = field(default_factory=dict)
    uncertainty: dict[str, dict[str, Any]] = field(default_factory=dict)
    vectors: dict[str, list[float]] = field(default_factory=dict)
    spectra: dict[str, dict[str, list[float]]] = field(default_factory=dict)
    histograms: dict[str, Any] = field(default_factory=dict)
    settings: dict[str, Any] = field(default_factory=dict)


class Weighted:
    """The rows of a paired bootstrap and the sums its families share, per block of resamples.

    ``x``, ``y``: (N, D) float32 unit rows (the subsample's, for the dense families). :meth:`sums` caches
    Σ_i w_bi x̂_i and Σ_i w_bi ŷ_i of the current weights (b, N), so that the families reading them (gap, cone,
    RMG, gap_split) do one product per modality.
    """

    def __init__(self, x: torch.Tensor, y: torch.Tensor, names: tuple[str, str], settings: Mapping[str, Any]) -> None:
        self.x, self.y, self.names, self.settings = x, y, names, settings
        self._weights: torch.Tensor | None = None
        self._cache: dict[str, Any] = {}
        self._static: dict[str, Any] = {}

    def at(self, w: torch.Tensor) -> Weighted:
        """Use the weights ``w`` (b, N) from now on (clears the shared sums)."""
        self._weights, self._cache = w, {}
        return self

    @property
    def w(self) -> torch.Tensor:
        assert self._weights is not None, "call at(w) first"
        return self._weights

    def shared(self, key: str, compute: Callable[[], Any]) -> Any:
        """A value computed once per weights and shared by the families (``compute()`` on first use)."""
        if key not in self._cache:
            self._cache[key] = compute()
        return self._cache[key]

    def static(self, key: str, compute: Callable[[], Any]) -> Any:
        """A value of the rows alone (not of the weights), computed once and shared (per-pair terms, dense
        similarity matrices)."""
        if key not in self._static:
            self._static[key] = compute()
        return self._static[key]

    def sums(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(n (b,), Σw x̂ (b, D), Σw ŷ (b, D)), float64."""
        return self.shared("sums", lambda: (self.w.sum(1).double(), (self.w @ self.x).double(),
                                            (self.w @ self.y).double()))

    def distinct(self) -> torch.Tensor:
        """n² − Σw², the ordered pairs of different original pairs (b,): two copies of one pair are not a pair."""
        return self.shared("distinct", lambda: self.w.sum(1).double() ** 2 - self.w.pow(2).sum(1).double())


class Family:
    """A metric family. Subclasses set the attributes and implement :meth:`needs` and :meth:`finish`.

    Attributes:
        name: the family's name in ``metrics=`` (``"gap"``).
        aliases: other names that select it (``"centroid_cosine"``).
        paired_only: needs two paired modalities.
        table_position: where its metrics stand in the table and the report (smaller first).
        conventions: report key → the convention text written beside the numbers.
        resampled: how :mod:`embspace.compare` bootstraps it — ``"pairs"`` (every pair, O(N·D)), ``"subsample"``
            (the dense formulas on a seeded subsample) or None (not bootstrapped; :attr:`not_resampled` says why).
        not_resampled: what ``compare`` does not test, and why (listed in its ``not_tested``); for a resampled family,
            the metrics its :meth:`resample` leaves out.
    """

    name: str = ""
    aliases: tuple[str, ...] = ()
    paired_only: bool = False
    table_position: float = 0.0
    conventions: Mapping[str, str] = {}
    resampled: str | None = None
    not_resampled: str = ""

    def needs(self, context: Context) -> list[Need]:
        raise NotImplementedError

    def finish(self, context: Context, stats: Statistics) -> Found:
        raise NotImplementedError

    def resample_paths(self, names: tuple[str, str], settings: Mapping[str, Any]) -> list[str]:
        """Report paths :meth:`resample` returns."""
        return []

    def resample(self, view: Weighted) -> dict[str, np.ndarray]:
        """The family's metrics on weighted pairs, one value per resample (b,); w = 1 gives the exact metric."""
        raise NotImplementedError(f"{self.name} is not resampled")

    def half_sample_paths(self, names: tuple[str, str], settings: Mapping[str, Any]) -> list[str]:
        """Report paths :meth:`on_rows` returns: the metrics ``compare`` bounds by half-samples (the delete-d
        jackknife of :mod:`embspace.bootstrap`) instead of the bootstrap, because they fit a rotation or a subspace
        to the rows and a resample's copies of a row would bias them."""
        return []

    def on_rows(self, x: torch.Tensor, y: torch.Tensor, names: tuple[str, str], settings: Mapping[str, Any], *,
                exact: bool = True) -> dict[str, float]:
        """The :meth:`half_sample_paths` metrics of these paired unit rows, ``x`` (R, D_x) and ``y`` (R, D_y) float64;
        ``exact=False`` allows a faster route whose error stays far below the spread of the half-samples."""
        raise NotImplementedError(f"{self.name} is not half-sampled")

    def convention(self, key: str) -> str | None:
        return self.conventions.get(key)
