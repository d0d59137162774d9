"""``embspace finetune``: train towers on cached features with a gap-closing loss; report before vs after.

    embspace finetune train.npy eval.npy --loss m2mix --out runs/m2mix
    embspace finetune image=tr.npz:img text=tr.npz:txt image=ev.npz:img text=ev.npz:txt --loss cua --out runs/cua
    embspace finetune pairs=features_clip.npy --eval-fraction 0.2 --adapter --out runs/clip-adapter
    embspace finetune --sample --out runs/sample
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from embspace import defaults
from embspace.cli.common import app, check_out_folder, err, fail, flag_message, out
from embspace.cli.help import Command
from embspace.errors import InputError
from embspace.finetune.config import DEFAULT_DIM, EVAL_FRACTION, HEADS, LOSSES, FitConfig


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


@app.command(cls=Command)
def finetune(
    specs: Annotated[list[str] | None, typer.Argument(
        help="TRAIN then EVAL dumps: a (2,N,D) stack each (train.npy eval.npy, or pairs=STACK), or NAME=PATH[:KEY] "
             "twice each (image=… text=…). One dump alone is split by --eval-fraction.",
        metavar="SPEC", show_default=False)] = None,
    out_dir: Annotated[Path | None, typer.Option("--out", help="Folder for reports, embeddings and the checkpoint.",
                                                 show_default=False)] = None,
    sample: Annotated[bool, typer.Option("--sample", help="Train on the bundled sample's train split (raw "
                                                          "features), evaluate on its test split.")] = False,
    loss: Annotated[str, typer.Option(help=f"{', '.join(LOSSES)}.")] = FitConfig.loss,
    loss_option: Annotated[list[str] | None, typer.Option(
        "--loss-option", help="KEY=VALUE hyperparameter of the loss (repeatable), e.g. weight=0.05.",
        show_default=False)] = None,
    head: Annotated[str, typer.Option(help=f"{' or '.join(HEADS)} towers.")] = FitConfig.head,
    adapter: Annotated[bool, typer.Option("--adapter", help="Residual adapters (identity at start) instead of "
                                                            "projection heads; needs equal input dims.")
                       ] = FitConfig.adapter,
    dim: Annotated[int | None, typer.Option(help=f"Output dim of projection heads [default: {DEFAULT_DIM}].",
                                            show_default=False)] = FitConfig.dim,
    epochs: Annotated[int, typer.Option(help="Passes over the training pairs.")] = FitConfig.epochs,
    batch_size: Annotated[int, typer.Option(help="Pairs per step.")] = FitConfig.batch_size,
    lr: Annotated[float, typer.Option(help="AdamW learning rate.")] = FitConfig.lr,
    weight_decay: Annotated[float, typer.Option(help="AdamW weight decay of the towers.")] = FitConfig.weight_decay,
    seed: Annotated[int, typer.Option(help="Seed of init, shuffling, λ draws, split and bootstrap.")
                    ] = FitConfig.seed,
    eval_fraction: Annotated[float, typer.Option(help="With a single dump: the share of pairs held out.")
                             ] = EVAL_FRACTION,
    names: Annotated[str, typer.Option(help="Names of the two halves of a pairs= stack.")
                     ] = ",".join(defaults.PAIR_NAMES),
    metrics: Annotated[str, typer.Option(help="Metric families of the per-epoch reports.")] = FitConfig.eval_metrics,
    resamples: Annotated[int, typer.Option(help="Bootstrap resamples of the before/after check.")
                         ] = defaults.RESAMPLES,
    device: Annotated[str, typer.Option(help="cpu, cuda or auto.")] = FitConfig.device,
    resume: Annotated[bool, typer.Option("--resume", help="Continue the interrupted run in --out.")] = False,
    baseline: Annotated[str, typer.Option(help="What a loss other than clip is compared with as well: train (the "
                                               "clip run of the same seed, into OUT/baseline_clip), none, or the "
                                               "folder of a finished clip run.")] = "train",
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")] = False,
    labels: Annotated[str | None, typer.Option(
        "--labels", help="PATH[:KEY]: one integer class per EVAL pair; with --prompts every epoch reports zero-shot "
                         "accuracy and ECE.", show_default=False)] = None,
    prompts: Annotated[str | None, typer.Option(
        "--prompts", help="PATH[:KEY]: the raw text features of one prompt per class (the text tower's input).",
        show_default=False)] = None,
) -> None:
    """Fine-tune projection heads or adapters on cached features and state what changed beyond the noise."""
    from embspace import load as embspace_load
    from embspace.cli.vocabulary import measure_families
    from embspace.finetune import fit
    from embspace.finetune.checkpoint import RUN_FILES
    from embspace.finetune.data import sample_pairs, train_eval_pairs

    out_dir = check_out_folder(
        out_dir, "--out DIR is required: the folder for the reports, the adapted embeddings and the checkpoint",
        specs or [], RUN_FILES)
    try:
        config = FitConfig(loss=loss, loss_options=parse_options(loss_option), head=head, adapter=adapter, dim=dim,
                           epochs=epochs, batch_size=batch_size, lr=lr, weight_decay=weight_decay, seed=seed,
                           eval_metrics=measure_families(metrics), device=device)
        from embspace.finetune.objectives import make_loss

        make_loss(config.loss, config.loss_options)  # refuse unknown options before any data is read
        if sample:
            if specs:
                fail("--sample trains on the bundled sample; give either --sample or dump specs, not both")
            train_pairs, eval_pairs = sample_pairs()
        elif not specs:
            fail("nothing to train on: give TRAIN and EVAL dumps (train.npy eval.npy) or --sample")
        else:
            train_pairs, eval_pairs = train_eval_pairs(specs, [n.strip() for n in names.split(",")],
                                                       eval_fraction=eval_fraction, seed=seed)
        label_options = {}
        if labels or prompts:
            from embspace.labels import read_labels

            if not (labels and prompts):
                fail("zero-shot during fine-tuning needs both --labels (per EVAL pair) and --prompts")
            if specs and len(specs) == 1:
                fail("--labels are per EVAL pair: give a TRAIN and an EVAL dump rather than one dump to split")
            label_options = {"labels": read_labels(labels),
                             "prompts": embspace_load(f"prompts={prompts}")["prompts"].to_tensor().numpy()}
        result = fit(train_pairs, eval_pairs, config=config, out=out_dir, resume=resume,
                     progress=not quiet and sys.stderr.isatty(), resamples=resamples,
                     baseline=None if baseline == "none" else baseline, **label_options)
    except InputError as exc:
        fail(flag_message(exc))
    except ValueError as exc:
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
