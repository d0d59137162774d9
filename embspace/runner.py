"""A measurement: the families of a run driven from their declarations, over an executor's statistics.

:class:`Measurement` asks each requested family (:mod:`embspace.families`) for its needs, has the executor compute
every distinct statistic once (:class:`~embspace.executor.LocalExecutor` in one process,
:class:`~embspace.distributed.executor.ShardedExecutor` across ranks), hands the statistics to each family's
``finish`` and assembles the :class:`~embspace.report.Report`: metrics in table order, their conventions and how each
was obtained, vectors, spectra, histograms, settings, timings and provenance. Nothing here names a formula.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from typing import Any

from embspace.embeddings import Embeddings
from embspace.executor import LocalExecutor, Needs
from embspace.families import family, in_table_order
from embspace.families.base import Context, RowStat
from embspace.kernels.rows import Rows
from embspace.report import Report, environment, flatten
from embspace.row_pass import PASS_KINDS
from embspace.version import __version__


class Measurement:
    """One run over validated ``embeddings`` (name → Embeddings, one or two), computing ``families`` (canonical
    order) with ``settings`` (recorded in the report) and ``options`` (not recorded: ``alpha_req_range``, the
    requested α-ReQ fit range, whose resolved value the spectrum family records) on ``executor``."""

    def __init__(self, embeddings: dict[str, Embeddings], families: list[str], settings: dict[str, Any],
                 executor: LocalExecutor, progress: bool = False, options: dict[str, Any] | None = None) -> None:
        self.embeddings = embeddings
        self.families = families
        self.settings = settings
        self.executor = executor
        first = next(iter(embeddings.values()))
        self.context = Context(tuple(embeddings), first.n, first.dim, settings, frozenset(families),
                               sampled=settings["estimate"]["method"] == "sampled", options=options or {})
        self.needs = {name: family(name).needs(self.context) for name in families}
        self.grouped = Needs([need for found in self.needs.values() for need in found], self.context.names)
        self.show_progress = progress
        self.metrics: dict[str, Any] = {}
        self.found: dict[str, Any] = {"uncertainty": {}, "vectors": {}, "spectra": {}, "histograms": {}}

    def reads_rows_again(self) -> bool:
        """Whether a statistic reads the rows after the O(N·D) pass (pairwise passes, sampled pairs, gathered
        rows…): only then are they held in memory (:func:`~embspace.kernels.rows.prepare_rows`)."""
        return any(not (isinstance(need, RowStat) and need.kind in PASS_KINDS) for found in self.needs.values()
                   for need in found)

    @contextmanager
    def bar(self) -> Iterator[None]:
        with self.executor.bar(self.context, self.grouped, self.show_progress):
            yield

    def compute(self, rows: dict[str, Rows]) -> None:
        """Every statistic, then every family's numbers, in table order."""
        stats = self.executor.compute(self.context, self.grouped, rows)
        for fam in in_table_order(self.families):
            needs = self.needs[fam.name]
            key = self.executor.timing_key(needs[0]) if needs else fam.name
            with self.executor.timed(key):
                found = fam.finish(self.context, stats)
            self.metrics.update(found.metrics)
            for field in ("uncertainty", "vectors", "spectra", "histograms"):
                self.found[field].update(getattr(found, field))
            self.settings.update(found.settings)
        self.settings["tile"] = self.executor.plan.tile
        self.executor.finished()

    def conventions(self) -> dict[str, str]:
        """The convention of every reported metric (and of the histograms), from the family that computed it."""
        out = {}
        for fam in in_table_order(self.families):
            for key in self.metrics:
                text = fam.convention(key)
                if text and key not in out:
                    out[key] = text
        if self.found["histograms"]:
            out["histograms"] = family("histograms").convention("histograms")
        return {key: out[key] for key in [*self.metrics, "histograms"] if key in out}

    def report(self) -> Report:
        with self.executor.timed("content_hash"):  # provenance: which rows were measured (embspace.io.digest)
            inputs = {n: {"source": e.source, "n": e.n, "dim": e.dim, "dtype": e.dtype_name, "dropped": e.dropped,
                          "content_hash": self.executor.content_hash(e)} for n, e in self.embeddings.items()}
        if type(self.executor) is LocalExecutor:  # a rank of a sharded run holds its shard only
            with self.executor.timed("duplicates"):
                for name, e in self.embeddings.items():
                    inputs[name]["duplicate_rows"] = self.executor.duplicate_rows(e)
        uncertainty = {path: {"method": "exact"} for path in flatten(self.metrics)}
        uncertainty.update(self.found["uncertainty"])
        return Report(inputs=inputs, settings=self.settings, metrics=self.metrics, uncertainty=uncertainty,
                      conventions=self.conventions(), timings=self.executor.timings, vectors=self.found["vectors"],
                      spectra=self.found["spectra"], histograms=self.found["histograms"],
                      environment=environment(str(self.settings["device"])), embspace_version=__version__,
                      created=datetime.now(timezone.utc).isoformat(timespec="seconds"))
