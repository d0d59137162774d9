"""Exact uniformity on the CPU: embspace's tiled engine vs the `torch.pdist` reference formula.

    python benchmarks/uniformity_cpu.py [--n 20000] [--dim 512] [--out benchmarks/results]

Every method runs in a fresh subprocess on the same cone-shaped, L2-normalised float32 data (seeded), so its
peak resident memory is its own. Reported per method: wall time (best of ``--repeats``), peak RSS, and the error
against a float64 brute force (scipy ``pdist``). ``gemm`` is the time of the float32 matrix products alone for the
same work (the upper-triangle tiles, N²·D multiply-adds, written into one preallocated tile: ``torch.mm(out=)``, as
embspace writes its own), the floor any exact method on this machine is held to.
Writes ``uniformity_cpu.json`` and ``uniformity_cpu.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

from hostinfo import cpu_model  # benchmarks/hostinfo.py, beside this script

T = 2.0
METHODS = ("embspace", "pdist", "gemm", "float64")


def make_data(n: int, dim: int, seed: int = 0):
    import numpy as np

    rng = np.random.default_rng(seed)
    axis = rng.normal(size=dim)
    x = axis / np.linalg.norm(axis) + 1.5 * rng.normal(size=(n, dim)) / np.sqrt(dim)  # a cone, like CLIP
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def run_method(method: str, n: int, dim: int, repeats: int) -> dict[str, float]:
    """Time one method in this process; returns seconds, value and peak RSS."""
    import resource

    import numpy as np
    import torch

    x_np = make_data(n, dim)
    x = torch.from_numpy(x_np)
    best, value = float("inf"), float("nan")
    for _ in range(repeats if method != "float64" else 1):
        start = time.perf_counter()
        if method == "embspace":
            import embspace

            value = embspace.measure(image=x, metrics="uniformity", device="cpu")["uniformity.image"]
        elif method == "pdist":  # Wang & Isola's uniform_loss
            value = float(torch.pdist(x, p=2).pow(2).mul(-T).exp().mean().log())
        elif method == "gemm":
            from embspace.kernels.pairwise import DEFAULT_TILE

            out = torch.empty(DEFAULT_TILE * DEFAULT_TILE, dtype=torch.float32)  # one buffered tile, as embspace
            for r0 in range(0, n, DEFAULT_TILE):
                rows = x[r0 : r0 + DEFAULT_TILE]
                for c0 in range(r0, n, DEFAULT_TILE):
                    cols = x[c0 : c0 + DEFAULT_TILE]
                    torch.mm(rows, cols.T, out=out[: len(rows) * len(cols)].view(len(rows), len(cols)))
        else:
            from scipy.spatial.distance import pdist

            value = float(np.log(np.mean(np.exp(-T * pdist(x_np.astype(np.float64), "sqeuclidean")))))
        best = min(best, time.perf_counter() - start)
    peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {"seconds": best, "value": value, "peak_rss_mib": peak_kib / 1024, "threads": torch.get_num_threads()}


def machine() -> str:
    cpu = cpu_model()
    return f"{cpu}, {os.cpu_count()} cores, Python {platform.python_version()}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=20_000)
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    parser.add_argument("--method", choices=METHODS, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.method:  # child process
        print(json.dumps(run_method(args.method, args.n, args.dim, args.repeats)))
        return

    import torch

    results = {}
    load_before = round(os.getloadavg()[0], 2)
    for method in METHODS:
        child = subprocess.run([sys.executable, __file__, "--method", method, "--n", str(args.n), "--dim",
                                str(args.dim), "--repeats", str(args.repeats)], capture_output=True, text=True,
                               check=True)
        results[method] = json.loads(child.stdout.strip().splitlines()[-1])
        print(f"{method:>9}: {results[method]['seconds']:.2f} s, peak RSS {results[method]['peak_rss_mib']:.0f} MiB",
              flush=True)
    exact = results["float64"]["value"]
    for method in ("embspace", "pdist"):
        results[method]["abs_error"] = abs(results[method]["value"] - exact)
    summary = {
        "n": args.n, "dim": args.dim, "t": T, "machine": machine(), "torch": torch.__version__,
        "date": time.strftime("%Y-%m-%d"), "load_average_before": load_before, "results": results,
        "speedup_vs_pdist": results["pdist"]["seconds"] / results["embspace"]["seconds"],
        "ratio_to_gemm": results["embspace"]["seconds"] / results["gemm"]["seconds"],
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "uniformity_cpu.json").write_text(json.dumps(summary, indent=2) + "\n")
    rows = [f"| {m} | {r['seconds']:.2f} | {r['peak_rss_mib']:.0f} | "
            f"{r.get('abs_error', float('nan')):.1e} |" for m, r in results.items()]
    (args.out / "uniformity_cpu.md").write_text("\n".join([
        f"# Exact uniformity, N = {args.n:,}, D = {args.dim}, t = {T:g}, float32 (cone-shaped unit rows)", "",
        f"Machine: {summary['machine']}; torch {torch.__version__}; {summary['date']}; 1-minute load average "
        f"{load_before} when the run started (other work on the machine slows every method alike).", "",
        "| method | seconds (best of runs) | peak RSS MiB | abs. error vs float64 |", "| --- | --- | --- | --- |",
        *rows, "",
        f"embspace is {summary['speedup_vs_pdist']:.1f}× faster than `torch.pdist` and takes "
        f"{summary['ratio_to_gemm']:.2f}× the time of the float32 matrix products alone (`gemm`).",
        "`float64` is scipy's `pdist` in float64, the reference value; `gemm` computes no uniformity.", ""]))
    print(f"speed-up vs pdist {summary['speedup_vs_pdist']:.1f}×, {summary['ratio_to_gemm']:.2f}× GEMM time")


if __name__ == "__main__":
    main()
