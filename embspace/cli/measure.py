"""``embspace measure``: one or two modalities from dumps (or the bundled sample) into a table and a JSON report."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from embspace.cli.common import app, check_writable, err, fail, out
from embspace.errors import InputError


@app.command()
def measure(
    specs: Annotated[list[str] | None, typer.Argument(
        help="NAME=PATH[:KEY] per modality (image=coco.npz:img text=coco.npz:txt), or pairs=STACK for a (2,N,D) "
             "array or a clip-retrieval folder.", show_default=False)] = None,
    sample: Annotated[bool, typer.Option("--sample", help="Measure the bundled real sample.")] = False,
    step: Annotated[int | None, typer.Option(help="With --sample: a training step of the sample.")] = None,
    names: Annotated[str, typer.Option(help="Names of the two halves of a pairs= stack.")] = "image,text",
    metrics: Annotated[str, typer.Option(help="Comma-separated metric families, or all.")] = "all",
    device: Annotated[str, typer.Option(help="auto, cpu or cuda.")] = "auto",
    precision: Annotated[str, typer.Option(help="fp64, fp32, tf32, bf16 or fp16 tiles.")] = "fp32",
    t: Annotated[float, typer.Option(help="Uniformity temperature.")] = 2.0,
    alpha: Annotated[float, typer.Option(help="Alignment exponent.")] = 2.0,
    require_normalized: Annotated[bool, typer.Option(
        "--require-normalized", help="Refuse rows whose norm is not 1 instead of normalising them.")] = False,
    drop_invalid: Annotated[bool, typer.Option(
        "--drop-invalid", help="Drop rows with NaN/Inf or zero norm (with their partners) instead of refusing.")
    ] = False,
    json_path: Annotated[Path | None, typer.Option("--json", help="Write the JSON report here (- for stdout).")
                         ] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")] = False,
) -> None:
    """Measure one modality or two paired ones: gap, uniformity, alignment, cone, spectrum, retrieval, …"""
    import embspace

    check_writable(json_path)
    try:
        if sample:
            if specs:
                fail("--sample measures the bundled sample; give either --sample or specs, not both")
            modalities = embspace.load_sample(step)
        elif not specs:
            fail("nothing to measure: give NAME=PATH[:KEY] specs (e.g. image=emb.npy text=txt.npy) or --sample")
        else:
            modalities = embspace.load(*specs, names=tuple(n.strip() for n in names.split(",")))
        report = embspace.measure(modalities, metrics=metrics, device=device, precision=precision, t=t,
                                  alpha=alpha, normalize=not require_normalized, drop_invalid=drop_invalid,
                                  progress=not quiet and sys.stderr.isatty())
    except InputError as exc:
        fail(str(exc))
    if json_path is not None and str(json_path) == "-":
        sys.stdout.write(report.to_json())
        return
    print_report(report)
    if json_path is not None:
        try:
            report.to_json(json_path)
        except OSError as exc:
            fail(f"{json_path}: cannot write: {exc.strerror or exc}")
        err.print(f"report written to {json_path}", highlight=False)


def print_report(report) -> None:
    """The report as a terminal table: one line per number, grouped by metric."""
    for name, info in report.inputs.items():
        dropped = f", {info['dropped']} rows dropped" if info.get("dropped") else ""
        out.print(f"[bold]{name}[/]: {info['source']}  ({info['n']:,} × {info['dim']}, {info['dtype']}{dropped})",
                  highlight=False)
    table = Table(show_edge=False, header_style="bold", pad_edge=False)
    table.add_column("metric")
    table.add_column("")
    table.add_column("value", justify="right")
    previous = None
    for metric, key, value, method in report.rows():
        shown = "" if metric == previous else metric
        note = "" if method == "exact" else f" ({method})"
        table.add_row(shown, key, f"{value:.4f}{note}" if isinstance(value, float) else str(value))
        previous = metric
    out.print(table)
    total = sum(report.timings.values())
    settings = report.settings
    out.print(f"[dim]t={settings['t']:g}  α={settings['alpha']:g}  device={settings['device']}  "
              f"precision={settings['precision']}  {total:.2f} s[/]", highlight=False)
