"""Two checkouts of embspace side by side on the same data, runs alternated: exact uniformity of N rows and a full
``measure`` of N pairs (every family), each timed in a fresh process.

    python benchmarks/versions_cpu.py --base /path/to/other/checkout --n 20000

Writes ``results/versions_cpu.{json,md}`` with the machine, its load and the best time of each side.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
from hostinfo import cpu_model, write_results

HERE = Path(__file__).resolve().parent
TIMED = """
import json, sys, time
import numpy as np
import embspace
x, y = np.load(sys.argv[1], mmap_mode="r"), np.load(sys.argv[2], mmap_mode="r")
start = time.perf_counter()
if sys.argv[3] == "uniformity":
    report = embspace.measure(image=np.asarray(x), metrics="uniformity", device="cpu")
else:
    report = embspace.measure(image=np.asarray(x), text=np.asarray(y), device="cpu")
print(json.dumps({"seconds": time.perf_counter() - start, "uniformity": report["uniformity"]}))
"""


def cone_rows(n: int, dim: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    rows = rng.normal(size=(n, dim)).astype(np.float32) + 2.0
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)


def run(checkout: Path, files: tuple[Path, Path], what: str) -> dict:
    env = {**os.environ, "PYTHONPATH": str(checkout)}
    done = subprocess.run([sys.executable, "-c", TIMED, str(files[0]), str(files[1]), what], env=env,
                          capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", type=Path, required=True, help="the other checkout (its repository root)")
    parser.add_argument("--head", type=Path, default=HERE.parent, help="this checkout by default")
    parser.add_argument("--n", type=int, default=20_000)
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--out", type=Path, default=HERE / "results")
    args = parser.parse_args()
    load = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as tmp:
        files = (Path(tmp) / "x.npy", Path(tmp) / "y.npy")
        np.save(files[0], cone_rows(args.n, args.dim, 0))
        np.save(files[1], cone_rows(args.n, args.dim, 1))
        best: dict[str, dict[str, float]] = {}
        values: dict[str, dict[str, object]] = {}
        for _ in range(args.repeats):
            for what in ("uniformity", "measure"):
                for side, checkout in (("base", args.base), ("head", args.head)):  # alternated
                    found = run(checkout, files, what)
                    key = best.setdefault(what, {})
                    key[side] = min(key.get(side, float("inf")), round(found["seconds"], 3))
                    values.setdefault(what, {})[side] = found["uniformity"]
    machine = {"cpu": cpu_model(), "cores": os.cpu_count(), "python": platform.python_version(),
               "load_1min_at_start": round(load, 2)}
    summary = {"n": args.n, "dim": args.dim, "repeats": args.repeats, "seconds_best": best, "uniformity": values,
               "machine": machine}
    lines = [f"# Two checkouts side by side, N = {args.n:,}, D = {args.dim} (cone-shaped float32 rows, CPU)", "",
             f"Machine: {machine['cpu']}, {machine['cores']} cores, Python {machine['python']}; 1-minute load "
             f"{machine['load_1min_at_start']} at the start; best of {args.repeats} alternated runs each.", "",
             "| run | base (s) | head (s) | head / base |", "| --- | --- | --- | --- |"]
    for what, sides in best.items():
        label = "exact uniformity, one modality" if what == "uniformity" else "measure, every family, a pair"
        lines.append(f"| {label} | {sides['base']:.2f} | {sides['head']:.2f} | {sides['head'] / sides['base']:.2f} |")
    write_results(args.out, "versions_cpu", summary, "\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
