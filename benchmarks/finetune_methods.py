r"""Gap-closing methods on real data: training-free shift and centring, CLIP-only towers, m²-mix, m³-mix, CUA, CUAXU
and the latent-structure losses of Jiang et al., each over several seeds, measured on held-out pairs.

    python benchmarks/finetune_methods.py --large /tmp/embspace-large.npz [--epochs 30] [--adapter-epochs 100]
    python benchmarks/finetune_methods.py --large /tmp/embspace-large.npz --init-logit-scale 100 --merge
    python benchmarks/finetune_methods.py --datasets none --cli-timing --merge

Datasets (each: train on its train split, measure its held-out split):

* ``sample`` — the bundled sample (800 train / 200 test pairs): EfficientNet-Lite0 image features (1280-d) and
  all-MiniLM-L6-v2 caption features (384-d), linear projection heads into 256-d (``FitConfig`` defaults);
* ``large`` — a larger build of the same sources by ``python tools/build_sample.py --per-source 1500
  --up-to`` (all 1,111 usable emoji + 1,500 drawings; its own 80/20 train/test split); skipped without ``--large``;
* ``mind-the-gap`` — the 500 MSCOCO pairs of CLIP ViT-B/16 from Liang et al. (``../shared/data/mind-the-gap``):
  there the raw features ARE CLIP embeddings (512-d both), so the towers are residual linear adapters that start
  as the identity, and the split is a seeded 80/20 split by pair (seed 0 for every training seed); skipped when
  the folder is absent. No classes: no zero-shot score.

Methods:

* ``init`` — the held-out pairs through the towers before training (random heads; for adapters the raw input);
* ``clip``, ``m2mix``, ``m3mix``, ``cua``, ``cuaxu``, ``latent`` — :func:`embspace.finetune.fit` with that loss and
  its default hyperparameters (``embspace.finetune.objectives``) and every other setting the ``FitConfig`` default
  (AdamW lr 1e-3, weight decay 0.1, batch 256, learnable logit scale from 1/0.07, or from ``--init-logit-scale``:
  100 is Liang et al.'s low-temperature regime and pretrained CLIP's final scale; such runs are stored under
  "NAME, 1/τ₀ = 100"). Epochs: ``--epochs`` (30, the
  CLI default: 90 optimiser steps on the sample's 800 pairs, 240 on the larger build) for projection heads, and
  ``--adapter-epochs`` (100) for ``mind-the-gap``, whose 400 training pairs make one batch per epoch — about the
  sample's number of steps;
* ``shift`` (Liang et al. 2022, λ = 0.5) and ``centring`` — training-free, applied to the CLIP-only towers'
  embeddings of the same seed (for ``mind-the-gap``: to the raw CLIP embeddings, as in the paper). The gap vector
  Δ and the modality means come from the TRAIN split and are applied to the held-out pairs and the class prompts
  (the prompts are text, so they move with the text side).

Every number comes from :func:`embspace.measure` on the held-out embeddings (gap, uniformity mean and joint,
alignment, RMG, linear separability, recall@1/5 both ways) and :func:`embspace.finetune.zeroshot.zero_shot_accuracy`
(held-out images against the class prompts of ``benchmarks/finetune_prompts.npz`` through the trained text tower;
rows of classes without a prompt are left out). Mean ± sample standard deviation (ddof = 1) over the seeds.

Writes ``benchmarks/results/finetune_methods.json`` and ``.md`` after every dataset (with its command, machine,
date and wall time), so an interrupted run keeps what finished; ``--merge`` keeps the datasets already in the
file. ``--cli-timing`` also times ``embspace finetune --sample --loss L`` (30 epochs, the CLI defaults) for every
loss, in a subprocess with the machine's threads.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch
from hostinfo import cpu_model  # benchmarks/hostinfo.py, beside this script

import embspace
from embspace.data import SAMPLE_PATH
from embspace.finetune import LOSSES, FitConfig, Pairs, build_model, fit, shift_gap
from embspace.finetune.data import as_pairs, sample_pairs, split_pairs
from embspace.finetune.fitting import embed
from embspace.finetune.heads import TwoTower
from embspace.finetune.zeroshot import zero_shot_accuracy
from embspace.kernels.dense import gap_vector, normalize

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
PROMPTS = ROOT / "benchmarks" / "finetune_prompts.npz"
MIND_THE_GAP = ROOT.parent / "shared" / "data" / "mind-the-gap"
METHODS = ("init", "shift", "centring", *LOSSES)
FAMILIES = "gap,alignment,rmg,uniformity,retrieval,separability"
COLUMNS = {  # key in the results → column title
    "gap": "gap", "uniformity.mean": "U mean", "uniformity.joint": "U joint", "alignment": "align",
    "rmg": "RMG", "linear_separability": "lin. sep.", "recall@1.image->text": "R@1 i→t",
    "recall@1.text->image": "R@1 t→i", "recall@5.image->text": "R@5 i→t", "recall@5.text->image": "R@5 t→i",
    "zero_shot": "zero-shot",
}
LAMBDA = 0.5


@dataclass
class Dataset:
    """A train / held-out split, how to build its towers, and its zero-shot classes."""

    name: str
    description: str
    train: Pairs
    test: Pairs
    adapter: bool
    epochs: int
    labels: np.ndarray | None = None  # (N_test,) class index into prompts, −1 where the class has no prompt
    prompts: np.ndarray | None = None  # (C, D_text) raw text features of the class prompts


def class_labels(origins: np.ndarray, categories: np.ndarray, prompts: dict[str, np.ndarray]) -> np.ndarray:
    index = {(o, c): k for k, (o, c) in enumerate(zip(prompts["origins"].tolist(), prompts["categories"].tolist(),
                                                      strict=True))}
    return np.array([index.get((o, c), -1) for o, c in zip(origins.tolist(), categories.tolist(), strict=True)])


def emoji_clipart(name: str, path: Path, prompts: dict[str, np.ndarray] | None, what: str, epochs: int) -> Dataset:
    with np.load(path, allow_pickle=False) as npz:
        arrays = {k: npz[k] for k in ("image_features", "text_features", "split", "categories", "origin")}
    train, test = sample_pairs(arrays)
    rows = np.flatnonzero(arrays["split"].astype(str) == "test")  # the order sample_pairs takes them in
    labels = None if prompts is None else class_labels(arrays["origin"][rows], arrays["categories"][rows], prompts)
    return Dataset(name, what, train, test, adapter=False, epochs=epochs, labels=labels,
                   prompts=None if prompts is None else prompts["features"])


def mind_the_gap(folder: Path, epochs: int) -> Dataset:
    stack = np.load(folder / "features_clip.npy", allow_pickle=False)  # (2, 500, 512)
    pairs = as_pairs({"image": stack[0], "text": stack[1]}, "features_clip.npy")
    train, test = split_pairs(pairs, 0.2, seed=0)
    return Dataset("mind-the-gap", f"CLIP ViT-B/16 MSCOCO embeddings (Liang et al.), {pairs.n} pairs, 512-d; "
                   "residual linear adapters; seeded 80/20 split by pair", train, test, adapter=True, epochs=epochs)


# ------------------------------------------------------------------------------------------------- evaluation
def evaluate(x: torch.Tensor, y: torch.Tensor, data: Dataset, seed: int, prompts: torch.Tensor | None) -> dict:
    """The library's metrics of the held-out pairs (x, y unit rows) and the zero-shot accuracy."""
    report = embspace.measure(image=x, text=y, metrics=FAMILIES, device="cpu", seed=seed)
    values = {key: float(report[key]) for key in COLUMNS if key != "zero_shot"}
    if prompts is not None and data.labels is not None:
        keep = data.labels >= 0
        values["zero_shot"] = zero_shot_accuracy(x[torch.from_numpy(keep)], prompts, data.labels[keep])
    return values


