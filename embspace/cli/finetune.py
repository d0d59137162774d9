"""``embspace finetune``: train towers on cached features with a gap-closing loss; report before vs after.

    embspace finetune pairs=train.npy pairs=eval.npy --loss m2mix --out runs/m2mix
    embspace finetune image=tr.npz:img text=tr.npz:txt image=ev.npz:img text=ev.npz:txt --loss cua --out runs/cua
    embspace finetune pairs=features_clip.npy --eval-fraction 0.2 --adapter --out runs/clip-adapter
    embspace finetune --sample --out runs/sample
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from embspace.cli.common import app, check_out_folder, err, fail, out
from embspace.errors import InputError


def parse_options(items: list[str] | None) -> dict[str, float | bool]:
    """``["weight=0.05", "decay=true"]`` → ``{"weight": 0.05, "decay": True}``."""
    options: dict[str, float | bool] = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise InputError("--loss-option", f"expected KEY=VALUE, got {item!r}")
        text = value.strip().lower()
        if text in ("true", "false"):
            options[key.strip()] = text == "true"
            continue
        try:
            options[key.strip()] = float(value)
        except ValueError:
            raise InputError("--loss-option", f"{key}: {value!r} is not a number (or true/false)") from None
    return options


@app.command()
def finetune(
    specs: Annotated[list[str] | None, typer.Argument(
        help="TRAIN then EVAL dumps: pairs=STACK each, or NAME=PATH[:KEY] twice each (image=… text=…). One dump "
             "alone is split by --eval-fraction.", show_default=False)] = None,
    out_dir: Annotated[Path | None, typer.Option("--out", help="Folder for reports, embeddings and the checkpoint.",
                                                 show_default=False)] = None,
    sample: Annotated[bool, typer.Option("--sample", help="Train on the bundled sample's train split (raw "
                                                          "features), evaluate on its test split.")] = False,
    loss: Annotated[str, typer.Option(help="clip, m2mix, m3mix, cua, cuaxu or latent.")] = "m2mix",
    loss_option: Annotated[list[str] | None, typer.Option(
        "--loss-option", help="KEY=VALUE hyperparameter of the loss (repeatable), e.g. weight=0.05.",
        show_default=False)] = None,
    head: Annotated[str, typer.Option(help="linear or mlp towers.")] = "linear",
    adapter: Annotated[bool, typer.Option("--adapter", help="Residual adapters (identity at start) instead of "
                                                            "projection heads; needs equal input dims.")] = False,
    dim: Annotated[int | None, typer.Option(help="Output dim of projection heads [default: 256].",
                                            show_default=False)] = None,
    epochs: Annotated[int, typer.Option(help="Passes over the training pairs.")] = 30,
    batch_size: Annotated[int, typer.Option(help="Pairs per step.")] = 256,
    lr: Annotated[float, typer.Option(help="AdamW learning rate.")] = 1e-3,
    weight_decay: Annotated[float, typer.Option(help="AdamW weight decay of the towers.")] = 0.1,
    seed: Annotated[int, typer.Option(help="Seed of init, shuffling, λ draws, split and bootstrap.")] = 0,
    eval_fraction: Annotated[float, typer.Option(help="With a single dump: the share of pairs held out.")] = 0.2,
    names: Annotated[str, typer.Option(help="Names of the two halves of a pairs= stack.")] = "image,text",
    metrics: Annotated[str, typer.Option(help="Metric families of the per-epoch reports.")] = "all",
    resamples: Annotated[int, typer.Option(help="Bootstrap resamples of the before/after check.")] = 1000,
    device: Annotated[str, typer.Option(help="cpu, cuda or auto.")] = "cpu",
    resume: Annotated[bool, typer.Option("--resume", help="Continue the interrupted run in --out.")] = False,
    baseline: Annotated[str, typer.Option(help="What a loss other than clip is compared with as well: train (the "
                                               "clip run of the same seed, into OUT/baseline_clip), none, or the "
                                               "folder of a finished clip run.")] = "train",
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")] = False,
) -> None:
    """Fine-tune projection heads or adapters on cached features and state what changed beyond the noise."""
    from embspace.finetune import FitConfig, fit
    from embspace.finetune.checkpoint import RUN_FILES
    from embspace.finetune.data import pairs_from_specs, sample_pairs, split_pairs

    out_dir = check_out_folder(
        out_dir, "--out DIR is required: the folder for the reports, the adapted embeddings and the checkpoint",
        specs or [], RUN_FILES)
    try:
        config = FitConfig(loss=loss, loss_options=parse_options(loss_option), head=head, adapter=adapter, dim=dim,
                           epochs=epochs, batch_size=batch_size, lr=lr, weight_decay=weight_decay, seed=seed,
                           eval_metrics=metrics, device=device)
        from embspace.finetune.objectives import make_loss

        make_loss(config.loss, config.loss_options)  # refuse unknown options before any data is read
        if sample:
            if specs:
                fail("--sample trains on the bundled sample; give either --sample or dump specs, not both")
            train_pairs, eval_pairs = sample_pairs()
        elif not specs:
            fail("nothing to train on: give TRAIN and EVAL dumps (pairs=train.npy pairs=eval.npy) or --sample")
        else:
            dumps = pairs_from_specs(specs, [n.strip() for n in names.split(",")])
            if len(dumps) == 1:
                train_pairs, eval_pairs = split_pairs(dumps[0], eval_fraction, seed)
            elif len(dumps) == 2:
                train_pairs, eval_pairs = dumps
            else:
                fail(f"expected a TRAIN and an EVAL dump, got {len(dumps)} dumps")
        result = fit(train_pairs, eval_pairs, config=config, out=out_dir, resume=resume,
                     progress=not quiet and sys.stderr.isatty(), resamples=resamples,
                     baseline=None if baseline == "none" else baseline)
    except (InputError, ValueError) as exc:
        fail(str(exc))
    print_result(result)


def print_result(result) -> None:
    """What was trained, the before/after table with the noise check, and where the files are."""
    from embspace.cli.compare import print_comparison

    config = result.config
    out.print(f"[bold]{config.loss}[/] · {'adapters' if config.adapter else 'projection heads'} ({config.head}) · "
              f"{config.epochs} epochs · seed {config.seed} · train loss {result.history[-1]['loss']:.4f}",
              highlight=False)
    print_comparison(result.comparison)
    if result.baseline_comparison is not None:
        out.print(f"\n[bold]clip baseline → {config.loss}[/] (the same seed and settings; "
                  f"{result.baseline_out or 'in memory'})", highlight=False)
        print_comparison(result.baseline_comparison)
    extra = ", comparison_baseline.json" if result.baseline_comparison is not None else ""
    err.print(f"written to {result.out}: epoch_0…{config.epochs}.json, comparison.json{extra}, eval_adapted.npy, "
              "eval_before.npy, checkpoint.pt", highlight=False)
