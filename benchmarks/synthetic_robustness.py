"""Xue et al.'s experiment on generated data: SL against CLIP's loss and its relatives, over seeds.

For each seed: one draw of the data model (:mod:`embspace.data.synthetic`, default parameters unless changed
below) — train, in-distribution test and shifted test splits — and every method of
:data:`embspace.finetune.synthetic.METHODS` trained on the same training split, then measured by
:func:`embspace.finetune.synthetic.evaluate`. Writes ``benchmarks/results/synthetic_robustness.{json,md}`` (mean ±
sd over seeds, the machine and its load) and ``docs/figures/synthetic_robustness.png``.

    PYTHONPATH=. OMP_NUM_THREADS=1 python benchmarks/synthetic_robustness.py --seeds 3
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

from hostinfo import cpu_model, write_results  # noqa: E402

from embspace.data.synthetic import XueModel, generate  # noqa: E402
from embspace.finetune.config import FitConfig  # noqa: E402
from embspace.finetune.synthetic import METHODS, evaluate, fit  # noqa: E402

COLUMNS = ("accuracy_id", "accuracy_shift", "core_within_share", "spurious_within_share", "core_share",
           "spurious_share", "gap_core_share", "gap_spurious_share", "gap_detail_share", "spurious_core_coupling")


def run(seeds: int, n_train: int, n_test: int, config: FitConfig, model: XueModel,
        methods: tuple[str, ...]) -> dict[str, dict[str, list[float]]]:
    values: dict[str, dict[str, list[float]]] = {m: {} for m in methods}
    for seed in range(seeds):
        train = generate(model, n_train, seed=seed, split="train")
        test = generate(model, n_test, seed=seed, split="test")
        shift = generate(model, n_test, seed=seed, split="shift")
        for method in methods:
            start = time.perf_counter()
            found = evaluate(fit(method, train, config.replace(seed=seed)), test, shift)
            for key, value in found.items():
                values[method].setdefault(key, []).append(float(value))
            print(f"seed {seed} {method:7s} {time.perf_counter() - start:5.1f} s  "
                  f"id {found['accuracy_id']:.3f}  shift {found['accuracy_shift']:.3f}", flush=True)
    return values


def sweep(name: str, values: list[float], seeds: int, n_train: int, n_test: int, config: FitConfig,
          model: XueModel, methods: tuple[str, ...]) -> dict[str, dict]:
    """One data-model parameter varied, the others at ``model``'s: the summary of each value."""
    return {f"{name}={value:g}": summarise(run(seeds, n_train, n_test, config, model.replace(**{name: value}),
                                               methods)) for value in values}


def summarise(values: dict[str, dict[str, list[float]]]) -> dict[str, dict[str, dict[str, float]]]:
    return {m: {k: {"mean": float(np.mean(v)), "sd": float(np.std(v, ddof=1)) if len(v) > 1 else 0.0,
                    "values": v} for k, v in found.items()} for m, found in values.items()}


