"""The O(N·D) families (gap, alignment, cone, spectrum) on the CPU: `embspace measure` against a one-pass torch peer.

    python benchmarks/ond_pass.py [--n 100000 1000000] [--dim 512] [--threads 2] [--out benchmarks/results]

Writes two (N, D) float16 ``.npy`` dumps (image and text: a cone, a shared offset plus noise, written in blocks)
into a temporary folder, then runs, each in its own process (wall time and peak resident memory: the child's own
VmHWM, read as it exits):

- ``embspace measure image=… text=… --metrics gap,alignment,cone,spectrum --json …`` at the default memory budget
  and under ``--memory 1GB``;
- the peer: one pass over ``np.load(mmap_mode="r")`` blocks of 65,536 rows that normalises each block, accumulates
  Σx̂, Σŷ, Σ‖x̂‖², Σ‖ŷ‖², Σx̂·ŷ, Σ‖x̂ − ŷ‖² and the float64 D×D Gram per modality, and turns them into the same
  numbers (gap, centroid cosine, alignment, matched cosine, cones, effective ranks); it neither validates nor hashes.

Every embspace report is checked against the peer's numbers (largest relative difference recorded). Records the
machine (CPU model, cores, threads), the load average before and after each run, and writes
``ond_pass_cpu.{json,md}``. Memory-mapped pages the peer reads count in its resident memory.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from hostinfo import cpu_model, write_results  # benchmarks/hostinfo.py, beside this script

RESULTS = Path(__file__).parent / "results"
BLOCK = 65_536
METRICS = "gap,alignment,cone,spectrum"


def write_cone(folder: Path, n: int, dim: int, seed: int = 0) -> tuple[Path, Path]:
    """image.npy, text.npy: (n, dim) float16 rows around two centres of one cone (offset ± a shift, plus noise)."""
    import numpy as np

    rng = np.random.default_rng(seed)
    offset, shift = rng.normal(size=dim), rng.normal(size=dim)
    offset, shift = offset / np.linalg.norm(offset), shift / np.linalg.norm(shift)
    paths = folder / "image.npy", folder / "text.npy"
    for path, centre in zip(paths, (offset + 0.4 * shift, offset - 0.4 * shift), strict=True):
        out = np.lib.format.open_memmap(path, mode="w+", dtype=np.float16, shape=(n, dim))
        for start in range(0, n, BLOCK):
            stop = min(start + BLOCK, n)
            out[start:stop] = (centre + rng.normal(scale=1.5 / dim**0.5, size=(stop - start, dim))).astype(np.float16)
        out.flush()
        del out
    return paths


def peer(image: str, text: str, block: int = BLOCK) -> dict[str, float]:
    """The one-pass torch peer (see the module docstring): plain sums over normalised float64 blocks."""
    import numpy as np
    import torch

    arrays = {"image": np.load(image, mmap_mode="r"), "text": np.load(text, mmap_mode="r")}
    n, dim = arrays["image"].shape
    sums = {k: torch.zeros(dim, dtype=torch.float64) for k in arrays}  # (D,)
    grams = {k: torch.zeros((dim, dim), dtype=torch.float64) for k in arrays}  # (D, D)
    squares, dots, distances = dict.fromkeys(arrays, 0.0), 0.0, 0.0
    for start in range(0, n, block):
        wide = {}
        for key, array in arrays.items():
            rows = torch.from_numpy(np.ascontiguousarray(array[start : start + block])).float()  # (B, D)
            rows /= rows.norm(dim=1, keepdim=True)
            w = rows.double()
            sums[key] += w.sum(0)
            squares[key] += float(w.pow(2).sum())
            grams[key].addmm_(w.T, w)
            wide[key] = w
        dots += float((wide["image"] * wide["text"]).sum())
        distances += float((wide["image"] - wide["text"]).pow(2).sum())
    mx, my = sums["image"] / n, sums["text"] / n
    out = {"gap": float((mx - my).norm()), "centroid_cosine": float(mx @ my / (mx.norm() * my.norm())),
           "alignment": distances / n, "matched_cosine": dots / n}
    for key in arrays:
        out[f"cone.{key}"] = (float(sums[key].pow(2).sum()) - squares[key]) / (n * (n - 1))
        sigma = np.sqrt(np.clip(np.linalg.eigvalsh(grams[key].numpy())[::-1], 0, None))
        p = sigma / sigma.sum()
        out[f"effective_rank.{key}"] = float(np.exp(-(p[p > 0] * np.log(p[p > 0])).sum()))
    return out


LAUNCH = """
import atexit, os, runpy, sys

def record(path):
    with open("/proc/self/status") as status, open(path, "w") as out:
        out.write(next(line for line in status if line.startswith("VmHWM:")).split()[1])

atexit.register(record, sys.argv.pop(1))
kind, target = sys.argv.pop(1), sys.argv.pop(1)
sys.argv[0] = target
if kind == "script":
    sys.path.insert(0, os.path.dirname(os.path.abspath(target)))
