"""The sharded engine on the CPU: one process against K gloo ranks on the same data and the same cores.

    python benchmarks/distributed_cpu.py [--n 12000] [--dim 256] [--ranks 1,2] [--threads 0] [--out benchmarks/results]

Each configuration runs in fresh processes (K ranks started with torchrun's environment, ``OMP_NUM_THREADS`` =
``--threads``, or cores / K with 0 so that every configuration uses the same cores) on cone-shaped paired float32
data (seeded). The time is that
of each family inside ``embspace.measure`` (``report.timings``, rank 0), process start-up excluded; the values are
checked against the single-process report. On one machine K ranks do the same arithmetic as one process with K
threads: the figures show what the ring costs (messages, merges, smaller matrix products) or saves (no threads waiting
on each other), not the speed-up of K machines. ``--threads 1`` gives each rank one thread: K ranks against 1.
Writes ``distributed_cpu.json`` and ``distributed_cpu.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

METRICS = "gap,uniformity,spectrum,retrieval,hubness"

WORKER = """
import json, sys, time
import numpy as np
import embspace
from embspace.distributed import is_main

x, y = np.load(sys.argv[1]), np.load(sys.argv[2])
start = time.perf_counter()
report = embspace.measure(image=x, text=y, metrics=sys.argv[3], precision="fp32")
wall = time.perf_counter() - start
if is_main():
    json.dump({"wall": wall, "timings": report.timings, "metrics": report.metrics}, open(sys.argv[4], "w"))
"""


def make_pair(n: int, dim: int, seed: int = 0):
    import numpy as np

    rng = np.random.default_rng(seed)
    axis = rng.normal(size=dim)
    x = axis / np.linalg.norm(axis) + 1.5 * rng.normal(size=(n, dim)) / np.sqrt(dim)  # a cone, like CLIP
    y = -axis / np.linalg.norm(axis) + x + 1.5 * rng.normal(size=(n, dim)) / np.sqrt(dim)  # its partner cone
    return x.astype(np.float32), y.astype(np.float32)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def run(ranks: int, files: list[str], threads: int, root: Path) -> dict:
    result = root / f"ranks{ranks}.json"
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    env.pop("WORLD_SIZE", None)
    port = str(free_port())
    procs = []
    for rank in range(ranks):
        rank_env = env if ranks == 1 else {**env, "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": port,
                                           "RANK": str(rank), "LOCAL_RANK": str(rank), "WORLD_SIZE": str(ranks)}
        procs.append(subprocess.Popen([sys.executable, str(root / "worker.py"), *files, METRICS, str(result)],
                                      env=rank_env))
    if any(p.wait() != 0 for p in procs):
        raise SystemExit(f"{ranks} ranks failed")
    return json.loads(result.read_text())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=12_000)
    parser.add_argument("--dim", type=int, default=256)
    parser.add_argument("--ranks", default="1,2")
    parser.add_argument("--threads", type=int, default=0, help="threads per rank (0: cores / ranks)")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    args = parser.parse_args()
    import numpy as np
    import torch

    from embspace.report import flatten

    cores = os.cpu_count() or 1
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        (root / "worker.py").write_text(WORKER)
        x, y = make_pair(args.n, args.dim)
        files = [str(root / "x.npy"), str(root / "y.npy")]
        np.save(files[0], x)
        np.save(files[1], y)
        ranks = [int(v) for v in args.ranks.split(",")]
        threads = {k: args.threads or max(1, cores // k) for k in ranks}
        runs = {k: run(k, files, threads[k], root) for k in ranks}
    base = flatten(runs[min(runs)]["metrics"])
    for found in runs.values():
        got = flatten(found["metrics"])
        found["max_abs_difference"] = max(abs(got[k] - base[k]) for k in base)
    machine = f"{platform.processor() or platform.machine()}, {cores} cores, Python {platform.python_version()}"
    record = {"n": args.n, "dim": args.dim, "metrics": METRICS, "precision": "fp32", "machine": machine,
              "torch": torch.__version__, "load_average": os.getloadavg(),
              "results": {str(k): {"threads": threads[k], "wall": v["wall"], "timings": v["timings"],
                                   "max_abs_difference": v["max_abs_difference"]} for k, v in runs.items()}}
    args.out.mkdir(parents=True, exist_ok=True)
    suffix = f"_threads{args.threads}" if args.threads else ""
    (args.out / f"distributed_cpu{suffix}.json").write_text(json.dumps(record, indent=2) + "\n")
    families = list(next(iter(runs.values()))["timings"])
    lines = [f"# Sharded measure on the CPU, N = {args.n:,} pairs, D = {args.dim}, fp32 tiles, metrics {METRICS}", "",
             f"Machine: {record['machine']}; torch {record['torch']}; load average at the end "
             f"{', '.join(f'{v:.1f}' for v in record['load_average'])} (a shared machine).", "",
             "| ranks | threads per rank | " + " | ".join(families) + " | measure (s) | max abs. diff. vs 1 rank |",
             "| --- | --- | " + " | ".join("---" for _ in families) + " | --- | --- |"]
    for k, v in runs.items():
        lines.append(f"| {k} | {threads[k]} | " + " | ".join(f"{v['timings'].get(f, 0):.2f}" for f in families)
                     + f" | {v['wall']:.2f} | {v['max_abs_difference']:.1e} |")
    (args.out / f"distributed_cpu{suffix}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
