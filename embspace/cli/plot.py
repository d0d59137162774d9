"""``embspace plot``: a figure from reports, trajectories or dumps on disk, written as PNG, SVG or PDF."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Annotated, Any

import typer

from embspace import defaults
from embspace.cli.common import app, check_writable, err, fail, flag_message
from embspace.cli.help import Command
from embspace.errors import InputError

KINDS = {
    "curves": "metrics over training; INPUT: trajectory.json files (or their folders), one per run",
    "plane": "uniformity–alignment plane; INPUT: reports and/or trajectories",
    "spectrum": "singular values, log–log; INPUT: one or more reports",
    "histograms": "cosine-similarity histograms; INPUT: one report",
    "map": "2-D map of both modalities; INPUT: dump specs (image=a.npz:img text=a.npz:txt, pairs=s.npy) or --sample",
    "before-after": "two reports side by side; INPUT: the report before and the report after",
    "reliability": "zero-shot reliability diagram; INPUT: reports measured with labels= and prompts= (before, after)",
    "gap-profile": "share of the gap's ‖Δ‖² per dimension, sorted, cumulative; INPUT: one or more reports",
    "spaces": "CKA and mutual-kNN kept between dumps; INPUT: embspace compare --json files (with the embeddings)",
}
FORMATS = (".png", ".svg", ".pdf")
DPI = 120
"""Resolution of PNG figures."""
HELP = "\n\n".join([
    "Draw a figure: embspace plot KIND INPUT... --out FIG.png|svg|pdf",
    "\b\nKinds:\n" + "\n".join(f"  {kind} — {what}." for kind, what in KINDS.items()),  # \b: one line each
])


@app.command(help=HELP, cls=Command)
def plot(
    kind: Annotated[str | None, typer.Argument(help=f"One of {', '.join(KINDS)}.", metavar="KIND",
                                               show_default=False)] = None,
    inputs: Annotated[list[str] | None, typer.Argument(
        help="Reports / trajectories (JSON), or dump specs for map.", metavar="INPUT", show_default=False)] = None,
    out_path: Annotated[Path | None, typer.Option("--out", "-o", help="The figure file: .png, .svg or .pdf.",
                                                  show_default=False)] = None,
    metrics: Annotated[str, typer.Option(help="curves: metric families or report keys (recall@1, uniformity.mean), "
                                              "comma-separated.")] = ",".join(defaults.CURVE_METRICS),
    labels: Annotated[str | None, typer.Option(help="Names of the inputs in the legend, comma-separated.",
                                               show_default=False)] = None,
    uniformity: Annotated[str, typer.Option(help="plane: which uniformity is y (mean, joint, cross or a modality).")
                          ] = defaults.PLANE_UNIFORMITY,
    method: Annotated[str, typer.Option(help="map: pca or umap (needs umap-learn).")] = defaults.MAP_METHOD,
    sample: Annotated[bool, typer.Option("--sample", help="map: the bundled sample.")] = False,
    step: Annotated[int | None, typer.Option(help="map --sample: a training step of the sample.")] = None,
    names: Annotated[str, typer.Option(help="map: names of the two halves of a pairs= stack.")
                     ] = ",".join(defaults.PAIR_NAMES),
    drop_invalid: Annotated[bool, typer.Option(
        "--drop-invalid", help="map: drop rows with NaN/Inf or zero norm (with their partners) instead of refusing.")
    ] = False,
    coarsen: Annotated[int | None, typer.Option(
        help="histograms, before-after: merge this many stored bins (a divisor of their number; 1 = the stored "
             "bins); default: per histogram, from its Freedman–Diaconis width.", show_default=False)] = None,
    dpi: Annotated[int, typer.Option(help="Resolution of PNG output.")] = DPI,
) -> None:
    import embspace.plot as figures

    if kind is None:
        fail(f"which figure? embspace plot KIND INPUT... --out FIG.png, KIND one of {', '.join(KINDS)}")
    if kind not in KINDS:
        fail(f"unknown figure {kind!r}; choose one of {', '.join(KINDS)}")
    if out_path is None:
        fail("no output file: give --out FIG.png (or .svg, .pdf)")
    if out_path.suffix.lower() not in FORMATS:
        fail(f"{out_path}: unknown figure format {out_path.suffix or '(none)'!r}; use {', '.join(FORMATS)}")
    if coarsen is not None and kind not in ("histograms", "before-after"):
        fail("--coarsen is for the histograms and before-after figures")
    check_writable(out_path, inputs or [])
    items = list(inputs or [])
    names_given = [n.strip() for n in labels.split(",")] if labels else None
    try:
        if kind == "map":
            fig = figures.embedding_map(_map_input(items, sample, step, names), method=method,
                                        drop_invalid=drop_invalid)
        elif kind == "spaces":
            fig = figures.space_structure(_spaces_input(items, names_given))
        else:
            if sample:
                fail("--sample is for the map; the other figures read reports or trajectories")
            if drop_invalid:
                fail("--drop-invalid is for the map; the other figures read reports or trajectories")
            read = _read_all(items, kind, names_given)
            if kind == "curves":
                fig = figures.curves(read, known_metrics([m.strip() for m in metrics.split(",") if m.strip()], read))
            elif kind == "plane":
                fig = figures.plane(read, uniformity=uniformity)
            elif kind == "spectrum":
                fig = figures.spectrum(read)
            elif kind == "reliability":
                fig = figures.reliability(read)
            elif kind == "gap-profile":
                fig = figures.gap_profile(read)
            elif kind == "histograms":
                fig = figures.histograms(next(iter(read.values())), coarsen=coarsen)
            else:
                before, after = read.values()
                fig = figures.before_after(before, after, labels=tuple(read), coarsen=coarsen)
        buffer = io.BytesIO()
        fig.savefig(buffer, format=out_path.suffix.lower().lstrip("."), dpi=dpi, bbox_inches="tight")
    except InputError as exc:
        fail(flag_message(exc))
    except ImportError as exc:
        fail(str(exc))
    from embspace.io.atomic import atomic_write_bytes

    try:
        atomic_write_bytes(out_path, buffer.getvalue())
    except OSError as exc:
        fail(f"{out_path}: cannot write: {exc.strerror or exc}")
    err.print(f"{kind} written to {out_path}", highlight=False, soft_wrap=True)


COUNTS = {"curves": (1, None), "plane": (1, None), "spectrum": (1, None), "histograms": (1, 1),
          "before-after": (2, 2), "reliability": (1, None), "gap-profile": (1, None)}


def _read_all(items: list[str], kind: str, labels: list[str] | None) -> dict[str, Any]:
    """{label: Report or Trajectory} from JSON paths, checked for count and type."""
    low, high = COUNTS[kind]
    if len(items) < low or (high is not None and len(items) > high):
        wanted = f"{low}" if low == high else f"at least {low}"
        plural = "" if wanted.endswith(" 1") or wanted == "1" else "s"
        fail(f"{kind} takes {wanted} input{plural} ({KINDS[kind].split('INPUT: ')[1]}), got {len(items)}")
    if labels is not None and len(labels) != len(items):
        fail(f"--labels gives {len(labels)} names for {len(items)} inputs")
    from embspace.trajectory import read_reports

    read = [read_reports(item) for item in items]
    want = {"curves": "trajectory", "spectrum": "report", "histograms": "report", "before-after": "report",
            "reliability": "report", "gap-profile": "report"}.get(kind)
    for item, value in zip(items, read, strict=True):
        if want is not None and type(value).__name__.lower() != want:
            raise InputError(item, f"is a {type(value).__name__.lower()}; {kind} needs a {want}")
    names = labels or [_label(item, value, i) for i, (item, value) in enumerate(zip(items, read, strict=True))]
    if len(set(names)) != len(names):
        names = [f"{name} ({i + 1})" for i, name in enumerate(names)]
    return dict(zip(names, read, strict=True))


def known_metrics(metrics: list[str], runs: dict[str, Any]) -> list[str]:
    """The curves' metric names, each a key or family that some run's reports have; a typo is refused in one line
    with the closest name they do have (``recall@1`` and ``uniformity.mean`` as ``measure --metrics`` takes them)."""
    from embspace.cli.vocabulary import did_you_mean

    keys = {path for run in runs.values() for report in run.reports for path in report.flat()}
    known = keys | {path.partition(".")[0] for path in keys}
    for name in metrics:
        if name not in known:
            raise InputError("metrics", f"no metric {name!r} in the reports{did_you_mean(name, known)} (they have: "
                                        f"{', '.join(sorted({k.partition('.')[0] for k in keys}))})")
    return metrics


def _spaces_input(items: list[str], labels: list[str] | None) -> dict[str, Any]:
    """{label: the JSON of a comparison} for the spaces figure (labels default to the file names)."""
    from embspace.plot._common import read_json

    if not items:
        fail(f"spaces takes at least 1 input ({KINDS['spaces'].split('INPUT: ')[1]}), got 0")
    if labels is not None and len(labels) != len(items):
        fail(f"--labels gives {len(labels)} names for {len(items)} inputs")
    read = [read_json(item)[0] for item in items]
    for item, data in zip(items, read, strict=True):
        if not isinstance(data, dict) or "spaces" not in data:
            raise InputError(item, "holds no 'spaces': write it with embspace compare --json and the embeddings "
                                   "(--data-before/--data-after)")
    return dict(zip(labels or [Path(item).stem for item in items], read, strict=True))


def _label(item: str, value: Any, i: int) -> str:
    """A trajectory's name, else its folder's name; a report's file name without .json."""
    path = Path(item)
    if type(value).__name__ == "Trajectory":
        return value.name or (path.name if path.is_dir() else path.parent.name or path.stem)
    return path.stem or f"#{i + 1}"


def _map_input(items: list[str], sample: bool, step: int | None, names: str) -> dict[str, Any]:
    import embspace

    if sample:
        if items:
            fail("--sample draws the bundled sample; give either --sample or specs, not both")
        try:
            return embspace.load_sample(step)
        except (ImportError, OSError) as exc:
            fail(f"the bundled sample cannot be read: {exc}")
    if not items:
        fail("map needs dump specs (image=a.npz:img text=a.npz:txt, or pairs=stack.npy) or --sample")
    return embspace.load(*items, names=tuple(n.strip() for n in names.split(",")))
