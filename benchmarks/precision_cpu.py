"""Error of each storage precision against float64, measured on the CPU through `embspace.measure(precision=…)`.

    python benchmarks/precision_cpu.py [--n 20000] [--dim 512] [--out benchmarks/results]

Rows are stored in fp32, bf16 or fp16 and multiplied with float32 accumulation (fp16 and bf16 are widened before
the product), exactly the arithmetic of the fused GPU kernels' fp16/bf16 paths up to the order of the sums: the
product of two fp16 (or bf16) numbers is exact in float32. tf32 is left out: the CPU has no tf32 products.

Data: cone-shaped, L2-normalised rows with noisy partners (seeded; like CLIP embeddings, whose similarities crowd
a narrow band) and, when `../shared/data/mind-the-gap/features_clip.npy` is beside the repository, the real CLIP
image/text embeddings of *Mind the Gap* (Liang et al. 2022). The reference is `measure(precision="fp64")`, itself
checked against float64 brute force in the tests. Writes ``precision_cpu.{md,json}``.
"""

from __future__ import annotations

import argparse
import platform
import sys
import time
from pathlib import Path

import numpy as np
from hostinfo import cpu_model, write_results  # benchmarks/hostinfo.py, beside this script

RESULTS = Path(__file__).parent / "results"
MIND_THE_GAP = Path(__file__).resolve().parents[2] / "shared" / "data" / "mind-the-gap" / "features_clip.npy"
PRECISIONS = ("fp32", "bf16", "fp16")
METRICS = "uniformity,retrieval,hubness,gap,alignment"
PATHS = ("uniformity.image", "uniformity.cross", "uniformity.joint", "gap", "alignment", "recall@1.image->text",
         "recall@10.image->text", "hubness.image->text")


def cone_pairs(n: int, dim: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    axis = rng.normal(size=dim)
    x = axis / np.linalg.norm(axis) + 1.5 * rng.normal(size=(n, dim)) / np.sqrt(dim)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    y = x + 3.0 * rng.normal(size=(n, dim)) / np.sqrt(dim)
    return x, y / np.linalg.norm(y, axis=1, keepdims=True)


def errors(x: np.ndarray, y: np.ndarray) -> dict[str, dict[str, float]]:
    import embspace

    def run(precision: str) -> dict[str, float]:
        report = embspace.measure(image=x, text=y, metrics=METRICS, precision=precision, device="cpu")
        return {path: float(report[path]) for path in PATHS}

    reference = run("fp64")
    out = {"reference": reference}
    for precision in PRECISIONS:
        values = run(precision)
        out[precision] = {path: abs(values[path] - reference[path]) for path in PATHS}
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=20_000)
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    datasets = {f"cone, N = {args.n:,}, D = {args.dim}": cone_pairs(args.n, args.dim)}
    if MIND_THE_GAP.exists():
        clip = np.load(MIND_THE_GAP).astype(np.float64)  # (2, N, D): image, text
        datasets[f"Mind the Gap CLIP, N = {clip.shape[1]:,}, D = {clip.shape[2]}"] = (clip[0], clip[1])
    results = {}
    for name, (x, y) in datasets.items():
        began = time.perf_counter()
        results[name] = errors(x, y)
        print(f"{name}: {time.perf_counter() - began:.1f} s", flush=True)
    import torch

    summary = {"benchmark": "precision_cpu", "results": results, "machine": {
        "cpu": cpu_model(), "python": platform.python_version(), "torch": torch.__version__},
        "date": time.strftime("%Y-%m-%d", time.gmtime())}
    write_results(args.out, "precision_cpu", summary, markdown(summary))
    print(markdown(summary))
    return 0


def markdown(summary: dict) -> str:
    lines = ["# Error of each storage precision against float64 (CPU, float32 accumulation)", "",
             f"Machine: {summary['machine']['cpu']}; torch {summary['machine']['torch']}; {summary['date']}. "
             "Absolute error of `measure(precision=…)` against `measure(precision=\"fp64\")`.", ""]
    for name, result in summary["results"].items():
        lines += [f"## {name}", "", "| number | float64 value | " + " | ".join(PRECISIONS) + " |",
                  "| --- | --- | " + " | ".join("---" for _ in PRECISIONS) + " |"]
        for path in PATHS:
            cells = " | ".join(f"{result[p][path]:.1e}" for p in PRECISIONS)
            lines.append(f"| {path} | {result['reference'][path]:.6f} | {cells} |")
        lines.append("")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
