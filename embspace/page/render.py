"""The page's HTML: the tables and the assembly of the figures (:mod:`embspace.page.figures`) into one document or
a Jupyter fragment. Duck-typed on reports and trajectories, so that both can render themselves with it."""

from __future__ import annotations

import html
import secrets
from collections.abc import Mapping, Sequence
from datetime import datetime, timezone
from typing import Any

from embspace import defaults
from embspace.errors import InputError
from embspace.formatting import format_value, interval_text
from embspace.page.figures import is_run
from embspace.version import __version__

__all__ = ["STYLE", "before_after", "comparison_table", "metric_table", "render_page"]

Item = Any  # a Report or a Trajectory (duck-typed: both render themselves with this module)
STYLE = """
.embspace-page{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:#222;max-width:1200px;
margin:0 auto;padding:0 16px 40px}
.embspace-page h1{font-size:1.6em;margin:.6em 0 .2em}.embspace-page h2{font-size:1.25em;margin:1.4em 0 .4em;
border-bottom:1px solid #ddd;padding-bottom:.2em}
.embspace-page table{border-collapse:collapse;font-size:.9em;margin:.4em 0}
.embspace-page th,.embspace-page td{padding:3px 10px;border-bottom:1px solid #eee;text-align:left}
.embspace-page td.num{text-align:right;font-family:ui-monospace,Menlo,Consolas,monospace}
.embspace-page .meta{color:#666;font-size:.9em;margin:0}.embspace-page .warn{color:#a15c00}
.embspace-page .beyond{color:#b00020;font-weight:600}.embspace-page .within{color:#2e7d32}
"""


def _named(items: Item | Sequence[Item] | Mapping[str, Item]) -> dict[str, Item]:
    if _is_item(items):
        items = [items]
    if isinstance(items, Mapping):
        named = dict(items)
    else:
        named = {}
        for i, item in enumerate(items):
            name = (item.name if is_run(item) and item.name else
                    ("before" if i == 0 else "after") if len(items) == 2 and not is_run(item)
                    else f"#{i + 1}")
            named[name if name not in named else f"{name} ({i + 1})"] = item
    if not named:
        raise InputError("report", "nothing to show: give a report or a trajectory")
    for name, item in named.items():
        if not _is_item(item):
            raise InputError(str(name), f"is a {type(item).__name__}, not a Report or Trajectory")
    return named


def _is_item(item: Any) -> bool:
    return hasattr(item, "reports") or (hasattr(item, "metrics") and hasattr(item, "flat"))


def _last(item: Item) -> Any:
    return item.reports[-1] if is_run(item) else item


def _column(name: str, item: Item) -> str:
    return f"{name} ({item.unit} {item.steps[-1]})" if is_run(item) else name


# ---- tables --------------------------------------------------------------------------------------------------
def metric_table(named: Mapping[str, Item]) -> str:
    """Every number of each report (a trajectory: its last point) with its 95 % interval where sampled."""
    reports = {_column(name, item): _last(item) for name, item in named.items()}
    paths: dict[str, None] = {}
    for report in reports.values():
        paths.update(dict.fromkeys(report.flat()))
    head = "<th>metric</th><th></th>" + "".join(
        f"<th style='text-align:right'>{html.escape(c)}</th><th>uncertainty</th>" for c in reports)
    rows = []
    for path in paths:
        metric, _, key = path.partition(".")
        conventions = next((r.conventions.get(metric) for r in reports.values() if r.conventions.get(metric)), "")
        cells = ""
        for report in reports.values():
            flat = report.flat()
            if path not in flat:
                cells += "<td class='num'>—</td><td></td>"
                continue
            found = report.uncertainty.get(path, report.uncertainty.get(metric, {}))
            how = interval_text(found) if found.get("method") == "sampled" else found.get("method", "exact")
            flag = report.flags().get(path)
            note = f" <span class='warn'>{html.escape(flag)}</span>" if flag else ""
            cells += f"<td class='num'>{format_value(flat[path])}</td><td>{html.escape(how)}{note}</td>"
        rows.append(f"<tr><td title='{html.escape(conventions, quote=True)}'><b>{html.escape(metric)}</b></td>"
                    f"<td>{html.escape(key)}</td>{cells}</tr>")
    return f"<table class='metrics'><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"


