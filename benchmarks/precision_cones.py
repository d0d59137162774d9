"""Uniformity error of each tile precision against float64 brute force, from ordinary cones to collapsed ones.

    python benchmarks/precision_cones.py [--n 2000] [--dim 512] [--out benchmarks/results]

For each cone width (the mean cosine of a modality's rows: ~0.5 for CLIP-like data up to 0.99999, a space
collapsed as at random initialisation) two paired modalities are drawn as unit rows normalise(c + s·noise) and
normalise(c′ + s·noise′), c′ a little away from c (a gap of ~0.3·s), and every uniformity variant (image, text,
mean, joint, cross; t = 2) is measured with ``embspace.measure(precision=…)`` on the CPU: fp64, fp32, bf16 and fp16
tiles (fp16 / bf16 rows are widened to float32 before the product, as the GPU's tensor cores multiply them: the
product of two such numbers is exact in float32). tf32 has no CPU products and is not measured here: on a GPU its
tiles round the centred rows to 10 mantissa bits, as fp16 does.

The reference is the float64 brute force of METHODS.md (scipy ``pdist`` / ``cdist`` of the float64 unit rows). The
column "dot form" is what the textbook exp(2t(s − 1)) computed from the same tiles of similarities gives (the
engine's earlier arithmetic, :meth:`ExpSum.update`), for comparison. Errors are relative, |U − U₆₄| / |U|; the
largest over the five variants is reported. Writes ``precision_cones.{md,json}``.
"""

from __future__ import annotations

import argparse
import platform
import time
from pathlib import Path

import numpy as np
from hostinfo import cpu_model, write_results  # benchmarks/hostinfo.py, beside this script

RESULTS = Path(__file__).parent / "results"
CONES = (0.5, 0.9, 0.99, 0.999, 0.9999, 0.99998, 0.99999)
PRECISIONS = ("fp64", "fp32", "bf16", "fp16")
VARIANTS = ("image", "text", "mean", "joint", "cross")
T = 2.0


def unit(a: np.ndarray) -> np.ndarray:
    return a / np.linalg.norm(a, axis=1, keepdims=True)


