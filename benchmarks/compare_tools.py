"""embspace against what users pick instead, in one run on the same data (CPU).

    python benchmarks/compare_tools.py [--n 20000] [--dim 512] [--out benchmarks/results]

Uniformity U = log mean_{i<j} exp(−t‖x̂_i − x̂_j‖²) (t = 2) of cone-shaped, L2-normalised float32 rows (seeded):

- ``embspace exact``: ``embspace.measure(image=x, metrics="uniformity", estimate="exact")``;
- ``embspace sampled``: the same with ``estimate="sampled"`` (``--pairs`` random pairs, 95 % interval);
- ``torch.pdist``: Wang & Isola's ``uniform_loss``, ``pdist(x).pow(2).mul(-t).exp().mean().log()``;
- ``torch chunked``: row chunks of ``x @ x.T`` with the diagonal masked, ``torch.logsumexp`` per chunk (every
  ordered pair, as such code is usually written);
- ``pykeops``: a ``LazyTensor`` sum reduction (on the first ``--keops-n`` rows: it is far slower on the CPU; its
  one-off compilation is timed apart);
- ``gemm``: the float32 matrix products of the upper-triangle tiles alone, written into one preallocated tile
  (``torch.mm(out=)``, as embspace writes its own), no uniformity: the floor.

k nearest neighbours, top-10 by cosine of every row of X among the rows of Y (Y a noisy, shifted copy of X):
``faiss`` (``IndexFlatIP``, exact) against embspace's tiled ``TopK`` reduction (which also gives every column's
top-10 in the same pass); agreement = mean fraction of the float64 top-10 found, and the hubness of each.

``sampled at scale`` measures a larger pair (``--scale-n`` rows per modality) with every family estimated
(``--scale-pairs`` pairs, ``--scale-queries`` queries) and hubness left out (exact hubness is an N² pass).

Every method runs in its own subprocess (peak RSS is its own; ``extra MiB`` is the peak above the RSS it had before
starting, with its data built). Errors are |value − float64 reference| (numpy float64 in row tiles, independent of
embspace). Writes ``compare_tools_cpu.json`` and ``compare_tools_cpu.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from hostinfo import cpu_model, write_results  # benchmarks/hostinfo.py, beside this script

T = 2.0
K = 10
UNIFORMITY = ("float64", "embspace exact", "embspace sampled", "torch.pdist", "torch chunked", "pykeops", "gemm")
KNN = ("float64 knn", "faiss", "embspace topk")
METHODS = (*UNIFORMITY, *KNN, "sampled at scale")


def make_pair(n: int, dim: int, seed: int = 0):
    """Cone-shaped unit rows X (like CLIP) and a noisy copy Y shifted along one direction (a modality gap)."""
    import numpy as np

    rng = np.random.default_rng(seed)
    axis = rng.normal(size=dim)
    x = axis / np.linalg.norm(axis) + 1.5 * rng.normal(size=(n, dim)) / np.sqrt(dim)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    shift = rng.normal(size=dim)
    y = x + 0.8 * rng.normal(size=(n, dim)) / np.sqrt(dim) + 0.6 * shift / np.linalg.norm(shift)
    y /= np.linalg.norm(y, axis=1, keepdims=True)
    return x.astype(np.float32), y.astype(np.float32)


def rss_mib() -> float:
    with open("/proc/self/status") as handle:
        for line in handle:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def float64_uniformity(x, tile: int = 2048) -> float:
    """log mean_{i<j} exp(2t(x_i·x_j − 1)) in numpy float64, upper-triangle row tiles."""
    import numpy as np

    x = x.astype(np.float64)
    n = len(x)
    total = 0.0
    for r0 in range(0, n, tile):
        s = x[r0 : r0 + tile] @ x[r0:].T  # (R, N − r0)
        e = np.exp(2 * T * (s - 1))
        total += np.triu(e[:, : len(e)], 1).sum() + e[:, len(e) :].sum()
    return float(np.log(total / (n * (n - 1) / 2)))


def float64_topk(x, y, tile: int = 2048):
    import numpy as np

    x, y = x.astype(np.float64), y.astype(np.float64)
    out = np.empty((len(x), K), dtype=np.int64)
    for r0 in range(0, len(x), tile):
        s = x[r0 : r0 + tile] @ y.T
        part = np.argpartition(-s, K, axis=1)[:, :K]
        order = np.argsort(-np.take_along_axis(s, part, 1), axis=1)
        out[r0 : r0 + tile] = np.take_along_axis(part, order, 1)
    return out


def hubness(index, n_items: int) -> float:
    import numpy as np
    from scipy.stats import skew

    return float(skew(np.bincount(index.ravel(), minlength=n_items).astype(np.float64)))


def run_method(method: str, args: argparse.Namespace) -> dict[str, object]:
    """Build the data, then time one method in this process; returns seconds, value, peak RSS and extras."""
    import torch

    n = args.scale_n if method == "sampled at scale" else args.n
    x_np, y_np = make_pair(n, args.dim)
    if method == "pykeops":
        x_np, y_np = x_np[: args.keops_n], y_np[: args.keops_n]
    x, y = torch.from_numpy(x_np), torch.from_numpy(y_np)
    extra: dict[str, object] = {}
    if method == "pykeops":  # compile the kernel for this D once, on a few rows, outside the timing
        start = time.perf_counter()
        keops_uniformity(x[:64])
        extra["compile_seconds"] = time.perf_counter() - start
    before = rss_mib()
    best, value = float("inf"), float("nan")
    repeats = args.repeats if method in ("embspace exact", "torch chunked", "gemm", "faiss", "embspace topk") else 1
    for _ in range(repeats):
        start = time.perf_counter()
        value, extra = _run_once(method, x, y, x_np, y_np, args, extra)
        best = min(best, time.perf_counter() - start)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"seconds": best, "value": value, "peak_rss_mib": peak, "extra_mib": peak - before, "n": len(x_np),
            "threads": torch.get_num_threads(), **extra}


def _run_once(method, x, y, x_np, y_np, args, extra):
    import numpy as np
    import torch

    if method == "float64":
        first = float64_uniformity(x_np[: args.keops_n])
        return float64_uniformity(x_np), {"value_first_keops_n": first}
    if method == "embspace exact":
        import embspace

        report = embspace.measure(image=x, metrics="uniformity", estimate="exact", device="cpu")
        return report["uniformity.image"], {}
    if method == "embspace sampled":
        import embspace

        report = embspace.measure(image=x, metrics="uniformity", estimate="sampled", pairs=args.pairs, device="cpu")
        return report["uniformity.image"], {"ci": report.uncertainty["uniformity.image"]["ci"], "pairs": args.pairs}
    if method == "torch.pdist":
        return float(torch.pdist(x, p=2).pow(2).mul(-T).exp().mean().log()), {}
    if method == "torch chunked":
        n, parts = len(x), []
        for r0 in range(0, n, 4096):
            e = (x[r0 : r0 + 4096] @ x.T).sub_(1).mul_(2 * T)  # (R, N)
            e[torch.arange(len(e)), torch.arange(r0, r0 + len(e))] = -float("inf")
            parts.append(torch.logsumexp(e, 1))
        return float(torch.logsumexp(torch.cat(parts).double(), 0) - np.log(n * (n - 1))), {}
    if method == "pykeops":
        return keops_uniformity(x), extra
    if method == "gemm":
        from embspace.kernels.pairwise import DEFAULT_TILE

        out = torch.empty(DEFAULT_TILE * DEFAULT_TILE, dtype=torch.float32)  # one buffered tile, as embspace
        for r0 in range(0, len(x), DEFAULT_TILE):
            rows = x[r0 : r0 + DEFAULT_TILE]
            for c0 in range(r0, len(x), DEFAULT_TILE):
                cols = x[c0 : c0 + DEFAULT_TILE]
                torch.mm(rows, cols.T, out=out[: len(rows) * len(cols)].view(len(rows), len(cols)))
        return float("nan"), {}
    if method == "float64 knn":
        index = float64_topk(x_np, y_np)
        np.save(Path(args.workdir) / "topk64.npy", index)
        return hubness(index, len(y_np)), {}
    if method == "faiss":
        import faiss

        faiss.omp_set_num_threads(torch.get_num_threads())
        flat = faiss.IndexFlatIP(x_np.shape[1])
        flat.add(y_np)
        _, index = flat.search(x_np, K)
        np.save(Path(args.workdir) / "topk_faiss.npy", index)
        return hubness(index, len(y_np)), {"faiss": faiss.__version__}
    if method == "embspace topk":
        from embspace.kernels.engine import stream_pairs
        from embspace.kernels.pairwise import TopK
        from embspace.kernels.rows import prepare_rows

        cpu = torch.device("cpu")
        rx, ry = prepare_rows(x, cpu, torch.float32), prepare_rows(y, cpu, torch.float32)
        top = TopK(len(x), len(y), K, cpu)
        stream_pairs(rx, ry, [top])
        index = top.row_index.numpy()
        np.save(Path(args.workdir) / "topk_embspace.npy", index)
        return hubness(index, len(y_np)), {"both_directions": True}
    if method == "sampled at scale":
        import embspace

        report = embspace.measure(image=x, text=y, estimate="sampled", pairs=args.scale_pairs,
                                  queries=args.scale_queries, device="cpu",
                                  metrics="gap,alignment,cone,rmg,uniformity,spectrum,retrieval,separability,"
                                          "histograms")
        sampled = {p: u for p, u in report.uncertainty.items() if u["method"] == "sampled"}
        return report["uniformity.joint"], {"timings": report.timings, "sampled": sampled,
                                            "pairs": args.scale_pairs, "queries": args.scale_queries}
    raise ValueError(method)


def keops_uniformity(rows) -> float:
    """U through a pykeops LazyTensor reduction Σ_j exp(−t‖x_i − x_j‖²), the diagonal (N ones) taken out."""
    import torch
    from pykeops.torch import LazyTensor

    xi, xj = LazyTensor(rows[:, None, :]), LazyTensor(rows[None, :, :])
    total = (-T * ((xi - xj) ** 2).sum(-1)).exp().sum(1).double().sum() - len(rows)
    return float(torch.log(total / (len(rows) * (len(rows) - 1))))


def machine() -> dict[str, object]:
    import torch

    cpu = cpu_model()
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return {"platform": platform.platform(), "cpu": cpu, "nproc": os.cpu_count(), "memory_gib": round(memory, 1),
            "python": platform.python_version(), "torch": torch.__version__, "threads": torch.get_num_threads()}


def child(method: str, args: argparse.Namespace) -> dict[str, object]:
    command = [sys.executable, __file__, "--method", method, "--workdir", args.workdir]
    for name in ("n", "dim", "repeats", "pairs", "keops_n", "scale_n", "scale_pairs", "scale_queries"):
        command += [f"--{name.replace('_', '-')}", str(getattr(args, name))]
    done = subprocess.run(command, capture_output=True, text=True, timeout=args.timeout)
    if done.returncode != 0:
        lines = (done.stderr.strip() or done.stdout.strip() or "no output").splitlines()
        return {"failed": lines[-1][:300]}
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=20_000)
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--pairs", type=int, default=1_000_000, help="pairs of embspace sampled")
    parser.add_argument("--keops-n", type=int, default=5_000, help="rows pykeops runs on")
    parser.add_argument("--scale-n", type=int, default=200_000)
    parser.add_argument("--scale-pairs", type=int, default=5_000_000)
    parser.add_argument("--scale-queries", type=int, default=5_000)
    parser.add_argument("--timeout", type=int, default=900, help="seconds per method")
    parser.add_argument("--only", help="comma-separated subset of the methods")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    parser.add_argument("--method", choices=METHODS, help=argparse.SUPPRESS)
    parser.add_argument("--workdir", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.method:  # child process
        print(json.dumps(run_method(args.method, args)))
        return

    chosen = [m for m in METHODS if args.only is None or m in args.only.split(",")]
    load_before = round(os.getloadavg()[0], 2)
    results: dict[str, dict[str, object]] = {}
    with tempfile.TemporaryDirectory() as workdir:
        args.workdir = workdir
        for method in chosen:
            if method == "pykeops":
                try:
                    import pykeops  # noqa: F401
                except ImportError as exc:
                    results[method] = {"failed": f"not installable here: {exc}"}
                    continue
            if method == "faiss":
                try:
                    import faiss  # noqa: F401
                except ImportError as exc:
                    results[method] = {"failed": f"not installable here: {exc}"}
                    continue
            results[method] = child(method, args)
            shown = results[method].get("failed") or f"{results[method]['seconds']:.2f} s"
            print(f"{method:>17}: {shown}", flush=True)
        errors(results, Path(workdir))
    summary = {"n": args.n, "dim": args.dim, "t": T, "k": K, "machine": machine(), "date": time.strftime("%Y-%m-%d"),
               "load_average_before": load_before, "load_average_after": round(os.getloadavg()[0], 2),
               "results": results}
    write_results(args.out, "compare_tools_cpu", summary, markdown(summary, args))
    print(f"written {args.out / 'compare_tools_cpu.md'}")


def errors(results: dict[str, dict[str, object]], workdir: Path) -> None:
    """|value − float64| for uniformity; top-10 agreement and hubness error for k-NN."""
    import numpy as np

    reference = results.get("float64", {})
    for method in UNIFORMITY[1:]:
        r = results.get(method, {})
        if "value" not in r or "value" not in reference or r["value"] != r["value"]:
            continue
        exact = reference["value_first_keops_n"] if method == "pykeops" else reference["value"]
        r["abs_error"] = abs(r["value"] - exact)
        if "ci" in r:
            r["ci_covers_exact"] = r["ci"][0] <= exact <= r["ci"][1]
    if not (workdir / "topk64.npy").exists():
        return
    exact_index = np.load(workdir / "topk64.npy")
    for method, name in (("faiss", "topk_faiss.npy"), ("embspace topk", "topk_embspace.npy")):
        if method in results and (workdir / name).exists():
            found = np.load(workdir / name)
            agree = np.mean([len(set(a) & set(b)) / K for a, b in zip(exact_index, found, strict=True)])
            results[method]["top10_agreement"] = float(agree)
            results[method]["abs_error"] = abs(results[method]["value"] - results["float64 knn"]["value"])


def markdown(summary: dict[str, object], args: argparse.Namespace) -> str:
    m, results = summary["machine"], summary["results"]
    lines = [f"# embspace against other tools, CPU: N = {args.n:,}, D = {args.dim}, t = {T:g}, float32", "",
             f"Machine: {m['cpu']}, {m['nproc']} cores ({m['threads']} torch threads), {m['memory_gib']} GiB, "
             f"{m['platform']}; Python {m['python']}, torch {m['torch']}; {summary['date']}. 1-minute load average "
             f"{summary['load_average_before']} before and {summary['load_average_after']} after the run (other "
             "work on the machine slows every method; compare rows of one run, not runs).", "",
             "## Exact uniformity", "",
             "| method | rows | seconds | peak RSS MiB | extra MiB | abs. error vs float64 | note |",
             "| --- | --- | --- | --- | --- | --- | --- |"]
    for method in UNIFORMITY:
        lines.append(_row(method, results.get(method)))
    ref = results.get("float64", {})
    if "seconds" in results.get("embspace exact", {}):
        mine = results["embspace exact"]["seconds"]
        notes = []
        for other in ("torch.pdist", "torch chunked"):
            if "seconds" in results.get(other, {}):
                notes.append(f"{results[other]['seconds'] / mine:.1f}× the speed of `{other}`")
        if "seconds" in results.get("gemm", {}):
            notes.append(f"{mine / results['gemm']['seconds']:.2f}× the time of the float32 products alone (`gemm`)")
        lines += ["", f"embspace exact runs at {', '.join(notes)}. Reference U = {ref.get('value', float('nan')):.6f}."]
    lines += ["", f"## k-NN, top-{K} by cosine (X → Y)", "",
              "| method | rows | seconds | peak RSS MiB | extra MiB | top-10 agreement | abs. hubness error | note |",
              "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for method in KNN:
        r = results.get(method)
        if r is None:
            continue
        if "failed" in r:
            lines.append(f"| {method} | | | | | | | {r['failed']} |")
            continue
        note = "also every column's top-10, same pass" if r.get("both_directions") else (
            f"faiss {r['faiss']}, IndexFlatIP" if "faiss" in r else "numpy float64 tiles; hubness "
            f"{r['value']:.4f}")
        lines.append(f"| {method} | {r['n']:,} | {r['seconds']:.2f} | {r['peak_rss_mib']:.0f} | {r['extra_mib']:.0f} | "
                     f"{r.get('top10_agreement', 1.0):.5f} | {r.get('abs_error', 0.0):.1e} | {note} |")
    scale = results.get("sampled at scale")
    if scale:
        lines += ["", "## Every family sampled at scale", ""]
        if "failed" in scale:
            lines.append(f"failed: {scale['failed']}")
        else:
            timings = ", ".join(f"{k} {v:.1f} s" for k, v in scale["timings"].items())
            lines += [f"N = {scale['n']:,} pairs of D = {args.dim} rows, {scale['pairs']:,} pairs per uniformity "
                      f"variant and histogram, {scale['queries']:,} queries per recall direction; hubness left out "
                      f"(exact only). Total {scale['seconds']:.1f} s, peak RSS {scale['peak_rss_mib']:.0f} MiB "
                      f"({timings}).", "", "| number | 95 % interval | samples |", "| --- | --- | --- |"]
            lines += [f"| {path} | [{u['ci'][0]:.4f}, {u['ci'][1]:.4f}] | {u['samples']:,} |"
                      for path, u in scale["sampled"].items()]
    lines += ["", "Extra MiB: peak RSS above the RSS the process had with its data built (imports and data "
              "excluded). `float64` rows are the references (numpy float64 in row tiles).", ""]
    return "\n".join(lines)


def _row(method: str, r: dict[str, object] | None) -> str:
    if r is None:
        return f"| {method} | | | | | | not run |"
    if "failed" in r:
        return f"| {method} | | | | | | {r['failed']} |"
    note = ""
    if "ci" in r:
        note = (f"{r['pairs']:,} pairs, 95 % interval [{r['ci'][0]:.4f}, {r['ci'][1]:.4f}] "
                f"{'covers' if r.get('ci_covers_exact') else 'misses'} the exact value")
    elif "compile_seconds" in r:
        note = f"first {r['n']:,} rows only; compilation {r['compile_seconds']:.0f} s not included"
    elif method == "gemm":
        note = "products only, no uniformity: the floor"
    elif method == "float64":
        note = "reference"
    error = f"{r['abs_error']:.1e}" if "abs_error" in r else "—"
    return (f"| {method} | {r['n']:,} | {r['seconds']:.2f} | {r['peak_rss_mib']:.0f} | {r['extra_mib']:.0f} | "
            f"{error} | {note} |")


if __name__ == "__main__":
    main()