def comparison_table(comparison: Any, labels: tuple[str, str]) -> str:
    """The changes between two reports; with a significance test, its interval and verdict per metric."""
    tested = comparison.significance.metrics if comparison.significance is not None else {}
    head = (f"<th>metric</th><th style='text-align:right'>{html.escape(labels[0])}</th>"
            f"<th style='text-align:right'>{html.escape(labels[1])}</th><th style='text-align:right'>change</th>")
    if tested:
        head += f"<th>{html.escape(comparison._ci_label())}</th><th>beyond noise</th>"
    rows = []
    for change in comparison.changes:
        delta = "—" if change.delta is None else f"{change.delta:+.4f}"
        extra = ""
        if tested:
            entry = tested.get(change.path)
            if entry is None:
                extra = "<td></td><td>not tested</td>"
            else:
                verdict = entry.verdict()
                css = "beyond" if entry.significant else "within"
                extra = (f"<td class='num'>{html.escape(entry.ci_text())}</td>"
                         f"<td class='{css}'>{html.escape(verdict)}</td>")
        rows.append(f"<tr><td>{html.escape(change.path)}</td><td class='num'>{format_value(change.before)}</td>"
                    f"<td class='num'>{format_value(change.after)}</td><td class='num'>{delta}</td>{extra}</tr>")
    notes = "".join(f"<p class='warn'>⚠ {html.escape(w)}</p>" for w in comparison.warnings)
    if not tested:
        notes += ("<p class='meta'>No noise verdicts: they need the embeddings behind both reports "
                  "(<code>embspace report … --data-before SPEC --data-after SPEC</code>, or "
                  "<code>embspace.compare(…, data_before=…, data_after=…)</code>).</p>")
    elif comparison.significance.notes:
        notes += "".join(f"<p class='meta'>{html.escape(n)}</p>" for n in comparison.significance.notes)
    return f"{notes}<table class='comparison'><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"


def _inputs(named: Mapping[str, Item]) -> str:
    lines = []
    for name, item in named.items():
        report = _last(item)
        what = ", ".join(f"{html.escape(m)}: {html.escape(str(info.get('source', '?')))} ({info.get('n')} × "
                         f"{info.get('dim')}, {html.escape(str(info.get('dtype')))})"
                         for m, info in report.inputs.items())
        span = (f"trajectory of {len(item)} {html.escape(item.unit)}s ({item.steps[0]} … {item.steps[-1]}); "
                if is_run(item) else "report; ")
        settings = ", ".join(f"{k}={report.settings[k]}" for k in ("t", "alpha", "device", "precision")
                             if k in report.settings)
        lines.append(f"<li><b>{html.escape(name)}</b>: {span}{what}; {html.escape(settings)}</li>")
    return f"<ul class='meta'>{''.join(lines)}</ul>"


