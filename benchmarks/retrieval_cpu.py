"""Exact retrieval on the CPU: recall@1/5/10 and hubness (k = 10) both ways, embspace against its peers.

    python benchmarks/retrieval_cpu.py [--n 20000 50000] [--dim 512] [--rounds 2 1] [--methods ...]

Every method runs in this one process on the same paired, L2-normalised float32 data (seeded), the methods
alternated round after round (the order rotated each round), so that a machine whose load changes during the run
slows every method alike. Methods:

- ``embspace``: ``embspace.measure(metrics="retrieval,hubness", estimate="exact")``, from the arrays to the report;
- ``torch``: the plain code a user would write: for each block of 4096 queries, one product against every
  candidate, ``torch.topk`` (k = 10) and the rank of the true partner (entries above it), once per direction;
- ``faiss``: ``IndexFlatIP`` built on each side and searched with the other (k = 10) (``pip install faiss-cpu``);
- ``sklearn``: ``NearestNeighbors(algorithm="brute", metric="cosine")``, k = 10, both ways;
- ``embspace_1thread``: embspace with torch set to one thread; ``embspace_fixed``: with ``EMBSPACE_THREADS=fixed``
  (every step on torch's threads, no thread policy: how the pass ran before it had one);
- ``floor``: the float32 products alone, N² · D multiply-adds tile by tile (4096²) into one preallocated tile
  (``torch.mm(out=)``): what any exact method has to pay on this machine.

Every method's recall@1/5/10 and hubness in both directions are compared with embspace's (recorded: whether they
agree within what one ulp of rounding by a different GEMM can move, and the largest difference). Recorded: seconds
per run, the torch thread count, the machine (cores, CPU) and ``uptime`` before and after each run. Writes
``retrieval_cpu.json`` and ``retrieval_cpu.md``. ``--busy`` starts that many competing busy-loop processes for the
whole run.
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from hostinfo import cpu_model, write_results  # benchmarks/hostinfo.py, beside this script

K = 10
KS = (1, 5, 10)
TILE = 4096
METHODS = ("embspace", "torch", "faiss", "sklearn", "floor", "embspace_1thread", "embspace_fixed")


def make_pairs(n: int, dim: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Paired unit rows in a cone (like CLIP's): y_i is x_i plus noise, so partners rank high but not always first."""
    rng = np.random.default_rng(seed)
    axis = rng.normal(size=dim)
    x = axis / np.linalg.norm(axis) + 1.5 * rng.normal(size=(n, dim)) / np.sqrt(dim)
    y = x + 1.2 * rng.normal(size=(n, dim)) / np.sqrt(dim)
    unit = [(v / np.linalg.norm(v, axis=1, keepdims=True)).astype(np.float32) for v in (x, y)]
    return unit[0], unit[1]


def skewness(counts: np.ndarray) -> float:
    centred = counts.astype(np.float64) - counts.mean()
    std = np.sqrt((centred**2).mean())
    return float((centred**3).mean() / std**3) if std > 0 else 0.0


def summary(ranks_xy, ranks_yx, top_xy, top_yx, n: int) -> dict[str, float]:
    """recall@k from the ranks of the partners (entries above them), hubness from the top-10 tables."""
    out = {}
    for name, ranks in (("image->text", ranks_xy), ("text->image", ranks_yx)):
        for k in KS:
            out[f"recall@{k}.{name}"] = float((np.asarray(ranks) < k).mean())
    for name, top in (("image->text", top_xy), ("text->image", top_yx)):
        out[f"hubness.{name}"] = skewness(np.bincount(np.asarray(top).reshape(-1), minlength=n))
    return out


def ranks_from_top(top: np.ndarray) -> np.ndarray:
    """The partner's rank where it is among the top 10 (its position), K where it is not: enough for recall@≤K."""
    hit = top == np.arange(len(top))[:, None]
    return np.where(hit.any(1), hit.argmax(1), K)