@torch.no_grad()
def text_tower(model: TwoTower, raw: np.ndarray | None) -> torch.Tensor | None:
    """Class prompts through the text tower, unit rows: (C, d)."""
    if raw is None:
        return None
    model.eval()
    return normalize(model.text(torch.from_numpy(np.asarray(raw, dtype=np.float32))).float())


def centre(z: torch.Tensor, mean: torch.Tensor) -> torch.Tensor:
    """normalise(ẑ − mean): :func:`embspace.finetune.center_modalities`' formula with a mean given from elsewhere
    (the train split), so held-out rows and class prompts move by the same vector."""
    return normalize(z - mean)


def training_free(model: TwoTower, data: Dataset, seed: int) -> dict[str, dict]:
    """Shift and centring of the model's embeddings, with Δ and the means taken on the train split."""
    device = torch.device("cpu")
    train_x, train_y = (torch.from_numpy(a) for a in embed(model, data.train, device))
    test_x, test_y = (torch.from_numpy(a) for a in embed(model, data.test, device))
    prompts = text_tower(model, data.prompts)
    delta = gap_vector(train_x, train_y)  # (d,) = mean(X̂_train) − mean(Ŷ_train)
    sx, sy = shift_gap(test_x, test_y, LAMBDA, direction=delta, normalized=True)
    sp = None if prompts is None else shift_gap(test_x, prompts, LAMBDA, direction=delta, normalized=True)[1]
    mean_x, mean_y = train_x.mean(0), train_y.mean(0)  # (d,) each, of unit rows
    cx, cy = centre(test_x, mean_x), centre(test_y, mean_y)
    cp = None if prompts is None else centre(prompts, mean_y)
    return {"shift": evaluate(sx, sy, data, seed, sp), "centring": evaluate(cx, cy, data, seed, cp)}


