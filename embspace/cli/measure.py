"""``embspace measure``: dumps (or the bundled sample) into a table and a JSON report; a run into a trajectory."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from embspace import defaults
from embspace.cli.common import app, check_out_folder, check_writable, err, fail, flag_message, out
from embspace.cli.help import Command
from embspace.errors import InputError

MANY_HELP = "\n\n".join([
    "Measure one modality or two paired ones: gap, uniformity, alignment, cone, spectrum, retrieval, histograms, …",
    "One dump: give its specs (image=coco.npz:img text=coco.npz:txt, or pairs=stack.npy) or --sample; the report "
    "is printed, and written with --json FILE.",
    "Several dumps (a training run): --each PATTERN measures every dump that a glob (quoted: --each 'ckpts/*.npy') "
    "or a folder matches. In the specs, {} stands for the matched path (--each 'ckpts/*.npz' image={}:img "
    "text={}:txt); without specs each match is read as pairs={}. --sample --all-steps measures the bundled "
    "sample's training snapshots.",
    "Each report is written to --out DIR as NAME.json, and DIR/trajectory.json lists them in step order. The step is "
    "the last integer in the dump's name (ckpt_epoch12.npy is 12; epoch2 comes before epoch10), or the last match of "
    "--step-pattern REGEX (its first group), or given in the order found by --steps 0,100,200.",
])


@app.command(help=MANY_HELP, cls=Command)
def measure(
    specs: Annotated[list[str] | None, typer.Argument(
        help="NAME=PATH[:KEY] per modality (image=coco.npz:img text=coco.npz:txt), or pairs=STACK for a (2,N,D) "
             "array or a clip-retrieval folder. With --each, {} in a spec is the matched path. A KEY may hold ':' "
             "(image=emb.parquet:clip:vit-b32 reads the column 'clip:vit-b32'); write \\: for a colon of the key "
             "where the file does not exist yet.",
        metavar="SPEC", show_default=False)] = None,
    sample: Annotated[bool, typer.Option("--sample", help="Measure the bundled real sample.")] = False,
    step: Annotated[int | None, typer.Option(help="With --sample: a training step of the sample.")] = None,
    all_steps: Annotated[bool, typer.Option("--all-steps", help="With --sample: every training snapshot, into --out."
                                            )] = False,
    each: Annotated[list[str] | None, typer.Option(
        "--each", help="Measure every dump this glob or folder matches (repeatable); reports go to --out.",
        show_default=False)] = None,
    out_dir: Annotated[Path | None, typer.Option(
        "--out", help="Folder for the reports of several dumps and their trajectory.json.", show_default=False)
    ] = None,
    step_pattern: Annotated[str | None, typer.Option(
        help="Regular expression whose last match in a dump's name is its step (default: the last integer).",
        show_default=False)] = None,
    steps: Annotated[str | None, typer.Option(
        help="The steps of the dumps, comma-separated, in the order they are found.", show_default=False)] = None,
    unit: Annotated[str, typer.Option(help="What a step counts (step, epoch, …); the x-axis of curves.")
                    ] = defaults.UNIT,
    names: Annotated[str, typer.Option(help="Names of the two halves of a pairs= stack.")
                     ] = ",".join(defaults.PAIR_NAMES),
    metrics: Annotated[str, typer.Option(
        help="Comma-separated metric families (gap, alignment, cone, rmg, uniformity, spectrum, retrieval, hubness, "
             "separability, histograms) or report keys (recall@1, uniformity.mean), or all.")] = defaults.METRICS,
    device: Annotated[str, typer.Option(help="auto, cpu or cuda.")] = defaults.DEVICE,
    precision: Annotated[str, typer.Option(
        help="Tile precision: auto (fp16 on CUDA, fp32 on the CPU), fp64, fp32, tf32, bf16 or fp16.")
    ] = defaults.PRECISION,
    backend: Annotated[str | None, typer.Option(
        help="Pairwise engine: auto (fused Triton kernels on CUDA where they run, torch otherwise), torch or "
             "triton. Default: $EMBSPACE_BACKEND, else auto.", show_default=False)] = None,
    estimate: Annotated[str, typer.Option(
        help="exact (every pair), sampled (uniformity and histograms from --pairs random pairs, recall from --queries "
             "random queries, with 95 % intervals), or auto: sampled above --sample-above rows.")
    ] = defaults.ESTIMATE,
    sample_above: Annotated[int, typer.Option(help="With --estimate auto: rows per modality above which to sample."
                                              )] = defaults.SAMPLE_ABOVE,
    pairs: Annotated[int, typer.Option(help="Sampled pairs per uniformity variant and histogram.")] = defaults.PAIRS,
    queries: Annotated[int, typer.Option(help="Sampled queries per recall direction.")] = defaults.QUERIES,
    memory: Annotated[str | None, typer.Option(
        help="Memory budget (512MB, 8GB, 2GiB or bytes): rows beyond it are streamed from disk in tiles that fit. "
             "Default: the free memory of the device.", show_default=False)] = None,
    t: Annotated[float, typer.Option(help="Uniformity temperature.")] = defaults.T,
    alpha: Annotated[float, typer.Option(help="Alignment exponent.")] = defaults.ALPHA,
    rmg_floor: Annotated[str, typer.Option(
        help="RMG floor: source (1e-3 replaces only a matched distance ≤ 0, as Schrodi et al.'s code) or clamp "
             "(max(d_m, 1e-3)).")] = defaults.RMG_FLOOR,
    alpha_req_fit: Annotated[str, typer.Option(
        help="α-ReQ fit: reptrix (the authors' 1/k-weighted fit, k = 11…100) or ols (unweighted, every "
             "eigenvalue).")] = defaults.ALPHA_REQ_FIT,
    alpha_req_range: Annotated[str | None, typer.Option(
        help="α-ReQ fit range FIRST,LAST (1-based ranks, inclusive), replacing the fit's default range.",
        show_default=False)] = None,
    require_normalized: Annotated[bool, typer.Option(
        "--require-normalized", help="Refuse rows whose norm is not 1 instead of normalising them.")] = False,
    drop_invalid: Annotated[bool, typer.Option(
        "--drop-invalid", help="Drop rows with NaN/Inf or zero norm (with their partners) instead of refusing.")
    ] = False,
    json_path: Annotated[Path | None, typer.Option("--json", help="Write the JSON report here (- for stdout).")
                         ] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")] = False,
    logit_scale: Annotated[float, typer.Option(
        help="With labels=… prompts=…: the softmax scale of the zero-shot logits (CLIP's learned one is 100).")
    ] = 100.0,
    pair_ids: Annotated[list[str] | None, typer.Option(
        "--pair-ids", help="Many-to-many pairs: PATH[:KEY] giving each row of one modality its row of the other "
                           "(coco.parquet:image_id), or NAME=PATH[:KEY] once per modality (shared item ids).")
    ] = None,
    directions: Annotated[Path | None, typer.Option(
        help="An .npz of (k, D) direction arrays, one per named subspace (core, spurious, …): adds the directions "
             "family (variance along each subspace, the gap's share in it).", show_default=False)] = None,
) -> None:
    import embspace
    from embspace.cli.vocabulary import measure_families, skipped_families
    from embspace.distributed import DistributedError, is_main, launched_ranks
    from embspace.kernels.budget import parse_size

    pair_names = tuple(n.strip() for n in names.split(","))
    try:
        budget = parse_size(memory) if memory is not None else None
        families = measure_families(metrics)
    except InputError as exc:
        fail(flag_message(exc))
    options = {"metrics": families, "device": device, "precision": precision, "backend": backend, "t": t,
               "alpha": alpha, "normalize": not require_normalized, "drop_invalid": drop_invalid,
               "estimate": estimate, "sample_above": sample_above, "pairs": pairs, "queries": queries,
               "memory": budget, "rmg_floor": rmg_floor, "alpha_req_fit": alpha_req_fit,
               "alpha_req_range": fit_range(alpha_req_range),
               "directions": directions}
    if pair_ids:
        if each or all_steps or sample:
            fail("--pair-ids pairs the rows of one dump given as NAME=PATH specs")
        options["pair_ids"] = pair_ids_option(pair_ids, specs or [])
    progress = not quiet and sys.stderr.isatty()
    from embspace.cli.labels import is_label_spec, split_label_specs

    if each or all_steps:
        if any(is_label_spec(s) for s in specs or []):
            fail("labels= and prompts= measure one dump; give them without --each / --all-steps")
        if json_path is not None:
            fail("--json writes one report; with several dumps the reports go to --out DIR")
        if launched_ranks() > 1:
            fail("--each and --all-steps run in one process; under torchrun measure one dump at a time")
        measure_many(specs or [], each or [], sample=sample, all_steps=all_steps, step=step, out_dir=out_dir,
                     step_pattern=step_pattern, steps=steps, unit=unit, names=pair_names, options=options,
                     progress=progress)
        return
    for flag, value in (("--out", out_dir), ("--step-pattern", step_pattern), ("--steps", steps)):
        if value is not None:
            fail(f"{flag} is for several dumps (--each PATTERN or --sample --all-steps); one report goes to --json")
    check_writable(json_path, [*(specs or []), *[v.partition("=")[2] or v for v in pair_ids or []]])
    try:
        if sample:
            if specs:
                fail("--sample measures the bundled sample; give either --sample or specs, not both")
            modalities = load_sample(step)
        elif not specs:
            fail("nothing to measure: give NAME=PATH[:KEY] specs (e.g. image=emb.npy text=txt.npy) or --sample")
        else:
            modality_specs, labels, prompts = split_label_specs(specs)
            options.update(labels=labels, prompts=prompts, logit_scale=logit_scale)
            modalities = embspace.load(*modality_specs, names=pair_names)
        skipped = skipped_families(families, _single_families(families), modalities)
        if skipped and len(skipped) == len(families.split(",")):
            fail(f"nothing to measure: {_need(skipped)} two paired modalities, and only {', '.join(modalities)} was "
                 "given (one modality gets cone, uniformity, spectrum and histograms)")
        report = embspace.measure(modalities, progress=progress, **options)
    except InputError as exc:
        if not is_main():
            raise typer.Exit(2) from None  # under torchrun every rank has the error; rank 0 tells it
        fail(flag_message(exc))
    except DistributedError as exc:
        err.print(f"[bold red]error:[/] {escape(str(exc))}", highlight=False, soft_wrap=True)
        raise typer.Exit(1) from None
    if not is_main():
        return  # rank 0 prints and writes the one report
    if skipped:
        it = "it needs" if len(skipped) == 1 else "they need"
        err.print(f"[yellow]note:[/] {', '.join(skipped)} skipped: {it} two paired modalities, and only "
                  f"{escape(', '.join(modalities))} was given", highlight=False, soft_wrap=True)
    if json_path is not None and str(json_path) == "-":
        sys.stdout.write(report.to_json())
        return
    if json_path is not None:  # saved before the table is printed: a terminal that fails cannot lose it
        try:
            report.to_json(json_path)
        except OSError as exc:
            fail(f"{json_path}: cannot write: {exc.strerror or exc}")
    print_report(report)
    if json_path is not None:
        err.print(f"report written to {json_path}", highlight=False)


def pair_ids_option(values: list[str], specs: list[str]) -> str | dict[str, str]:
    """``--pair-ids`` as :func:`embspace.measure` takes it: one PATH[:KEY] (a row mapping), or NAME=PATH[:KEY] for
    each modality (shared item ids)."""
    names = [spec.partition("=")[0].strip() for spec in specs]
    named = {}
    for value in values:
        head, sep, rest = value.partition("=")
        if sep and head.strip() in names:
            named[head.strip()] = rest
        elif len(values) == 1:
            return value
        else:
            fail(f"--pair-ids {value}: with several --pair-ids, each is NAME=PATH[:KEY] for one of "
                 f"{', '.join(names)}")
    return named


def fit_range(text: str | None) -> tuple[int, int] | None:
    """``--alpha-req-range 11,100`` → (11, 100); the API checks the numbers."""
    if text is None:
        return None
    parts = [part.strip() for part in text.split(",")]
    if len(parts) != 2 or not all(part.lstrip("-").isdigit() for part in parts):
        fail(f"--alpha-req-range: give two integers FIRST,LAST (e.g. 11,100), got {text!r}")
    return int(parts[0]), int(parts[1])


def _need(families: list[str]) -> str:
    """``gap needs`` / ``gap, retrieval need``."""
    return f"{', '.join(families)} {'needs' if len(families) == 1 else 'need'}"


def _single_families(families: str) -> list[str]:
    """The families of ``families`` (comma-separated, or all) that one modality gets."""
    from embspace.families import SINGLE_FAMILIES

    return [f for f in SINGLE_FAMILIES if families == "all" or f in families.split(",")]


def measure_many(specs: list[str], each: list[str], *, sample: bool, all_steps: bool, step: int | None,
                 out_dir: Path | None, step_pattern: str | None, steps: str | None, unit: str,
                 names: tuple[str, ...], options: dict, progress: bool) -> None:
    """Several dumps into one report each under ``out_dir`` plus ``trajectory.json``; a summary table."""
    import embspace
    from embspace.checkpoints import checkpoint_dumps, parse_steps
    from embspace.trajectory import sample_snapshots

    out_dir = check_out_folder(out_dir, "several dumps need --out DIR for their reports and trajectory.json", specs)
    try:
        if all_steps:
            if not sample:
                fail("--all-steps measures the training snapshots of the bundled sample: add --sample")
            if each or specs or step is not None or steps is not None or step_pattern is not None:
                fail("--sample --all-steps takes the steps from the sample; give no specs, --each, --step, --steps "
                     "or --step-pattern with it")
            dumps, labels, given = sample_snapshots(), None, None
        else:
            if sample:
                fail("--each measures dumps on disk; --sample cannot be combined with it")
            run = checkpoint_dumps(each, specs)
            dumps, labels, given = run.dumps, run.labels, parse_steps(steps)
        trajectory = embspace.measure_trajectory(dumps, steps=given, labels=labels, step_pattern=step_pattern,
                                                 names=names, out=out_dir, unit=unit, progress=progress, **options)
    except InputError as exc:
        fail(flag_message(exc))
    except (ImportError, OSError) as exc:
        what = "the bundled sample cannot be read" if all_steps else "cannot read the dumps"
        fail(f"{what}: {exc}")
    print_trajectory(trajectory)
    err.print(f"{len(trajectory)} reports and {out_dir / 'trajectory.json'} written", highlight=False, soft_wrap=True)


def load_sample(step: int | None) -> dict:
    """The bundled sample, or one line saying why it cannot be read."""
    import embspace

    try:
        return embspace.load_sample(step)
    except (ImportError, OSError) as exc:
        fail(f"the bundled sample cannot be read: {exc}")


def print_trajectory(trajectory) -> None:
    """One line per step: the key numbers."""
    columns, rows = trajectory.summary(("gap", "alignment", "uniformity.mean", "recall@1"))
    table = Table(show_edge=False, header_style="bold", pad_edge=False)
    for i, column in enumerate(columns):
        width = max(len(str(row[1])) for row in rows) if i == 1 else None
        header = column.replace(".", "\n", 1).replace("->", "→")
        table.add_column(header, justify="left" if i == 1 else "right", min_width=width)
    for row in rows:
        table.add_row(str(row[0]), row[1], *("—" if v is None else f"{v:.4f}" for v in row[2:]))
    out.print(table)


def print_report(report) -> None:
    """The report as a terminal table: one line per number, grouped by metric."""
    for name, info in report.inputs.items():
        dropped = f", {info['dropped']} rows dropped" if info.get("dropped") else ""
        out.print(f"[bold]{escape(name)}[/]: {escape(str(info['source']))}  ({info['n']:,} × {info['dim']}, "
                  f"{info['dtype']}{dropped})", highlight=False)
    table = Table(show_edge=False, header_style="bold", pad_edge=False)
    table.add_column("metric")
    table.add_column("")
    table.add_column("value", justify="right")
    sampled = any(u.get("method") == "sampled" for u in report.uncertainty.values())
    if sampled:
        table.add_column("95 % interval (sampled)", justify="left")
    previous = None
    flags = report.flags()  # numbers that are not what they seem (a separability below chance)
    for metric, key, value, method in report.rows():
        shown = "" if metric == previous else metric
        note = "" if method in ("exact", "sampled") else f" ({method})"
        note += f"  [bold red]{escape(flags[f'{metric}.{key}' if key else metric])}[/]" if (
            f"{metric}.{key}" if key else metric) in flags else ""
        cells = [shown, key, f"{value:.4f}{note}" if isinstance(value, float) else str(value)]
        if sampled:
            cells.append(interval(report.uncertainty.get(f"{metric}.{key}" if key else metric, {})))
        table.add_row(*cells)
        previous = metric
    out.print(table)
    total = sum(report.timings.values())
    settings = report.settings
    estimate = settings.get("estimate", {})
    how = (f"sampled ({estimate['pairs']:,} pairs, {estimate['queries']:,} queries)"
           if estimate.get("method") == "sampled" else "exact")
    out.print(f"[dim]t={settings['t']:g}  α={settings['alpha']:g}  device={settings['device']}  "
              f"precision={settings['precision']}  backend={settings.get('backend', '?')}  estimate={how}  "
              f"{total:.2f} s[/]", highlight=False)


def interval(uncertainty: dict) -> str:
    """``[−1.8012, −1.7988]  n=1,000,000`` for a sampled number, ``exact`` otherwise (as :meth:`Report.table`)."""
    from embspace.report import interval_text

    return interval_text(uncertainty)