def sweep_table(sweeps: dict[str, dict]) -> str:
    lines = ["| setting | method | accuracy_id | accuracy_shift | core_within_share | spurious_within_share "
             "| spurious_core_coupling |", "| --- | --- | --- | --- | --- | --- | --- |"]
    for setting, summary in sweeps.items():
        for method, stats in summary.items():
            cells = [f"{stats[c]['mean']:.3f} ± {stats[c]['sd']:.3f}" if c in stats else "—" for c in
                     ("accuracy_id", "accuracy_shift", "core_within_share", "spurious_within_share",
                      "spurious_core_coupling")]
            lines.append(f"| {setting} | {method} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def table(summary: dict[str, dict[str, dict[str, float]]], columns: tuple[str, ...]) -> str:
    lines = ["| method | " + " | ".join(columns) + " |", "| --- |" + " --- |" * len(columns)]
    for method, stats in summary.items():
        cells = [f"{stats[c]['mean']:.3f} ± {stats[c]['sd']:.3f}" if c in stats else "—" for c in columns]
        lines.append(f"| {method} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def figure(summary: dict[str, dict[str, dict[str, float]]], sweeps: dict[str, dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    methods = list(summary)
    x = np.arange(len(methods))
    fig, axes = plt.subplots(1, 3, figsize=(15, 3.8), gridspec_kw={"width_ratios": [3, 3, 2]})
    for ax, keys, title in ((axes[0], ("accuracy_id", "accuracy_shift"), "zero-shot accuracy"),
                            (axes[1], ("core_within_share", "spurious_within_share"),
                             "share of within-class variance (image tower)")):
        for j, key in enumerate(keys):
            means = [summary[m][key]["mean"] for m in methods]
            sds = [summary[m][key]["sd"] for m in methods]
            ax.bar(x + (j - 0.5) * 0.38, means, 0.38, yerr=sds, capsize=3, label=key.replace("_", " "))
        ax.set_xticks(x, methods)
        ax.set_title(title)
        ax.set_ylim(0, 1)
        ax.legend(fontsize=8)
    axes[0].axhline(1 / 4, color="grey", lw=0.8, ls=":")
    richness = {k: v for k, v in sweeps.items() if k.startswith("caption_richness=")}
    if richness:
        ax = axes[2]
        xs = [float(k.split("=")[1]) for k in richness]
        for method in next(iter(richness.values())):
            for key, style in (("accuracy_shift", "-o"), ("accuracy_id", "--s")):
                ax.errorbar(xs, [richness[k][method][key]["mean"] for k in richness],
                            yerr=[richness[k][method][key]["sd"] for k in richness], fmt=style, capsize=3,
                            label=f"{method} {key.split('_')[1]}")
        ax.set_xlabel("caption richness π")
        ax.set_title("accuracy vs caption richness")
        ax.set_ylim(0, 1)
        ax.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--n-train", type=int, default=4000)
    parser.add_argument("--n-test", type=int, default=2000)
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--methods", default=",".join(METHODS))
    parser.add_argument("--sweep", action="append", default=None,
                        help="NAME=V1,V2,…: vary one data-model parameter for --sweep-methods (repeatable); default "
                             "caption_richness=0,0.5,1 and spurious_rate=0.25,0.6,0.9")
    parser.add_argument("--sweep-methods", default="sl,clip")
    parser.add_argument("--out", type=Path, default=HERE / "results")
    parser.add_argument("--figure", type=Path, default=HERE.parent / "docs" / "figures" / "synthetic_robustness.png")
    args = parser.parse_args(argv)
    model = XueModel()
    config = FitConfig(dim=16, epochs=args.epochs, batch_size=256, lr=3e-3, eval_metrics="gap")
    load_before = os.getloadavg()
    start = time.perf_counter()
    values = run(args.seeds, args.n_train, args.n_test, config, model, tuple(args.methods.split(",")))
    summary = summarise(values)
    sweeps: dict[str, dict] = {}
    for spec in args.sweep if args.sweep is not None else ["caption_richness=0,0.5,1", "spurious_rate=0.25,0.6,0.9"]:
        name, listed = spec.split("=")
        sweeps.update(sweep(name, [float(v) for v in listed.split(",")], args.seeds, args.n_train, args.n_test,
                            config, model, tuple(args.sweep_methods.split(","))))
    seconds = time.perf_counter() - start
    machine = (f"{cpu_model()}, {os.cpu_count()} logical CPUs, load average {load_before[0]:.2f} before and "
               f"{os.getloadavg()[0]:.2f} after, OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}")
    markdown = (f"# Xue et al.'s comparison on generated data ({args.seeds} seeds, mean ± sd)\n\n"
                f"{args.n_train} training pairs, {args.n_test} test pairs per split; {args.epochs} epochs; "
                f"{seconds:.0f} s on {machine}.\n\n" + table(summary, COLUMNS)
                + "\n## One data-model parameter varied (the others at their defaults)\n\n" + sweep_table(sweeps))
    write_results(args.out, "synthetic_robustness",
                  {"model": model.__dict__, "config": config.to_dict(), "seeds": args.seeds,
                   "n_train": args.n_train, "n_test": args.n_test, "seconds": seconds, "machine": machine,
                   "results": summary, "sweeps": sweeps}, markdown)
    figure(summary, sweeps, args.figure)
    print(markdown)


if __name__ == "__main__":
    main()
