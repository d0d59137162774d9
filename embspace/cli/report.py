"""``embspace report``: one self-contained HTML page of runs and reports (:func:`embspace.page.html_report`).

    embspace report runs/ --html page.html
    embspace report before.json after.json --data-before pairs=a.npy --data-after pairs=b.npy --html page.html
    embspace report runs/ --map image=e.npz:img --map text=e.npz:txt --captions e.npz:captions --html page.html
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from embspace import defaults
from embspace.cli.common import app, check_writable, err, fail, flag_message
from embspace.cli.help import Command
from embspace.errors import InputError

HELP = ("Write one self-contained HTML page (no network needed to view it): the metric table with uncertainty, "
        "curves over steps, the uniformity–alignment plane, spectra, histograms, the before/after comparison and, "
        "with --map or --sample, an interactive map of both modalities.")


@app.command(help=HELP, cls=Command)
def report(
    inputs: Annotated[list[str] | None, typer.Argument(
        help="Trajectories (trajectory.json or its folder) and/or reports (JSON); two reports, or one trajectory's "
             "first and last point, are compared.", metavar="RUN_OR_REPORTS", show_default=False)] = None,
    html_path: Annotated[Path | None, typer.Option("--html", help="The page to write (.html).",
                                                   show_default=False)] = None,
    map_specs: Annotated[list[str] | None, typer.Option(
        "--map", help="Dump of the map: pairs=STACK, or NAME=PATH[:KEY] twice (repeat the option).",
        show_default=False)] = None,
    captions: Annotated[str | None, typer.Option(
        help="A caption per row of the map: PATH[:KEY] of a .npz / .npy string array, or a .txt (one per line).",
        show_default=False)] = None,
    ids: Annotated[str | None, typer.Option(help="An id per row of the map, as --captions.",
                                            show_default=False)] = None,
    sample: Annotated[bool, typer.Option(
        "--sample", help="The bundled sample: its map (final step, with captions) and, for a trajectory of its "
                         "snapshots, its first and last snapshot behind the comparison's noise verdicts.")] = False,
    data_before: Annotated[list[str] | None, typer.Option(
        "--data-before", help="The embeddings behind the first report compared (enables the noise verdicts).",
        show_default=False)] = None,
    data_after: Annotated[list[str] | None, typer.Option(
        "--data-after", help="The embeddings behind the second, the same pairs in the same order.",
        show_default=False)] = None,
    names: Annotated[str, typer.Option(help="Names of the two halves of a pairs= stack.")
                     ] = ",".join(defaults.PAIR_NAMES),
    metrics: Annotated[str, typer.Option(help="Curves: metric families or report keys, comma-separated.")
                       ] = "gap,uniformity,alignment,cone,rmg,recall@1",
    resamples: Annotated[int, typer.Option(help="Bootstrap resamples of the noise verdicts.")] = 200,
    title: Annotated[str | None, typer.Option(help="The page's title.", show_default=False)] = None,
) -> None:
    import embspace
    from embspace.page import write_html
    from embspace.trajectory import read_reports

    items = list(inputs or [])
    if not items:
        fail("nothing to show: give trajectories (runs/ or runs/trajectory.json) and/or reports")
    if html_path is None:
        fail("no output file: give --html PAGE.html")
    if html_path.suffix.lower() not in (".html", ".htm"):
        fail(f"{html_path}: the page is HTML; give a path ending in .html")
    if sample and map_specs:
        fail("--sample draws the bundled sample's map; give either --sample or --map, not both")
    if bool(data_before) != bool(data_after):
        fail("the noise verdicts need both --data-before and --data-after")
    given = [*items, *(map_specs or []), *(data_before or []), *(data_after or []),
             *(s.rpartition(":")[0] or s for s in (captions, ids) if s)]
    check_writable(html_path, given)
    split = tuple(n.strip() for n in names.split(","))
    try:
        read = {}
        for i, item in enumerate(items):
            value = read_reports(item)
            name = _name(item, value, i)
            read[name if name not in read else f"{name} ({i + 1})"] = value
        options: dict[str, Any] = {"metrics": [m.strip() for m in metrics.split(",") if m.strip()],
                                   "resamples": resamples, "title": title}
        if map_specs:
            options["map_data"] = embspace.load(*map_specs, names=split)
        if captions:
            options["captions"] = read_strings(captions, "--captions")
        if ids:
            options["ids"] = read_strings(ids, "--ids")
        if sample:
            options.update(sample_options(read))
        if data_before:
            options["data_before"] = embspace.load(*data_before, names=split)
            options["data_after"] = embspace.load(*data_after, names=split)
        page = write_html(html_path, read, inputs=given, **options)
    except InputError as exc:
        fail(flag_message(exc))
    except OSError as exc:
        fail(f"{html_path}: cannot write: {exc.strerror or exc}")
    err.print(f"page written to {html_path} ({len(page.encode()) / 2**20:.1f} MiB)", highlight=False,
              soft_wrap=True)


def _name(item: str, value: Any, i: int) -> str:
    path = Path(item)
    if type(value).__name__ == "Trajectory":
        return value.name or (path.name if path.is_dir() else path.parent.name or path.stem)
    return path.stem or f"#{i + 1}"


def read_strings(spec: str, flag: str) -> list[str]:
    """A string per row from ``PATH:KEY`` (.npz), ``PATH`` (.npy) or a .txt file (one per line)."""
    import numpy as np

    from embspace.io.atomic import note_input

    path, _, key = spec.rpartition(":") if ":" in spec and not Path(spec).exists() else (spec, "", "")
    where = Path(path)
    if not where.is_file():
        raise InputError(flag, f"{path}: no such file")
    note_input(where)
    if where.suffix.lower() == ".txt":
        return where.read_text(encoding="utf-8").splitlines()
    try:
        if where.suffix.lower() == ".npz":
            with np.load(where, allow_pickle=False) as loaded:
                if not key:
                    raise InputError(flag, f"{path} holds {', '.join(loaded.files)}; name one as {path}:KEY")
                if key not in loaded.files:
                    raise InputError(flag, f"{path} has no key {key!r} (it has {', '.join(loaded.files)})")
                values = loaded[key]
        else:
            values = np.load(where, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise InputError(flag, f"{path}: cannot read: {exc}") from None
    if values.ndim != 1:
        raise InputError(flag, f"{spec}: expected one string per row, got an array of shape {values.shape}")
    return [str(v) for v in values.tolist()]


def sample_options(read: dict[str, Any]) -> dict[str, Any]:
    """The bundled sample's map (final step, captions, categories as ids) and, for a lone trajectory whose first and
    last steps are snapshots of the sample, those snapshots for the noise verdicts."""
    from embspace.data import load_sample, sample_embeddings, sample_steps

    arrays = load_sample()
    options: dict[str, Any] = {"map_data": sample_embeddings(), "captions": arrays["captions"].tolist(),
                               "ids": arrays["categories"].tolist()}
    values = list(read.values())
    if len(values) == 1 and type(values[0]).__name__ == "Trajectory" and len(values[0]) >= 2:
        first, last = values[0].steps[0], values[0].steps[-1]
        if first in sample_steps() and last in sample_steps():
            options["data_before"], options["data_after"] = sample_embeddings(first), sample_embeddings(last)
    return options