runpy.run_module(target, run_name="__main__") if kind == "module" else runpy.run_path(target, run_name="__main__")
"""
"""Runs a module or script and writes its own peak RSS (VmHWM, kB) as it exits: ``ru_maxrss`` of a child would also
count what the parent held when it forked."""


def timed_child(kind: str, target: str, args: list[str], threads: int, scratch: Path) -> dict[str, object]:
    """Run ``python -m target args`` (``kind`` module) or ``python target args`` (script) in a child process: wall
    seconds, its own peak RSS (MiB), the load average before and after."""
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    peak = scratch / "vmhwm.txt"
    load_before = os.getloadavg()[0]
    began = time.perf_counter()
    child = subprocess.run([sys.executable, "-c", LAUNCH, str(peak), kind, target, *args], env=env,
                           capture_output=True, text=True, check=False)
    seconds = time.perf_counter() - began
    if child.returncode != 0:
        raise SystemExit(f"{target} {' '.join(args)} failed:\n{child.stderr}")
    return {"seconds": round(seconds, 2), "peak_rss_mib": round(int(peak.read_text()) / 1024),
            "stdout": child.stdout, "load_before": round(load_before, 2), "load_after": round(os.getloadavg()[0], 2)}


def report_values(path: Path) -> dict[str, float]:
    metrics = json.loads(path.read_text())["metrics"]
    out = {key: metrics[key] for key in ("gap", "centroid_cosine", "alignment", "matched_cosine")}
    for key in ("image", "text"):
        out[f"cone.{key}"] = metrics["cone"][key]
        out[f"effective_rank.{key}"] = metrics["effective_rank"][key]
    return out


def largest_difference(a: dict[str, float], b: dict[str, float]) -> float:
    return max(abs(a[k] - b[k]) / max(abs(b[k]), 1e-300) for k in b)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--threads", type=int, default=2, help="OMP / MKL threads of every child")
    parser.add_argument("--peer", nargs=2, metavar=("IMAGE", "TEXT"), help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    if args.peer:  # the peer's own process
        print(json.dumps(peer(*args.peer)))
        return 0
    import torch

    rows = []
    for n in args.n:
        with tempfile.TemporaryDirectory(prefix="embspace-ond-") as tmp:
            folder = Path(tmp)
            image, text = write_cone(folder, n, args.dim)
            measure = ["measure", f"image={image}", f"text={text}", "--metrics", METRICS, "-q"]
            runs = {}
            runs["peer"] = timed_child("script", __file__, ["--peer", str(image), str(text)], args.threads, folder)
            expected = json.loads(runs["peer"].pop("stdout"))
            for name, extra in (("embspace", []), ("embspace --memory 1GB", ["--memory", "1GB"])):
                report = folder / f"{len(runs)}.json"
                runs[name] = timed_child("module", "embspace.cli", [*measure, *extra, "--json", str(report)],
                                         args.threads, folder)
                runs[name].pop("stdout")
                runs[name]["largest_relative_difference_to_peer"] = largest_difference(report_values(report), expected)
            peer_seconds = runs["peer"]["seconds"]
            for run in runs.values():
                run["ratio_to_peer"] = round(run["seconds"] / peer_seconds, 2)
            rows.append({"n": n, "dim": args.dim, "dtype": "float16", "runs": runs})
            print(json.dumps(rows[-1]), flush=True)
    machine = {"cpu": cpu_model(), "cpu_cores": os.cpu_count(), "threads": args.threads,
               "python": platform.python_version(), "torch": torch.__version__, "platform": platform.platform(),
               "created": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}
    lines = [f"# The O(N·D) families (`--metrics {METRICS}`) against a one-pass torch peer", "",
             f"Machine: {machine['cpu']}, {machine['cpu_cores']} cores, {args.threads} threads per process, torch "
             f"{machine['torch']}; {machine['created']}. Each run in its own process (peak RSS: that process's "
             "VmHWM); load average (1 min) before → after each run. float16 `.npy` inputs, D = "
             f"{args.dim}, read warm from the page cache.", "",
             "| N | run | seconds | × peer | peak RSS MiB | load before → after | largest rel. difference to peer |",
             "| ---: | --- | ---: | ---: | ---: | --- | ---: |"]
    for row in rows:
        for name, run in row["runs"].items():
            difference = run.get("largest_relative_difference_to_peer")
            lines.append(f"| {row['n']:,} | {name} | {run['seconds']:.1f} | {run['ratio_to_peer']:.2f} "
                         f"| {run['peak_rss_mib']:,} | {run['load_before']:.1f} → {run['load_after']:.1f} "
                         f"| {'—' if difference is None else f'{difference:.1e}'} |")
    write_results(args.out, "ond_pass_cpu", {"machine": machine, "results": rows}, "\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