def run_dataset(data: Dataset, seeds: list[int], log, init_logit_scale: float = FitConfig.init_logit_scale) -> dict:
    per_seed: dict[str, list[dict]] = {m: [] for m in METHODS}
    for seed in seeds:
        for loss in LOSSES:
            config = FitConfig(loss=loss, epochs=data.epochs, seed=seed, adapter=data.adapter, eval_metrics="gap",
                               init_logit_scale=init_logit_scale)
            start = time.perf_counter()
            result = fit(data.train, data.test, config=config, progress=False, resamples=100)
            seconds = time.perf_counter() - start
            x, y = torch.from_numpy(result.image), torch.from_numpy(result.text)
            values = evaluate(x, y, data, seed, text_tower(result.model, data.prompts))
            per_seed[loss].append({"seed": seed, "train_s": round(seconds, 2), **values})
            log(f"{data.name} seed {seed} {loss}: {seconds:.1f} s, gap {values['gap']:.3f}, "
                f"R@1 i→t {values['recall@1.image->text']:.3f}")
            if loss == "clip":
                initial = build_model(*data.train.dims, config)  # the same seeded init fit started from
                bx, by = torch.from_numpy(result.before_image), torch.from_numpy(result.before_text)
                per_seed["init"].append({"seed": seed, **evaluate(bx, by, data, seed,
                                                                  text_tower(initial, data.prompts))})
                base = initial if data.adapter else result.model  # raw CLIP embeddings, or the CLIP-only towers
                for name, values in training_free(base, data, seed).items():
                    per_seed[name].append({"seed": seed, **values})
    return {"description": data.description, "n_train": data.train.n, "n_test": data.test.n,
            "dims": list(data.train.dims), "adapter": data.adapter, "epochs": data.epochs,
            "init_logit_scale": init_logit_scale,
            "steps": data.epochs * max(1, data.train.n // FitConfig().batch_size), **class_info(data),
            "methods": {m: summarise(per_seed[m]) for m in METHODS}}


def class_info(data: Dataset) -> dict:
    if data.labels is None:
        return {}
    kept = data.labels[data.labels >= 0]
    return {"zero_shot_rows": int(kept.size), "classes_present": int(np.unique(kept).size),
            "classes_scored": len(data.prompts),
            "majority_rate": float(np.bincount(kept).max() / kept.size)}


def summarise(rows: list[dict]) -> dict:
    keys = [k for k in rows[0] if k not in ("seed",)]
    mean = {k: float(np.mean([r[k] for r in rows])) for k in keys}
    std = {k: float(np.std([r[k] for r in rows], ddof=1)) if len(rows) > 1 else 0.0 for k in keys}
    return {"mean": mean, "std": std, "per_seed": rows}


# ---------------------------------------------------------------------------------------------------- CLI timing
def cli_timing(losses: tuple[str, ...]) -> dict[str, dict[str, float]]:
    """Wall and CPU seconds (user + system, all threads) of ``embspace finetune --sample --loss L --out DIR --quiet``
    with every CLI default. CPU seconds hardly depend on what else the machine runs; wall seconds do."""
    import resource

    times = {}
    for loss in losses:
        with tempfile.TemporaryDirectory() as tmp:
            command = [sys.executable, "-m", "embspace.cli", "finetune", "--sample", "--loss", loss,
                       "--out", str(Path(tmp) / "run"), "--quiet"]
            before = resource.getrusage(resource.RUSAGE_CHILDREN)
            start = time.perf_counter()
            subprocess.run(command, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            wall = time.perf_counter() - start
            after = resource.getrusage(resource.RUSAGE_CHILDREN)
            cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
            if not (Path(tmp) / "run" / "comparison.json").exists():
                raise RuntimeError(f"{loss}: the CLI wrote no comparison.json")
            times[loss] = {"wall_s": round(wall, 1), "cpu_s": round(cpu, 1)}
    return times


# -------------------------------------------------------------------------------------------------------- output
def machine() -> str:
    cpu = cpu_model()
    load = f", load average {os.getloadavg()[1]:.1f} over the last 5 min (a shared machine)" \
        if hasattr(os, "getloadavg") else ""
    return (f"{cpu}, {os.cpu_count()} cores, Python {platform.python_version()}, torch {torch.__version__}, "
            f"{torch.get_num_threads()} torch thread(s){load}")


def fmt(mean: float, std: float) -> str:
    return f"{mean:.3f} ± {std:.3f}"


def markdown(results: dict) -> str:
    lines = ["# Gap-closing methods on real data: held-out metrics, mean ± std (ddof 1) over seeds", "",
             "Columns: centroid gap; uniformity (t = 2), mean of the two modalities and joint over their union; "
             "alignment (α = 2); relative modality gap; linear separability (held-out accuracy, 0.5 = no gap); "
             "recall@k image→text and text→image; zero-shot category accuracy of held-out images. "
             "`train s` is the wall time of one `fit` (training and the per-epoch gap).", ""]
    for name, data in results["datasets"].items():
        lines += [f"## {name}", "", f"{data['description']}; {data['n_train']} train / {data['n_test']} held-out "
                  f"pairs; {data['epochs']} epochs ({data['steps']} optimiser steps) per trained method; logit scale "
                  f"1/τ from {data.get('init_logit_scale', 1 / 0.07):.3g} (learned, clamped at 100); seeds "
                  f"{data['seeds']}.", "", f"Machine: {data['machine']}; {data['date']}; wall time "
                  f"{data['wall_s'] / 60:.1f} min.  ", f"Command: `{data['command']}`", ""]
        if "zero_shot_rows" in data:
            lines += [f"Zero-shot: {data['zero_shot_rows']} held-out images with a class prompt, "
                      f"{data['classes_present']} classes among them, scored against all {data['classes_scored']}"
                      f" prompts; majority-class rate {data['majority_rate']:.3f}.", ""]
        columns = [k for k in COLUMNS if k in data["methods"]["clip"]["mean"]]
        lines.append("| method | " + " | ".join(COLUMNS[k] for k in columns) + " | train s |")
        lines.append("| --- |" + " ---: |" * (len(columns) + 1))
        for method, summary in data["methods"].items():
            cells = [fmt(summary["mean"][k], summary["std"][k]) for k in columns]
            train_s = f"{summary['mean']['train_s']:.1f}" if "train_s" in summary["mean"] else "—"
            lines.append(f"| {method} | " + " | ".join(cells) + f" | {train_s} |")
        lines.append("")
    timing = results.get("cli_timing")
    if timing:
        lines += ["## `embspace finetune --sample` wall time (CLI defaults: 30 epochs, all metrics every epoch, "
                  "1,000-resample bootstrap, report written)", "", f"Machine: {timing['machine']}.  ",
                  f"Command: `{timing['command']}`", "", "| loss | wall s | CPU s (user + system) |",
                  "| --- | ---: | ---: |"]
        lines += [f"| {loss} | {t['wall_s']:.1f} | {t['cpu_s']:.1f} |" for loss, t in timing["seconds"].items()]
        lines.append("")
    return "\n".join(lines)


def write(results: dict, out: Path) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(results, indent=1) + "\n")
    out.with_suffix(".md").write_text(markdown(results))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--large", type=Path, help="a larger build of the sample (build_sample --per-source 1500)")
    parser.add_argument("--mind-the-gap", type=Path, default=MIND_THE_GAP, help="folder with features_clip.npy")
    parser.add_argument("--prompts", type=Path, default=PROMPTS, help="class prompts (finetune_prompts.py)")
    parser.add_argument("--datasets", default="sample,large,mind-the-gap", help="which datasets to run")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--epochs", type=int, default=30, help="epochs of the projection-head datasets")
    parser.add_argument("--adapter-epochs", type=int, default=100, help="epochs of the adapters on mind-the-gap")
    parser.add_argument("--init-logit-scale", type=float, default=FitConfig.init_logit_scale,
                        help="1/τ at the start of training (CLIP: 1/0.07; 100 = Liang et al.'s low temperature and "
                             "the scale pretrained CLIP ends at); a non-default value is part of the dataset's name")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (others share the machine)")
    parser.add_argument("--cli-timing", action="store_true", help="also time `embspace finetune --sample` per loss")
    parser.add_argument("--out", type=Path, default=RESULTS / "finetune_methods")
    parser.add_argument("--merge", action="store_true", help="keep the other datasets already in --out's .json")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    start = time.perf_counter()
    prompts = None
    if args.prompts.exists():
        with np.load(args.prompts, allow_pickle=False) as npz:
            prompts = {k: npz[k] for k in npz.files}

    def log(message: str) -> None:
        print(f"[{time.perf_counter() - start:7.1f} s] {message}", flush=True)

    wanted = [d.strip() for d in args.datasets.split(",")]
    loaders = {
        "sample": lambda: emoji_clipart("sample", SAMPLE_PATH, prompts, "the bundled sample (500 emoji + 500 "
                                        "openclipart), EfficientNet-Lite0 1280-d / MiniLM 384-d features → linear "
                                        "heads to 256-d", args.epochs),
        "large": lambda: emoji_clipart("large", args.large, prompts, f"a larger build of the same sources "
                                       f"({args.large.name}), features and heads as in the sample", args.epochs),
        "mind-the-gap": lambda: mind_the_gap(args.mind_the_gap, args.adapter_epochs),
    }
    available = {"sample": True, "large": args.large is not None and args.large.exists(),
                 "mind-the-gap": (args.mind_the_gap / "features_clip.npy").exists()}
    command = "python " + " ".join(shlex.quote(a) for a in [os.path.relpath(__file__, ROOT), *sys.argv[1:]])
    results = {"lambda_shift": LAMBDA, "metrics": FAMILIES,
               "prompts": str(os.path.relpath(args.prompts, ROOT)) if prompts is not None else None, "datasets": {}}
    previous = args.out.with_suffix(".json")
    if args.merge and previous.exists():
        results["datasets"] = json.loads(previous.read_text())["datasets"]
        results["cli_timing"] = json.loads(previous.read_text()).get("cli_timing")
    for name in wanted:
        if not available.get(name, False):
            log(f"{name}: not available, skipped")
            continue
        began = time.perf_counter()
        summary = run_dataset(loaders[name](), args.seeds, log, args.init_logit_scale)
        key = name if args.init_logit_scale == FitConfig.init_logit_scale else \
            f"{name}, 1/τ₀ = {args.init_logit_scale:g}"
        results["datasets"][key] = {**summary, "seeds": args.seeds, "command": command, "machine": machine(),
                                     "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
                                     "wall_s": round(time.perf_counter() - began, 1)}
        write(results, args.out)
        log(f"{name}: done, results written to {args.out}.{{json,md}}")
    if args.cli_timing:
        torch.set_num_threads(os.cpu_count() or 1)
        results["cli_timing"] = {"command": "embspace finetune --sample --loss LOSS --out DIR --quiet",
                                 "machine": machine(), "seconds": cli_timing(LOSSES)}
        write(results, args.out)
    log("finished")


if __name__ == "__main__":
    main()
