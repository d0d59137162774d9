"""`embspace measure` of every family on a machine shared with another process: two threads against one.

    python benchmarks/shared_machine.py [--n 20000] [--rounds 2] [--busy 0 1]

Writes two paired (N, 512) float16 dumps (a cone, y a noisy copy of x) to a scratch folder, then runs the CLI,
``embspace measure image=… text=… --estimate exact``, in a fresh process per run with ``OMP_NUM_THREADS`` 2 or 1,
first on the machine as it is and then with ``--busy`` competing busy-loop processes started for the run. The runs
of one setting are alternated between thread counts (the order rotated each round). Recorded: wall seconds per run,
``uptime`` before and after each, the CPU model and core count, and whether every run's report holds the same
values as the first run: exactly for every count, rank, recall and float32 value; the float64 values from D×D
sums and eigendecompositions (spectrum, CKA, gap anatomy) may move in their last digits, because the BLAS and
LAPACK routines round differently on different thread counts: the largest relative difference is recorded (it must
stay at the level of float64 rounding, ≤ 1e-12). Writes ``shared_machine_cpu.json`` and ``.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from hostinfo import cpu_model, write_results  # benchmarks/hostinfo.py, beside this script

DIM = 512


def make_dumps(n: int, folder: Path, seed: int = 0) -> tuple[Path, Path]:
    rng = np.random.default_rng(seed)
    axis = rng.normal(size=DIM)
    x = axis / np.linalg.norm(axis) + 1.5 * rng.normal(size=(n, DIM)) / np.sqrt(DIM)
    y = x + 1.2 * rng.normal(size=(n, DIM)) / np.sqrt(DIM)
    paths = folder / "image.npy", folder / "text.npy"
    for path, rows in zip(paths, (x, y), strict=True):
        np.save(path, rows.astype(np.float16))
    return paths


def uptime() -> str:
    return subprocess.run(["uptime"], capture_output=True, text=True, check=False).stdout.strip()


def run_measure(image: Path, text: Path, out: Path, threads: int) -> float:
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    command = [sys.executable, "-m", "embspace.cli", "measure", f"image={image}", f"text={text}", "--device", "cpu",
               "--estimate", "exact", "--json", str(out)]
    start = time.perf_counter()
    subprocess.run(command, env=env, check=True, capture_output=True, text=True)
    return time.perf_counter() - start


def numbers(report: Path) -> dict[str, float]:
    """The report's metrics, flattened to ``path → value`` (what must not depend on the thread count)."""
    flat: dict[str, float] = {}

    def walk(value, path: str) -> None:
        if isinstance(value, dict):
            for key, inner in value.items():
                walk(inner, f"{path}.{key}" if path else key)
        else:
            flat[path] = value

    walk(json.loads(report.read_text())["metrics"], "")
    return flat


def largest_relative_difference(got: dict[str, float], reference: dict[str, float]) -> float:
    """max over the metrics of |a − b| / max(|b|, 1e-300); inf where a metric is missing or not a number in one."""
    if got.keys() != reference.keys():
        return float("inf")
    largest = 0.0
    for path, value in got.items():
        other = reference[path]
        if not isinstance(value, int | float) or not isinstance(other, int | float):
            largest = max(largest, 0.0 if value == other else float("inf"))
        elif value != other:
            largest = max(largest, abs(value - other) / max(abs(other), 1e-300))
    return largest


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--busy", type=int, nargs="+", default=[0, 1], help="competing processes per setting")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    args = parser.parse_args()
    results = []
    with tempfile.TemporaryDirectory(prefix="embspace-shared-") as scratch:
        folder = Path(scratch)
        image, text = make_dumps(args.n, folder)
        reference = None
        for busy in args.busy:
            others = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(busy)]
            try:
                runs: dict[int, list[dict]] = {2: [], 1: []}
                for round_number in range(args.rounds):
                    for threads in ((2, 1) if round_number % 2 == 0 else (1, 2)):
                        before = uptime()
                        report = folder / f"report_{busy}_{threads}_{round_number}.json"
                        seconds = run_measure(image, text, report, threads)
                        got = numbers(report)
                        reference = reference or got
                        difference = largest_relative_difference(got, reference)
                        runs[threads].append({"seconds": round(seconds, 2), "uptime_before": before,
                                              "uptime_after": uptime(), "identical": got == reference,
                                              "largest_relative_difference": difference})
                        print(f"busy={busy} threads={threads}: {seconds:.1f} s | {uptime()}", flush=True)
            finally:
                for process in others:
                    process.kill()
            results.append({"busy": busy, "runs": runs})
    info = {"cpu": cpu_model(), "cores": os.cpu_count(), "n": args.n, "dim": DIM}
    lines = [f"# `embspace measure` (every family, exact) at N = {args.n:,}, D = {DIM}: two threads against one", "",
             f"{info['cpu']}, {info['cores']} cores. Each run is a fresh process (`OMP_NUM_THREADS`), runs of a "
             "setting alternated; `busy` competing busy-loop processes ran during the setting's runs.", "",
             "| competing processes | threads | runs (s) | best (s) | values identical to the first run "
             "| largest relative difference |", "| --- | --- | --- | --- | --- | --- |"]
    for result in results:
        for threads, runs in result["runs"].items():
            lines.append(f"| {result['busy']} | {threads} | {', '.join(str(r['seconds']) for r in runs)} | "
                         f"{min(r['seconds'] for r in runs)} | {all(r['identical'] for r in runs)} | "
                         f"{max(r['largest_relative_difference'] for r in runs):.1e} |")
    lines += ["", "The first run had two threads. Where values differ, they are float64 values from D×D sums and "
              "eigendecompositions, which BLAS and LAPACK round differently on another thread count. Load (`uptime`) "
              "around each run is in the JSON file.", ""]
    write_results(args.out, "shared_machine_cpu", {"machine": info, "results": results}, "\n".join(lines))


if __name__ == "__main__":
    main()