def within_rounding(got: dict[str, float], reference: dict[str, float], n: int) -> bool:
    """Recall within 3 queries of N and hubness within 0.01: a different GEMM rounds the similarities by an ulp
    or so, which can swap two neighbours that differ by less (exact tests of embspace's own values are in tests/)."""
    for key, value in reference.items():
        limit = 3 / n if key.startswith("recall") else 0.01
        if abs(got[key] - value) > limit:
            return False
    return True


def run_embspace(x, y) -> dict[str, float]:
    import embspace

    report = embspace.measure(image=x, text=y, metrics="retrieval,hubness", device="cpu", estimate="exact")
    return {key: float(report[key]) for key in summary(np.zeros(1), np.zeros(1), np.zeros(1, int),
                                                        np.zeros(1, int), 1)}


def run_torch(x, y) -> dict[str, float]:
    import torch

    a, b = torch.from_numpy(x), torch.from_numpy(y)
    found = []
    for queries, items in ((a, b), (b, a)):
        ranks, tops = [], []
        for r0 in range(0, len(queries), TILE):
            sim = queries[r0 : r0 + TILE] @ items.T  # (B, N)
            partner = sim.diagonal(r0)  # (B,) s_ii
            above = (sim > partner[:, None]).sum(1)
            ranks.append(above)
            tops.append(sim.topk(K, dim=1).indices)
        found.append((torch.cat(ranks).numpy(), torch.cat(tops).numpy()))
    return summary(found[0][0], found[1][0], found[0][1], found[1][1], len(x))


def run_faiss(x, y, threads: int) -> dict[str, float]:
    import faiss

    faiss.omp_set_num_threads(threads)
    tops = []
    for queries, items in ((x, y), (y, x)):
        index = faiss.IndexFlatIP(items.shape[1])
        index.add(items)
        tops.append(index.search(queries, K)[1])
    return summary(ranks_from_top(tops[0]), ranks_from_top(tops[1]), tops[0], tops[1], len(x))


def run_sklearn(x, y, threads: int) -> dict[str, float]:
    from sklearn.neighbors import NearestNeighbors

    tops = []
    for queries, items in ((x, y), (y, x)):
        nn = NearestNeighbors(n_neighbors=K, algorithm="brute", metric="cosine", n_jobs=threads).fit(items)
        tops.append(nn.kneighbors(queries, return_distance=False))
    return summary(ranks_from_top(tops[0]), ranks_from_top(tops[1]), tops[0], tops[1], len(x))


def run_floor(x, y) -> None:
    import torch

    a, b = torch.from_numpy(x), torch.from_numpy(y)
    out = torch.empty(TILE * TILE, dtype=torch.float32)
    for r0 in range(0, len(a), TILE):
        rows = a[r0 : r0 + TILE]
        for c0 in range(0, len(b), TILE):
            cols = b[c0 : c0 + TILE]
            torch.mm(rows, cols.T, out=out[: len(rows) * len(cols)].view(len(rows), len(cols)))


def uptime() -> str:
    try:
        return subprocess.run(["uptime"], capture_output=True, text=True, check=False).stdout.strip()
    except OSError:
        return f"load average {os.getloadavg()}"