# ---- the page ------------------------------------------------------------------------------------------------
def render_page(
    items: Item | Sequence[Item] | Mapping[str, Item],
    *,
    comparison: Any = None,
    map_data: Mapping[str, Any] | None = None,
    captions: Sequence[str] | None = None,
    ids: Sequence[str] | None = None,
    metrics: Sequence[str] = (*defaults.CURVE_METRICS, "cone", "rmg", "recall@1"),
    title: str | None = None,
    fragment: bool = False,
) -> str:
    """The page as HTML text (:func:`embspace.page.html_report` adds the comparison it shows).

    Args:
        items: a report or trajectory, a list of them, or ``{name: item}``.
        comparison: the :class:`embspace.compare.Comparison` of :func:`before_after`'s two reports, to show.
        map_data: ``{name: rows}`` of two paired modalities for the 2-D map; ``captions`` / ``ids``: a string per row.
        metrics: the curves' families or dotted paths (those the trajectories have).
        title: the page's title.
        fragment: a ``<div>`` for Jupyter instead of a whole document.
    """
    from embspace.page import figures

    named = _named(items)
    title = title or "embspace report — " + ", ".join(named)
    token = secrets.token_hex(4) if fragment else "page"
    sections: list[tuple[str, str, str]] = []  # (id, heading, html)
    plotted = [False]

    def figure(fig: Any, key: str) -> str:
        first = not plotted[0]
        plotted[0] = True
        return fig.to_html(full_html=False, include_plotlyjs=first, div_id=f"embspace-{key}-{token}",
                           config={"displaylogo": False, "scrollZoom": key == "map", "responsive": True})

    sections.append(("metrics", "Metrics", _inputs(named) + metric_table(named)))
    runs = {name: item for name, item in named.items() if is_run(item)}
    if runs:
        summary = "".join(_trajectory_table(name, run) for name, run in runs.items())
        sections.append(("curves", "Curves over training",
                         figure(figures.curves(runs, list(metrics)), "curves") + summary))
    if any(figures._plane_point(r, defaults.PLANE_UNIFORMITY) for item in named.values()
           for r in (item.reports if is_run(item) else [item])):
        sections.append(("plane", "Uniformity–alignment plane", figure(figures.plane(named), "plane")))
    last = {name: _last(item) for name, item in named.items()}
    if any(r.spectra for r in last.values()):
        sections.append(("spectra", "Spectra", figure(figures.spectra({k: r for k, r in last.items() if r.spectra}),
                                                      "spectra")))
    pair = before_after(named)
    shown = {k: r for k, r in last.items() if r.histograms}
    if pair is not None and pair[0][1].histograms and pair[1][1].histograms:
        shown = {pair[0][0]: pair[0][1], pair[1][0]: pair[1][1]}
    if shown:
        sections.append(("histograms", "Similarity histograms", figure(figures.histograms(shown), "histograms")))
    if comparison is not None:
        labels = (pair[0][0], pair[1][0]) if pair is not None else ("before", "after")
        sections.append(("comparison", "Before and after", comparison_table(comparison, labels)))
    if map_data is not None:
        sections.append(("map", "Map of both modalities",
                         "<p class='meta'>Drag to pan, scroll to zoom, double-click to reset; hover a point for its "
                         "row, caption and partner.</p>"
                         + figure(figures.embedding_map(map_data, captions=captions, ids=ids), "map")))
    created = datetime.now(timezone.utc).isoformat(timespec="seconds")
    body = (f"<h1>{html.escape(title)}</h1><p class='meta'>embspace {__version__} · {created} · "
            + " · ".join(f"<a href='#{key}'>{html.escape(head)}</a>" for key, head, _ in sections) + "</p>"
            + "".join(f"<section id='{key}'><h2>{html.escape(head)}</h2>{content}</section>"
                      for key, head, content in sections))
    if fragment:
        return f"<div class='embspace-page'><style>{STYLE}</style>{body}</div>"
    return (f"<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'>"
            f"<meta name='viewport' content='width=device-width, initial-scale=1'>"
            f"<title>{html.escape(title)}</title><style>{STYLE}</style></head>"
            f"<body><div class='embspace-page'>{body}</div></body></html>\n")


def _trajectory_table(name: str, run: Any) -> str:
    columns, rows = run.summary()
    head = "".join(f"<th>{html.escape(c)}</th>" for c in columns)
    body = "".join("<tr>" + f"<td class='num'>{html.escape(str(row[0]))}</td><td>{html.escape(str(row[1]))}</td>"
                   + "".join(f"<td class='num'>{format_value(v)}</td>" for v in row[2:]) + "</tr>" for row in rows)
    return (f"<p class='meta'><b>{html.escape(name)}</b>: {len(run)} {html.escape(run.unit)}s</p>"
            f"<table class='trajectory'><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>")


def before_after(named: Mapping[str, Item]) -> tuple[tuple[str, Any], tuple[str, Any]] | None:
    """What to compare: exactly two reports, or a lone trajectory's first and last point."""
    values = list(named.items())
    if len(values) == 2 and all(not is_run(v) for _, v in values):
        return (values[0][0], values[0][1]), (values[1][0], values[1][1])
    if len(values) == 1 and is_run(values[0][1]) and len(values[0][1]) >= 2:
        run = values[0][1]
        return ((f"{run.unit} {run.steps[0]}", run.reports[0]), (f"{run.unit} {run.steps[-1]}", run.reports[-1]))
    return None


