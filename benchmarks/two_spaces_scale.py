"""Streamed linear CKA and mutual-kNN between two spaces at scale, on the CPU: time, peak RSS, machine load.

Two synthetic cone-shaped float16 dumps of N rows (D = 512; space B is a noisy rotation of space A) are written as
.npy files and read memory-mapped. Each N runs in a fresh subprocess, so that its peak RSS (``ru_maxrss``) is its
own: the CKA pass (one O(N·D²) float64 pass of D×D sums) and the mutual-kNN (one tiled self pass per space into a
top-k, O(N·k) memory) are timed separately. ``uptime``'s load average is recorded before and after: the machine is
shared, and the times are only as good as the cores that were free.

    python benchmarks/two_spaces_scale.py --sizes 20000,50000,200000 --out benchmarks/results
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from hostinfo import cpu_model, write_results

DIM = 512


def make_dumps(n: int, folder: Path, seed: int = 0) -> tuple[Path, Path]:
    """Two (n, DIM) float16 .npy files written 50,000 rows at a time (a cone: a shared offset plus noise)."""
    rng = np.random.default_rng(seed)
    offset = rng.normal(size=DIM)
    rotation = np.linalg.qr(rng.normal(size=(DIM, DIM)))[0]
    paths = folder / f"a_{n}.npy", folder / f"b_{n}.npy"
    outs = [np.lib.format.open_memmap(p, mode="w+", dtype=np.float16, shape=(n, DIM)) for p in paths]
    for start in range(0, n, 50_000):
        stop = min(start + 50_000, n)
        a = rng.normal(size=(stop - start, DIM)) + 0.8 * offset
        outs[0][start:stop] = a
        outs[1][start:stop] = a @ rotation + 0.7 * rng.normal(size=a.shape)
    for out in outs:
        out.flush()
    return paths


def one(n: int, folder: Path, knn: bool) -> dict:
    """Run in a subprocess: CKA and (optionally) mutual-kNN for one N."""
    import torch

    import embspace
    from embspace.spaces import cka_from_sums, neighbours_of, overlap, stream_sums

    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "2")))
    pa, pb = make_dumps(n, folder)
    data = embspace.load(f"a={pa}", f"b={pb}")
    start = time.perf_counter()
    sums, _, _ = stream_sums(data["a"], data["b"])
    cka = cka_from_sums(sums)
    out = {"n": n, "dim": DIM, "cka_seconds": round(time.perf_counter() - start, 2), "cka": cka}
    out["rss_after_cka_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024
    if knn:
        start = time.perf_counter()
        knn_a, knn_b = neighbours_of(data["a"], 10), neighbours_of(data["b"], 10)
        out["mutual_knn"] = float(overlap(knn_a, knn_b).mean())
        out["mutual_knn_seconds"] = round(time.perf_counter() - start, 2)
    out["peak_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024
    out["input_mib_per_space"] = round(n * DIM * 2 / 2**20, 1)
    for p in (pa, pb):
        p.unlink()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="20000,50000,200000")
    parser.add_argument("--no-knn-above", type=int, default=10**9, help="skip mutual-kNN above this N")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    parser.add_argument("--scratch", type=Path, default=Path("/tmp"))
    parser.add_argument("--one", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(one(args.one, args.scratch, args.one <= args.no_knn_above)))
        return
    rows = []
    for n in (int(s) for s in args.sizes.split(",")):
        load_before = os.getloadavg()
        done = subprocess.run([sys.executable, __file__, "--one", str(n), "--scratch", str(args.scratch),
                               "--no-knn-above", str(args.no_knn_above)], capture_output=True, text=True, check=True)
        row = json.loads(done.stdout.strip().splitlines()[-1])
        row["load_before"], row["load_after"] = [round(x, 2) for x in load_before], [round(x, 2) for x in
                                                                                      os.getloadavg()]
        rows.append(row)
        print(json.dumps(row), flush=True)
        summary = {"cpu": cpu_model(), "cores": os.cpu_count(), "threads": os.environ.get("OMP_NUM_THREADS", "2"),
                   "shared_machine": True, "rows": rows}
        lines = ["| N | D | CKA pass (s) | mutual-kNN, two self passes (s) | peak RSS (MiB) | input per space (MiB) "
                 "| load before → after |", "|---|---|---|---|---|---|---|"]
        for r in rows:
            lines.append(f"| {r['n']:,} | {r['dim']} | {r['cka_seconds']} | {r.get('mutual_knn_seconds', '—')} | "
                         f"{r['peak_rss_mib']} | {r['input_mib_per_space']} | {r['load_before'][0]} → "
                         f"{r['load_after'][0]} |")
        note = (f"\n{summary['cpu']}, {summary['cores']} cores shared with other work (load average as shown), "
                f"{summary['threads']} torch threads. Inputs memory-mapped float16 .npy.\n")
        write_results(args.out, "two_spaces_scale", summary, "\n".join(lines) + "\n" + note)


if __name__ == "__main__":
    main()