def cone_pairs(n: int, dim: int, cone: float, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Two paired modalities whose rows have mean cosine ≈ ``cone`` (noise of norm s = √(1 − cone)·√(1 + …)).

    For wide cones the noise is not small and the mean cosine of normalise(c + s·g/√D) is 1/(1 + s²); s is chosen
    from that so the measured cone lands near ``cone``."""
    rng = np.random.default_rng(seed)
    s = np.sqrt(1 / cone - 1)
    c = rng.normal(size=dim)
    c /= np.linalg.norm(c)
    gap = rng.normal(size=dim)
    gap *= 0.3 * s / np.linalg.norm(gap)
    x = unit(c + s * rng.normal(size=(n, dim)) / np.sqrt(dim))
    y = unit(c + gap + s * rng.normal(size=(n, dim)) / np.sqrt(dim))
    return x, y


def brute_force(x: np.ndarray, y: np.ndarray) -> dict[str, float]:
    from scipy.spatial.distance import cdist, pdist

    def u(a: np.ndarray) -> float:
        return float(np.log(np.mean(np.exp(-T * pdist(a, "sqeuclidean")))))

    cross = cdist(x, y, "sqeuclidean")
    off = ~np.eye(len(x), dtype=bool)
    ux, uy = u(x), u(y)
    return {"image": ux, "text": uy, "mean": (ux + uy) / 2, "joint": u(np.concatenate([x, y])),
            "cross": float(np.log(np.mean(np.exp(-T * cross[off]))))}


def dot_form(x: np.ndarray, y: np.ndarray, precision: str) -> dict[str, float]:
    """Uniformity from exp(2t(s − 1)) on the same tiles of similarities (the textbook arithmetic)."""
    import torch

    from embspace.kernels.backend import resolve_precision
    from embspace.kernels.pairwise import ExpSum, TileBuffer, feed_tile
    from embspace.kernels.rows import prepare_rows
    from embspace.metrics.uniformity import uniformity_variants

    dtype = resolve_precision(precision)
    cpu = torch.device("cpu")
    rx, ry = prepare_rows(x, cpu, dtype), prepare_rows(y, cpu, dtype)

    def textbook(a, b, symmetric: bool) -> float:
        """An ExpSum fed tiles of similarities (ExpSum.update: 2t(s − 1)) instead of centred rows."""
        acc = ExpSum(T, symmetric=symmetric, exclude_diagonal=True)
        other = a if b is None else b
        buffer, tile = TileBuffer(), 4096
        for r0 in range(0, a.n, tile):
            for c0 in range(r0 if symmetric else 0, other.n, tile):
                feed_tile(a.block(r0, min(r0 + tile, a.n)), other.block(c0, min(c0 + tile, other.n)), [acc], r0, c0,
                          diagonal=r0 == c0, buffer=buffer)
        return acc.log_sum()

    n = len(x)
    matched = float(np.log(np.sum(np.exp(2 * T * (np.sum(rx.block(0, n).double().numpy() * ry.block(0, n).double()
                                                             .numpy(), axis=1) - 1)))))
    return uniformity_variants(textbook(rx, None, True), textbook(ry, None, True), textbook(rx, ry, False), matched, n,
                               names=("image", "text"))


def measured(x: np.ndarray, y: np.ndarray, precision: str) -> dict[str, float]:
    import embspace

    report = embspace.measure(image=x, text=y, metrics="uniformity", precision=precision, device="cpu")
    return {v: float(report[f"uniformity.{v}"]) for v in VARIANTS}


def relative(values: dict[str, float], reference: dict[str, float]) -> dict[str, float]:
    return {v: abs(values[v] - reference[v]) / abs(reference[v]) for v in VARIANTS}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=2000)
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    rows = []
    for cone in CONES:
        began = time.perf_counter()
        x, y = cone_pairs(args.n, args.dim, cone)
        measured_cone = float(((x.sum(0) @ x.sum(0)) - args.n) / (args.n * (args.n - 1)))
        reference = brute_force(x, y)
        entry = {"cone": cone, "measured_cone": measured_cone, "reference": reference, "errors": {},
                 "dot_form_errors": {}, "positive": {}}
        for precision in PRECISIONS:
            values = measured(x, y, precision)
            entry["errors"][precision] = relative(values, reference)
            entry["positive"][precision] = any(values[v] > 0 for v in VARIANTS)
            if precision != "fp64":
                dot = dot_form(x, y, precision)
                entry["dot_form_errors"][precision] = relative(dot, reference)
                entry["positive"][f"{precision} dot form"] = any(dot[v] > 0 for v in VARIANTS)
        rows.append(entry)
        print(f"cone {cone}: {time.perf_counter() - began:.1f} s", flush=True)
    import os

    import torch

    summary = {"benchmark": "precision_cones", "n": args.n, "dim": args.dim, "t": T, "results": rows,
               "machine": {"cpu": cpu_model(), "cores": os.cpu_count(), "python": platform.python_version(),
                           "torch": torch.__version__, "load_average": os.getloadavg()},
               "date": time.strftime("%Y-%m-%d", time.gmtime())}
    write_results(args.out, "precision_cones", summary, markdown(summary))
    print(markdown(summary))
    return 0


def markdown(summary: dict) -> str:
    lines = [f"# Uniformity error against float64 brute force across cone widths (N = {summary['n']:,} pairs, "
             f"D = {summary['dim']}, t = {summary['t']:g})", "",
             f"Machine: {summary['machine']['cpu']}, torch {summary['machine']['torch']}, {summary['date']}. "
             "Largest relative error |U − U₆₄| / |U| over the variants image, text, mean, joint, cross; "
             "\"dot form\": exp(2t(s − 1)) from the same tiles of similarities. tf32: not on the CPU.", "",
             "| cone (measured) | U image (float64) | fp64 | fp32 | bf16 | fp16 | fp32 dot form | bf16 dot form | "
             "fp16 dot form |", "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for entry in summary["results"]:
        worst = {p: max(e.values()) for p, e in entry["errors"].items()}
        dot = {p: max(e.values()) for p, e in entry["dot_form_errors"].items()}
        flag = {p: " (U > 0)" if entry["positive"].get(f"{p} dot form") else "" for p in dot}
        lines.append(f"| {entry['cone']:g} ({entry['measured_cone']:.6f}) | {entry['reference']['image']:.5g} | "
                     + " | ".join(f"{worst[p]:.1e}" for p in PRECISIONS) + " | "
                     + " | ".join(f"{dot[p]:.1e}{flag[p]}" for p in ("fp32", "bf16", "fp16")) + " |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    raise SystemExit(main())
