"""``embspace compare``: each metric's change between two reports, and — given the embeddings — whether it exceeds
the noise (paired bootstrap over pairs).

    embspace compare before.json after.json
    embspace compare before.json after.json --data-before pairs=before.npy --data-after pairs=after.npy --json c.json
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from embspace import defaults
from embspace.cli.common import app, check_writable, err, fail, flag_message, out
from embspace.cli.help import Command
from embspace.errors import InputError, printable


@app.command(cls=Command)
def compare(
    before: Annotated[Path, typer.Argument(help="Report JSON before.", metavar="BEFORE")],
    after: Annotated[Path, typer.Argument(help="Report JSON after.", metavar="AFTER")],
    json_path: Annotated[Path | None, typer.Option("--json", help="Write the comparison as JSON here.")] = None,
    data_before: Annotated[list[str] | None, typer.Option(
        "--data-before", help="The embeddings behind BEFORE: pairs=STACK, or NAME=PATH[:KEY] twice (repeat the "
                              "option). Enables the bootstrap.", show_default=False)] = None,
    data_after: Annotated[list[str] | None, typer.Option(
        "--data-after", help="The embeddings behind AFTER, the same pairs in the same order.",
        show_default=False)] = None,
    names: Annotated[str, typer.Option(help="Names of the two halves of a pairs= stack.")
                     ] = ",".join(defaults.PAIR_NAMES),
    resamples: Annotated[int, typer.Option(help="Bootstrap resamples.")] = defaults.RESAMPLES,
    seed: Annotated[int, typer.Option(help="Bootstrap seed.")] = defaults.SEED,
    confidence: Annotated[float, typer.Option(help="Level of the interval of each change.")] = defaults.CONFIDENCE,
    subsample: Annotated[int, typer.Option(help="Pairs used by the bootstrap of uniformity and recall.")
                         ] = defaults.SUBSAMPLE,
    labels: Annotated[str | None, typer.Option(
        "--labels", help="PATH[:KEY]: one integer class per pair; with --prompts-before/--prompts-after the bootstrap "
                         "tests zero-shot accuracy and ECE too.", show_default=False)] = None,
    prompts_before: Annotated[str | None, typer.Option(
        "--prompts-before", help="PATH[:KEY]: one prompt embedding per class, before.", show_default=False)] = None,
    prompts_after: Annotated[str | None, typer.Option(
        "--prompts-after", help="PATH[:KEY]: one prompt embedding per class, after.", show_default=False)] = None,
    pair_ids: Annotated[list[str] | None, typer.Option(
        "--pair-ids", help="Many-to-many pairs of the data (as measure takes them): the bootstrap resamples items.")
    ] = None,
    spaces: Annotated[bool, typer.Option(
        "--spaces/--no-spaces", help="With the embeddings: CKA, mutual-kNN and Procrustes between the two dumps per "
                                     "modality, and the rows whose neighbourhoods moved most.")] = True,
    space_resamples: Annotated[int, typer.Option(help="Half-samples behind the CKA / Procrustes intervals.")
                               ] = 100,
) -> None:
    """Show each metric's change between two reports; with --data-before/--data-after, which changes exceed noise."""
    import json

    import embspace
    from embspace.io.atomic import atomic_write_text

    label_specs = [f"labels={labels}"] if labels else []
    label_specs += [f"prompts={p}" for p in (prompts_before, prompts_after) if p]
    check_writable(json_path, [before, after, *(data_before or []), *(data_after or []), *label_specs,
                               *[v.partition("=")[2] or v for v in pair_ids or []]])
    try:
        data = {}
        if data_before or data_after:
            if not (data_before and data_after):
                fail("the significance test needs both --data-before and --data-after")
            split = tuple(n.strip() for n in names.split(","))
            data = {"data_before": embspace.load(*data_before, names=split),
                    "data_after": embspace.load(*data_after, names=split)}
            if pair_ids:
                from embspace.cli.measure import pair_ids_option

                data["pair_ids"] = pair_ids_option(pair_ids, list(data_before))
        if labels or prompts_before or prompts_after:
            from embspace.labels import read_labels

            if not data:
                fail("--labels and --prompts-before/--prompts-after test changes: give --data-before and --data-after")
            data["labels"] = read_labels(labels) if labels else None
            data.update({key: embspace.load(f"prompts={spec}")["prompts"] if spec else None
                         for key, spec in (("prompts_before", prompts_before), ("prompts_after", prompts_after))})
        comparison = embspace.compare(str(before), str(after), resamples=resamples, seed=seed,
                                      confidence=confidence, subsample=subsample, spaces=spaces,
                                      space_resamples=space_resamples, **data)
    except InputError as exc:
        fail(flag_message(exc))
    print_comparison(comparison)
    if json_path is not None:
        atomic_write_text(json_path, json.dumps(comparison.to_dict(), indent=2) + "\n")


def print_comparison(comparison) -> None:
    """Warnings on stderr, retrieval losses in bold red, then one row per metric (with the noise check if run)."""
    for warning in comparison.warnings:
        if warning.startswith("RETRIEVAL LOSS"):
            continue
        if warning.startswith(("ZERO-SHOT LOSS", "CALIBRATION LOSS")):  # flagged as a retrieval loss is
            err.print(f"[bold red]{escape(printable(warning))}[/]", highlight=False, soft_wrap=True)
            continue
        err.print(f"[yellow]warning:[/] {escape(printable(warning))}", highlight=False, soft_wrap=True)
    significance = comparison.significance
    tested = significance.metrics if significance is not None else {}
    table = Table(show_edge=False, header_style="bold", pad_edge=False)
    columns = [("metric", "left"), ("before", "right"), ("after", "right"), ("change", "right")]
    if tested:
        columns += [(f"{significance.confidence:.0%} CI", "right"), ("beyond noise", "left")]
    longest = max((len(change.path) for change in comparison.changes), default=6)
    for column, justify in columns:  # metric names are never cut; on a narrow terminal an interval wraps in two
        wraps = tested and column in (columns[4][0], columns[5][0])
        table.add_column(column, justify=justify, no_wrap=not wraps,
                         min_width=longest if column == "metric" else 10 if wraps else None)
    for change in comparison.changes:
        cells = ["—" if v is None else f"{v:.4f}" for v in (change.before, change.after)]
        delta = "—" if change.delta is None else f"{change.delta:+.4f}"
        row = [change.path, *cells, delta]
        if tested:
            entry = tested.get(change.path)
            if entry is None:
                row += ["", ""]
            elif change.path in comparison.retrieval_losses:
                row += [escape(entry.ci_text()), "[bold red]LOSS[/]"]
            else:
                row += [escape(entry.ci_text()), entry.verdict()]
        table.add_row(*row)
    out.print(table)
    if significance is not None:
        for note in significance.notes:
            out.print(f"[dim]{note}[/]", highlight=False)
        for path in comparison.retrieval_losses:
            entry = tested[path]
            out.print(f"[bold red]RETRIEVAL LOSS beyond noise:[/] {path} {entry.change:+.4f} "
                      f"({significance.confidence:.0%} CI {escape(entry.ci_text())})", highlight=False)
    if comparison.spaces is not None:
        for line in comparison.spaces.table().splitlines():  # captions may hold control characters
            out.print(escape(printable(line)), highlight=False, soft_wrap=True)
