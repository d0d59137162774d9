"""The page's interactive figures (plotly): curves over steps, the uniformity–alignment plane, spectra, histograms
and the 2-D map of both modalities. Each function returns a ``plotly.graph_objects.Figure``; nothing here writes."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from embspace.errors import InputError
from embspace.formatting import metric_label

Report = Any  # an embspace.report.Report (duck-typed here: Report renders itself with this module)
Trajectory = Any  # an embspace.trajectory.Trajectory


def is_run(item: Any) -> bool:
    """A trajectory (steps and their reports) rather than a single report."""
    return hasattr(item, "steps") and hasattr(item, "reports")

__all__ = ["COLORS", "curves", "embedding_map", "histograms", "is_run", "plane", "spectra"]

COLORS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf")
LAYOUT = {"template": "plotly_white", "margin": {"l": 60, "r": 20, "t": 40, "b": 50}, "hovermode": "closest",
          "legend": {"orientation": "h", "y": -0.18}}


def _label(path: str, settings: Mapping[str, Any] | None = None) -> str:
    return metric_label(path, settings)


def _interval(report: Report, path: str) -> tuple[float, float] | None:
    """The sampled 95 % interval of a number, if it has one."""
    found = report.uncertainty.get(path, {})
    if found.get("method") == "sampled" and "ci" in found:
        low, high = found["ci"]
        return float(low), float(high)
    return None


def curves(runs: Mapping[str, Trajectory], metrics: Sequence[str]):
    """One panel per metric family (or dotted path), one line per key and run, against the step; sampled numbers
    carry their 95 % interval as error bars. Hover: run, step, label, value."""
    from plotly.subplots import make_subplots

    panels = [m for m in metrics if any(t.paths_of(m) for t in runs.values())]
    if not panels:
        raise InputError("metrics", f"none of {', '.join(metrics)} is in the trajectories")
    cols = min(3, len(panels))
    rows = -(-len(panels) // cols)
    settings = next(iter(runs.values())).reports[-1].settings
    fig = make_subplots(rows=rows, cols=cols, subplot_titles=[_label(m, settings) for m in panels],
                        horizontal_spacing=0.08, vertical_spacing=0.16)
    colour = 0
    for i, metric in enumerate(panels):
        row, col = i // cols + 1, i % cols + 1
        for run_name, run in runs.items():
            for path in run.paths_of(metric):
                values = run.values(path)
                intervals = [_interval(r, path) for r in run.reports]
                error = None
                if any(iv is not None for iv in intervals):
                    high = [iv[1] - v if iv else 0.0 for iv, v in zip(intervals, values, strict=True)]
                    low = [v - iv[0] if iv else 0.0 for iv, v in zip(intervals, values, strict=True)]
                    error = {"type": "data", "array": high, "arrayminus": low, "visible": True}
                key = path.partition(".")[2]
                name = " · ".join(p for p in (run_name if len(runs) > 1 else "", key or path) if p)
                fig.add_scatter(x=run.steps, y=values, error_y=error, mode="lines+markers", name=name,
                                legendgroup=name, showlegend=True, row=row, col=col,
                                line={"color": COLORS[colour % len(COLORS)]}, customdata=run.labels,
                                hovertemplate=f"{name}<br>{run.unit} %{{x}} (%{{customdata}})<br>%{{y:.4f}}"
                                              "<extra></extra>")
                colour += 1
        fig.update_xaxes(title_text=next(iter(runs.values())).unit, row=row, col=col)
    fig.update_layout(**LAYOUT, height=320 * rows)
    return fig


def _plane_point(report: Report, uniformity: str) -> tuple[float, float] | None:
    flat = report.flat()
    x, y = flat.get("alignment"), flat.get(f"uniformity.{uniformity}")
    return (x, y) if isinstance(x, int | float) and isinstance(y, int | float) else None


def plane(items: Mapping[str, Report | Trajectory], uniformity: str = "mean"):
    """Alignment (x) against uniformity (y; lower is better for both, Wang & Isola 2020), one point per report and
    one path per trajectory in step order. Hover: the run, step and both numbers."""
    import plotly.graph_objects as go

    fig = go.Figure()
    for i, (name, item) in enumerate(items.items()):
        reports = item.reports if is_run(item) else [item]
        labels = ([f"{item.unit} {s}" for s in item.steps] if is_run(item) else [name])
        points = [(p, label) for r, label in zip(reports, labels, strict=True)
                  if (p := _plane_point(r, uniformity)) is not None]
        if not points:
            continue
        xs, ys = [p[0][0] for p in points], [p[0][1] for p in points]
        fig.add_scatter(x=xs, y=ys, mode="lines+markers+text" if len(points) > 1 else "markers+text", name=name,
                        text=[p[1] for p in points], textposition="top center", customdata=[p[1] for p in points],
                        marker={"size": 9, "color": COLORS[i % len(COLORS)],
                                "symbol": ["circle"] * (len(points) - 1) + ["star"]},
                        line={"color": COLORS[i % len(COLORS)], "dash": "dot"},
                        hovertemplate=f"{name} · %{{customdata}}<br>alignment %{{x:.4f}}<br>uniformity "
                                      f"[{uniformity}] %{{y:.4f}}<extra></extra>")
    if not fig.data:
        raise InputError("plane", "no report has both alignment and uniformity")
    fig.update_layout(**LAYOUT, height=440, title_text="Uniformity–alignment plane (lower left is better)",
                      xaxis_title=_label("alignment"), yaxis_title=_label(f"uniformity.{uniformity}"))
    return fig


def spectra(items: Mapping[str, Report], centered: bool = False):
    """Singular values σ_k / σ_1 of each modality (log–log), per report."""
    import plotly.graph_objects as go

    key = "singular_values_centered" if centered else "singular_values"
    fig = go.Figure()
    colour = 0
    for name, report in items.items():
        for modality, entry in report.spectra.items():
            sigma = np.asarray(entry.get(key, []), dtype=float)
            if sigma.size == 0 or sigma[0] <= 0:
                continue
            trace = f"{name} · {modality}" if len(items) > 1 else modality
            fig.add_scatter(x=np.arange(1, len(sigma) + 1), y=sigma / sigma[0], mode="lines", name=trace,
                            line={"color": COLORS[colour % len(COLORS)]},
                            hovertemplate=f"{trace}<br>k = %{{x}}<br>σ_k/σ_1 = %{{y:.4g}}<extra></extra>")
            colour += 1
    if not fig.data:
        raise InputError("spectra", "no report has spectra (measure with the spectrum family)")
    fig.update_layout(**LAYOUT, height=400, title_text="Singular-value spectra (row-normalised, σ_k / σ_1)",
                      xaxis={"type": "log", "title": "k"}, yaxis={"type": "log", "title": "σ_k / σ_1"})
    return fig


def histograms(items: Mapping[str, Report]):
    """Cosine-similarity densities of matched pairs, unmatched pairs and pairs within each modality, per report
    (solid: the last report, dotted: the others)."""
    import plotly.graph_objects as go

    fig = go.Figure()
    colour = 0
    for j, (name, report) in enumerate(items.items()):
        stored = report.histograms
        if not stored:
            continue
        edges = np.asarray(stored["edges"], dtype=float)
        centres, width = (edges[:-1] + edges[1:]) / 2, np.diff(edges)
        series = {"matched": stored.get("matched"), "unmatched": stored.get("unmatched"),
                  **{f"within {m}": c for m, c in stored.get("within", {}).items()}}
        for kind, counts in series.items():
            if counts is None:
                continue
            counts = np.asarray(counts, dtype=float)
            density = counts / max(counts.sum(), 1.0) / width
            trace = f"{name} · {kind}" if len(items) > 1 else kind
            fig.add_scatter(x=centres, y=density, mode="lines", name=trace,
                            line={"color": COLORS[colour % len(COLORS)], "shape": "hvh",
                                  "dash": "solid" if j == len(items) - 1 else "dot"},
                            hovertemplate=f"{trace}<br>cos %{{x:.3f}}<br>density %{{y:.3g}}<extra></extra>")
            colour += 1
    if not fig.data:
        raise InputError("histograms", "no report has histograms (measure with the histograms family)")
    fig.update_layout(**LAYOUT, height=400, title_text="Cosine-similarity histograms",
                      xaxis_title="cosine similarity", yaxis_title="density")
    return fig


def _pca(x: np.ndarray) -> tuple[np.ndarray, tuple[str, str]]:
    """The rows on the two leading principal axes of the (centred) rows, with their share of the variance."""
    centred = x - x.mean(0)
    eigenvalues, vectors = np.linalg.eigh(centred.T @ centred)
    eigenvalues, vt = np.clip(eigenvalues[::-1], 0, None), vectors[:, ::-1].T
    share = eigenvalues / max(float(eigenvalues.sum()), 1e-300)
    coords = centred @ vt[:2].T
    if coords.shape[1] < 2:
        coords, share = np.column_stack([coords, np.zeros(len(coords))]), np.append(share, 0.0)
    return coords, (f"PC 1 ({100 * share[0]:.0f}% of variance)", f"PC 2 ({100 * share[1]:.0f}% of variance)")


def embedding_map(modalities: Mapping[str, Any], *, captions: Sequence[str] | None = None,
                  ids: Sequence[str] | None = None, max_points: int = 50_000, seed: int = 0):
    """Both modalities on the two leading principal axes of their unit rows (WebGL ``scattergl``: tens of thousands
    of points pan and zoom smoothly). Hover shows the row, its caption or id (where given) and its partner (the
    same row of the other modality: where it lies and their cosine). At most ``max_points`` rows per modality
    (a seeded random subset)."""
    import plotly.graph_objects as go
    import torch

    from embspace.embeddings import Embeddings
    from embspace.io.validate import validate

    if len(modalities) != 2:
        raise InputError("map", f"takes two paired modalities, got {len(modalities)}")
    named = {name: value if isinstance(value, Embeddings) else Embeddings.from_array(np.asarray(value), name)
             for name, value in modalities.items()}
    checked = validate(named, paired=True, same_dim=True, drop_invalid=False)
    n = next(iter(checked.values())).n
    for what, given in (("captions", captions), ("ids", ids)):
        if given is not None and len(given) != n:
            raise InputError(what, f"{len(given)} {what} for {n} rows")
    keep = np.sort(np.random.default_rng(seed).choice(n, size=min(n, max_points), replace=False))
    points = {}
    for name, data in checked.items():
        x = data.take(keep).to_tensor(torch.float64).numpy()
        points[name] = x / np.linalg.norm(x, axis=1, keepdims=True)
    (a, b), names = points.values(), list(points)
    coords, axes = _pca(np.concatenate([a, b]))
    flat = {names[0]: coords[:len(keep)], names[1]: coords[len(keep):]}
    cosine = np.einsum("ij,ij->i", a, b)
    fig = go.Figure()
    for i, name in enumerate(names):
        partner = names[1 - i]
        other = flat[partner]
        text = [f"{name} row {row}" + (f" · id {ids[row]}" if ids is not None else "")
                + (f"<br>{_short(captions[row])}" if captions is not None else "")
                + f"<br>partner: {partner} row {row} at ({other[j, 0]:.3f}, {other[j, 1]:.3f}), cos {cosine[j]:.3f}"
                for j, row in enumerate(keep)]
        fig.add_trace(go.Scattergl(x=flat[name][:, 0], y=flat[name][:, 1], mode="markers", name=f"{name} ({len(keep)})",
                                   marker={"size": 4, "opacity": 0.6, "color": COLORS[i]}, text=text,
                                   hovertemplate="%{text}<extra></extra>"))
    centres = [flat[name].mean(0) for name in names]
    fig.add_annotation(x=centres[1][0], y=centres[1][1], ax=centres[0][0], ay=centres[0][1], xref="x", yref="y",
                       axref="x", ayref="y", showarrow=True, arrowhead=3, arrowwidth=2,
                       text="", hovertext=f"gap direction: {names[0]} → {names[1]} centroid")
    fig.update_layout(**LAYOUT, height=620, title_text=f"{' and '.join(names)} embeddings (PCA of unit rows; "
                                                       f"{len(keep)} of {n} pairs)",
                      xaxis_title=axes[0], yaxis_title=axes[1], dragmode="pan")
    fig.update_yaxes(scaleanchor="x", scaleratio=1)
    return fig


def _short(text: Any, limit: int = 120) -> str:
    import html

    text = str(text)
    return html.escape(text if len(text) <= limit else text[:limit - 1] + "…")
