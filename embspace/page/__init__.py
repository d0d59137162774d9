"""One self-contained HTML page of a study: reports, trajectories, their comparison and a map of the embeddings.

:func:`html_report` builds the page (a string); :func:`write_html` writes it atomically under the repository's output
rules (an input is never overwritten; a folder, socket or block device is refused). The page holds, where the inputs
have them:

- the metric table: every number of each report (a trajectory: its last point) with its 95 % interval and sample
  size where it was sampled (``exact`` otherwise), and the convention of each metric on hover;
- the curves over steps of each trajectory (sampled numbers with error bars);
- the uniformity–alignment plane (one point per report, one path per trajectory);
- the singular-value spectra and the cosine-similarity histograms;
- the before/after comparison (two reports, or a trajectory's first and last point) with its noise verdicts where
  the embeddings of both were given (the paired bootstrap of :func:`embspace.compare`);
- an interactive 2-D map of both modalities where a dump is given (WebGL, tens of thousands of points; hover shows
  the row, its caption or id and its partner).

The figures are plotly figures; plotly.js is embedded whole once (``include_plotlyjs=True``), so that the page opens
with no network. ``Report._repr_html_`` and ``Trajectory._repr_html_`` show the same content in Jupyter
(:func:`html_report` with ``fragment=True``).

>>> import numpy as np, embspace
>>> rng = np.random.default_rng(0)
>>> report = embspace.measure(image=rng.normal(size=(40, 6)), text=rng.normal(size=(40, 6)),
...                           metrics="gap,alignment,uniformity")
>>> page = html_report(report)
>>> page.startswith("<!DOCTYPE html>") and "<section id='metrics'>" in page and len(page) > 3_000_000
True
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

__all__ = ["html_report", "write_html"]


def html_report(items: Any, *, comparison: Any = None, data_before: Mapping[str, Any] | None = None,
                data_after: Mapping[str, Any] | None = None, resamples: int = 200, **options: Any) -> str:
    """The page as HTML text.

    Args:
        items: a report or trajectory, a list of them, or ``{name: item}``.
        comparison: an :class:`embspace.compare.Comparison` to show; by default two reports (or one trajectory's
            first and last point) are compared (:func:`embspace.compare`), with the paired bootstrap when
            ``data_before`` and ``data_after`` (the embeddings of both, the same pairs) are given (``resamples``
            resamples).
        **options: :func:`embspace.page.render.render_page`'s: ``map_data``, ``captions``, ``ids``, ``metrics``,
            ``title``, ``fragment``.
    """
    from embspace.page.render import _named, before_after, render_page

    named = _named(items)
    pair = before_after(named)
    if comparison is None and pair is not None:
        from embspace.compare import compare

        comparison = compare(pair[0][1], pair[1][1], data_before=data_before, data_after=data_after,
                             resamples=resamples)
    elif data_before is not None or data_after is not None:
        from embspace.errors import InputError

        raise InputError("data_before", "the noise verdicts compare two reports or a trajectory's first and last "
                                        "point; these inputs have no such pair")
    return render_page(named, comparison=comparison, **options)


def write_html(path: str | os.PathLike[str], items: Any, *, inputs: Sequence[str | os.PathLike[str]] = (),
               **options: Any) -> str:
    """Write :func:`html_report` atomically to ``path`` (refused when it is one of ``inputs`` or a file this
    process read, a folder, a socket or a block device); returns the page."""
    from embspace.io.atomic import atomic_write_text, resolve_output

    resolve_output(path, inputs)
    page = html_report(items, **options)
    atomic_write_text(path, page)
    return page