def measure(n: int, dim: int, rounds: int, methods: list[str], threads: int) -> dict:
    x, y = make_pairs(n, dim)
    run_embspace(x[:64], y[:64])  # imports and first calls, untimed
    runs: dict[str, list[dict]] = {m: [] for m in methods}
    log: list[dict] = []  # every run in the order they ran
    values: dict[str, dict[str, float]] = {}
    for round_number in range(rounds):
        shift = round_number % len(methods)
        for method in methods[shift:] + methods[:shift]:
            before = uptime()
            start = time.perf_counter()
            if method == "embspace":
                got = run_embspace(x, y)
            elif method == "embspace_1thread":
                import torch

                torch.set_num_threads(1)
                try:
                    got = run_embspace(x, y)
                finally:
                    torch.set_num_threads(threads)
            elif method == "embspace_fixed":
                os.environ["EMBSPACE_THREADS"] = "fixed"
                try:
                    got = run_embspace(x, y)
                finally:
                    del os.environ["EMBSPACE_THREADS"]
            elif method == "torch":
                got = run_torch(x, y)
            elif method == "faiss":
                got = run_faiss(x, y, threads)
            elif method == "sklearn":
                got = run_sklearn(x, y, threads)
            else:
                got = run_floor(x, y)
            seconds = time.perf_counter() - start
            record = {"seconds": round(seconds, 2), "uptime_before": before, "uptime_after": uptime()}
            log.append(record)
            runs[method].append(record)
            print(f"N={n} round {round_number + 1} {method}: {seconds:.2f} s | {record['uptime_after']}", flush=True)
            if got is not None:
                values[method] = got
    reference = values.get("embspace")
    agree, differences = {}, {}
    for method, got in values.items():
        differences[method] = max((abs(got[key] - reference[key]) for key in reference), default=0.0)
        agree[method] = within_rounding(got, reference, n)
    return {"n": n, "dim": dim, "runs": runs, "values": reference or next(iter(values.values()), {}),
            "values_agree": agree, "largest_difference": differences, "uptime_first": log[0]["uptime_before"],
            "uptime_last": log[-1]["uptime_after"]}


def markdown(results: list[dict], info: dict) -> str:
    lines = [f"# Exact retrieval on the CPU (recall@1/5/10 + hubness k = {K}, both ways)", "",
             f"{info['cpu']}, {info['cores']} cores, torch {info['torch']} with {info['threads']} threads, "
             f"{info['busy']} competing busy loop(s) started by the script. Seconds per run, runs alternated in "
             "one process; `×floor` is each method's best against the best buffered-product floor. "
             "The machine's load (`uptime`) before the first and after the last run of each N is below.", "",
             "| N | method | runs (s) | best (s) | ×floor |", "| --- | --- | --- | --- | --- |"]
    for result in results:
        floor = min((r["seconds"] for r in result["runs"].get("floor", [])), default=None)
        for method, runs in result["runs"].items():
            best = min(r["seconds"] for r in runs)
            ratio = f"{best / floor:.2f}" if floor else "—"
            lines.append(f"| {result['n']:,} | {method} | {', '.join(str(r['seconds']) for r in runs)} | "
                         f"{best} | {ratio} |")
    lines.append("")
    for result in results:
        lines.append(f"- N = {result['n']:,}: before the first run `{result['uptime_first']}`; after the last "
                     f"`{result['uptime_last']}`; values agree across methods "
                     f"(recall within 3/N, hubness within 0.01): "
                     f"{all(result['values_agree'].values())}; largest difference from embspace: "
                     f"{max(result['largest_difference'].values()):.2g}")
    lines.append("")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, nargs="+", default=[20_000, 50_000])
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--rounds", type=int, nargs="+", default=[2], help="rounds per N (the last one repeats)")
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    parser.add_argument("--busy", type=int, default=0, help="competing busy-loop processes to start")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    parser.add_argument("--name", default="retrieval_cpu")
    args = parser.parse_args()
    import torch

    busy = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(args.busy)]
    try:
        threads = torch.get_num_threads()
        info = {"cpu": cpu_model(), "cores": os.cpu_count(), "platform": platform.platform(),
                "python": platform.python_version(), "torch": torch.__version__, "threads": threads,
                "busy": args.busy, "start": uptime()}
        results = []
        for n, rounds in zip(args.n, args.rounds + [args.rounds[-1]] * len(args.n), strict=False):
            results.append(measure(n, args.dim, rounds, list(args.methods), threads))
            info["end"] = uptime()
            write_results(args.out, args.name, {"machine": info, "results": results}, markdown(results, info))
    finally:
        for process in busy:
            process.kill()


if __name__ == "__main__":
    main()
