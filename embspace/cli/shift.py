"""``embspace shift``: training-free baselines on a dump — the gap shift of Liang et al. (2022) or per-modality
mean-centring — written as a (2, N, D) ``.npy`` stack, optionally with its measure report.

    embspace shift pairs=features.npy --lam 0.5 --out shifted.npy --json shifted.json
    embspace shift image=emb.npz:img text=emb.npz:txt --center --out centred.npy
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from embspace import defaults
from embspace.cli.common import app, check_writable, err, fail, flag_message, out
from embspace.cli.help import Command
from embspace.errors import InputError


@app.command(cls=Command)
def shift(
    specs: Annotated[list[str] | None, typer.Argument(
        help="The paired dump: pairs=STACK, or NAME=PATH[:KEY] for each of the two modalities.",
        metavar="SPEC", show_default=False)] = None,
    out_path: Annotated[Path | None, typer.Option("--out", help="Where the shifted (2, N, D) float32 .npy goes.",
                                                  show_default=False)] = None,
    lam: Annotated[float, typer.Option(help="Step λ along the gap vector Δ (0.5 meets in the middle).")
                   ] = defaults.SHIFT_LAM,
    center: Annotated[bool, typer.Option("--center", help="Centre each modality on its own mean instead.")] = False,
    sample: Annotated[bool, typer.Option("--sample", help="Shift the bundled sample's joint-space pairs.")] = False,
    names: Annotated[str, typer.Option(help="Names of the two halves of a pairs= stack.")
                     ] = ",".join(defaults.PAIR_NAMES),
    drop_invalid: Annotated[bool, typer.Option(
        "--drop-invalid", help="Drop rows with NaN/Inf or zero norm (with their partners) instead of refusing.")
    ] = False,
    json_path: Annotated[Path | None, typer.Option("--json", help="Measure the shifted dump; write the report here "
                                                                  "(- for stdout).")] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")] = False,
) -> None:
    """Move the two modalities toward each other without training: gap shift (Liang et al.) or centring."""
    import embspace
    from embspace.finetune.dumps import shift_dump
    from embspace.io import validate

    if out_path is None:
        fail("--out PATH.npy is required: where the shifted pairs go")
    if out_path.suffix.lower() != ".npy":
        fail(f"{out_path}: the shifted pairs are written as a (2, N, D) stack; give a .npy path")
    check_writable(out_path, specs or [], regular=True)
    check_writable(json_path, [*(specs or []), out_path])
    try:
        if sample:
            if specs:
                fail("--sample shifts the bundled sample; give either --sample or specs, not both")
            modalities = embspace.load_sample()
        elif not specs:
            fail("nothing to shift: give the paired dump (pairs=STACK, or image=… text=…) or --sample")
        else:
            modalities = embspace.load(*specs, names=tuple(n.strip() for n in names.split(",")))
        if len(modalities) != 2:
            fail(f"the shift needs two paired modalities, got {len(modalities)}: {', '.join(modalities)}")
        modalities = validate(modalities, paired=True, same_dim=True, drop_invalid=drop_invalid)
        (a, x), (b, y) = modalities.items()
        info = shift_dump(x, y, out_path, lam=lam, center=center)
    except InputError as exc:
        fail(flag_message(exc))
    what = "centred each modality" if center else f"shifted by λ = {lam:g} along Δ"
    err.print(f"{what} (‖Δ‖ = {info['gap_vector_norm']:.4f}); {info['n']:,} pairs × {info['dim']} written to "
              f"{out_path}", highlight=False)
    if json_path is None:
        return
    shifted = embspace.load(f"pairs={out_path}", names=(a, b))
    report = embspace.measure(shifted, progress=not quiet and sys.stderr.isatty())
    report.settings["shift"] = {"method": info["method"], "lam": info["lam"], "gap_vector_norm":
                                info["gap_vector_norm"], "source": {a: x.source, b: y.source}}
    if str(json_path) == "-":
        sys.stdout.write(report.to_json())
        return
    from embspace.cli.measure import print_report

    print_report(report)
    report.to_json(json_path)
    out.print(f"report written to {json_path}", highlight=False)
