"""Fused Triton kernels vs the torch path, torch.pdist and chunked matmul + logsumexp, on one CUDA GPU.

    python benchmarks/gpu_kernels.py [--n 100000 1000000] [--dim 512] [--repeats 3] [--out benchmarks/results]

Exact uniformity (t = 2) of cone-shaped, L2-normalised rows, and recall@1,5,10 + hubness (k = 10) both ways for
a paired copy. Every method runs in a fresh subprocess (a CUDA error or an out-of-memory in one cannot spoil the
next) on the same seeded data, generated on the GPU. Timed: ``stream_pairs`` (or the baseline) alone, rows already
on the device, after one warm-up call that compiles the kernels; best and median of ``--repeats``.

Methods (``--methods`` picks some):

- ``fused-fp16`` / ``fused-bf16`` / ``fused-fp32`` / ``fused-tf32``: ``stream_pairs(backend="triton")`` on rows
  stored in that precision (float32 tiles, float64 sums);
- ``torch``: ``stream_pairs(backend="torch")`` on fp16 rows (float32 tiles through cuBLAS);
- ``chunked-bf16``: matmul + logsumexp over upper-triangle 8192² tiles in PyTorch, bf16 (METHODS.md's baseline);
- ``pdist``: ``torch.pdist`` as in Wang & Isola's ``uniform_loss`` (fails or is wrong past ~65,536 rows on CUDA);
- ``gemm-fp16``: the fp16 matrix products of the upper-triangle tiles alone, no reduction: a measured floor;
- ``retrieval-fused`` / ``retrieval-torch``: recall and hubness through ``retrieval_metrics`` (fp16 rows).

Error is against float64 (the torch path on float64 rows): on all N rows up to ``--exact-max-n``, else on the
first ``--subset`` rows, where the method is run again on the same subset. Writes ``gpu_kernels.json`` and
``gpu_kernels.md`` with the machine. ``--smoke`` runs every code path on the CPU at a tiny N (fused methods under
Triton's interpreter) to check the script itself; its figures mean nothing and it refuses to write them into
``benchmarks/results``.
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

T = 2.0
K = 10
UNIFORMITY_METHODS = ("fused-fp16", "fused-bf16", "fused-fp32", "fused-tf32", "torch", "chunked-bf16", "pdist",
                      "gemm-fp16")
RETRIEVAL_METHODS = ("retrieval-fused", "retrieval-torch")
METHODS = UNIFORMITY_METHODS + RETRIEVAL_METHODS
RESULTS = Path(__file__).parent / "results"


def make_rows(n: int, dim: int, device, seed: int = 0):
    """(N, D) float32 unit rows in a cone (like CLIP embeddings) and a paired, noisier copy, built on the device."""
    import torch

    gen = torch.Generator(device=device).manual_seed(seed)
    axis = torch.randn(dim, generator=gen, device=device)
    x = axis / axis.norm() + 1.5 * torch.randn(n, dim, generator=gen, device=device) / dim**0.5
    x /= x.norm(dim=1, keepdim=True)
    y = x + 3.0 * torch.randn(n, dim, generator=gen, device=device) / dim**0.5
    y /= y.norm(dim=1, keepdim=True)
    return x, y


def uniformity_call(method: str, x, t: float = T):
    """A zero-argument function computing U(X) = log mean_{i<j} exp(−t‖x̂_i − x̂_j‖²) by ``method``."""
    import math

    import torch

    from embspace.kernels.backend import matmul_precision
    from embspace.kernels.engine import stream_pairs
    from embspace.kernels.pairwise import ExpSum
    from embspace.kernels.rows import ResidentRows

    n = x.shape[0]
    pairs = n * (n - 1) // 2
    if method.startswith("fused-") or method in ("torch", "fp64"):
        precision = {"torch": "fp16", "fp64": "fp64"}.get(method, method.removeprefix("fused-"))
        dtype = {"fp16": torch.float16, "bf16": torch.bfloat16, "fp32": torch.float32, "tf32": torch.float32,
                 "fp64": torch.float64}[precision]
        rows = ResidentRows("x", n, x.shape[1], x.device, dtype, data=x.to(dtype))
        backend = "triton" if method.startswith("fused-") else "torch"

        def run() -> float:
            acc = ExpSum(t, symmetric=True, exclude_diagonal=True)
            with matmul_precision(precision):
                stream_pairs(rows, None, [acc], backend=backend)
            return acc.log_sum() - math.log(pairs)

        return run
    if method == "chunked-bf16":
        xb = x.to(torch.bfloat16)

        def run() -> float:
            chunk, parts = 8192, []
            for r0 in range(0, n, chunk):
                for c0 in range(r0, n, chunk):
                    exponent = (xb[r0 : r0 + chunk] @ xb[c0 : c0 + chunk].T).float().sub_(1).mul_(2 * t)  # (R, C)
                    if c0 == r0:
                        exponent = exponent[torch.triu(torch.ones_like(exponent, dtype=torch.bool), diagonal=1)]
                    parts.append(torch.logsumexp(exponent.flatten(), 0).double())
            return float(torch.logsumexp(torch.stack(parts), 0)) - math.log(pairs)

        return run
    if method == "pdist":
        xf = x.float()
        return lambda: float(torch.pdist(xf, p=2).pow(2).mul(-t).exp().mean().log())
    if method == "gemm-fp16":
        xh = x.half()

        def run() -> float:
            chunk = 8192
            for r0 in range(0, n, chunk):
                for c0 in range(r0, n, chunk):
                    xh[r0 : r0 + chunk] @ xh[c0 : c0 + chunk].T
            return float("nan")

        return run
    raise ValueError(method)


def retrieval_call(method: str, x, y):
    """A zero-argument function giving recall@1,5,10 and hubness both ways, fused or on the torch path."""
    import torch

    from embspace.kernels.rows import ResidentRows
    from embspace.metrics import retrieval

    n, dim = x.shape
    dtype = torch.float64 if method == "fp64" else torch.float16
    rx = ResidentRows("x", n, dim, x.device, dtype, data=x.to(dtype))
    ry = ResidentRows("y", n, dim, y.device, dtype, data=y.to(dtype))
    backend = "triton" if method == "retrieval-fused" else "torch"

    def run() -> dict[str, float]:
        previous = os.environ.get("EMBSPACE_BACKEND")
        os.environ["EMBSPACE_BACKEND"] = backend
        try:
            found = retrieval.retrieval_metrics(rx, ry, ks=(1, 5, 10), hubness_k=K)
        finally:
            if previous is None:
                del os.environ["EMBSPACE_BACKEND"]
            else:
                os.environ["EMBSPACE_BACKEND"] = previous
        values = {f"recall@{k}.x->y": v for k, v in found["recall_x->y"].items()}
        values.update({f"recall@{k}.y->x": v for k, v in found["recall_y->x"].items()})
        values.update({"hubness.x->y": found["hubness_x->y"], "hubness.y->x": found["hubness_y->x"]})
        return values

    return run


def timed(run, repeats: int, device) -> dict[str, object]:
    import torch

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    sync()
    start = time.perf_counter()
    value = run()  # warm-up: compiles the kernels
    sync()
    first = time.perf_counter() - start
    times = []
    for _ in range(repeats):
        sync()
        start = time.perf_counter()
        value = run()
        sync()
        times.append(time.perf_counter() - start)
    times.sort()
    return {"value": value, "seconds": times[0], "median_seconds": times[len(times) // 2], "first_call_seconds": first}


def set_configs(pair: str | None, row: str | None) -> dict[str, list[int]]:
    """Override the fused kernels' tile configurations (``block_m,block_n,block_k,group,num_warps,num_stages``);
    returns those in effect (the interpreter of ``--smoke`` keeps its own small tiles)."""
    from embspace.kernels import triton as kernels

    if pair:
        kernels.PAIR_CONFIG = kernels.Config(*map(int, pair.split(",")))
    if row:
        kernels.ROW_CONFIG = kernels.Config(*map(int, row.split(",")))
    fields = ("block_m", "block_n", "block_k", "group", "num_warps", "num_stages")
    return {kind: [getattr(kernels.default_config(kind), f) for f in fields] for kind in ("pair", "row")}


def run_child(method: str, n: int, dim: int, repeats: int, subset: int, exact_max_n: int, smoke: bool) -> dict:
    """One method at one N, in this process: time it, then measure its error against float64."""
    import torch

    device = torch.device("cpu" if smoke else "cuda")
    x, y = make_rows(n, dim, device)
    retrieval_method = method in RETRIEVAL_METHODS
    make = (lambda m, a, b: retrieval_call(m, a, b)) if retrieval_method else (lambda m, a, b: uniformity_call(m, a))
    result = timed(make(method, x, y), repeats, device)
    result["peak_gpu_mib"] = torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else None
    if method == "gemm-fp16":
        return result
    # error against float64: on all rows when affordable, else method and reference again on a subset
    rows = n if n <= exact_max_n else subset
    value = result["value"] if rows == n else make(method, x[:rows], y[:rows])()
    exact = make("fp64", x[:rows], y[:rows])()
    result["error_rows"] = rows
    if retrieval_method:
        result["exact"] = exact
        result["error"] = max(abs(value[key] - exact[key]) for key in exact)
    else:
        result["exact"] = exact
        result["error"] = abs(value - exact)
    return result


def machine(smoke: bool) -> dict[str, object]:
    import torch

    info: dict[str, object] = {"python": platform.python_version(), "torch": torch.__version__,
                               "cpu_cores": os.cpu_count()}
    try:
        import triton

        info["triton"] = triton.__version__
    except ImportError:
        info["triton"] = None
    if not smoke:
        props = torch.cuda.get_device_properties(0)
        info.update({"gpu": torch.cuda.get_device_name(0), "sms": props.multi_processor_count,
                     "gpu_memory_gib": round(props.total_memory / 2**30, 1), "cuda": torch.version.cuda})
    else:
        info["gpu"] = None
    return info


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, nargs="+", default=[100_000, 1_000_000], help="rows (default 1e5 1e6)")
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--methods", nargs="+", choices=METHODS, default=list(METHODS))
    parser.add_argument("--exact-max-n", type=int, default=100_000, help="float64 reference on all rows up to this N")
    parser.add_argument("--subset", type=int, default=100_000, help="rows of the float64 check above --exact-max-n")
    parser.add_argument("--torch-max-n", type=int, default=1_000_000, help="largest N for the torch uniformity path")
    parser.add_argument("--retrieval-torch-max-n", type=int, default=100_000,
                        help="largest N for recall and hubness on the torch path")
    parser.add_argument("--timeout", type=int, default=1800, help="seconds per method and N")
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--pair-config", metavar="M,N,K,G,W,S", help="pair kernel tiles: block_m,block_n,block_k,"
                        "group,num_warps,num_stages (default: embspace.kernels.triton.PAIR_CONFIG)")
    parser.add_argument("--row-config", metavar="M,N,K,G,W,S", help="row kernel tiles, likewise (ROW_CONFIG)")
    parser.add_argument("--smoke", action="store_true", help="CPU + Triton interpreter, tiny N: checks the script")
    parser.add_argument("--child", metavar="METHOD", choices=METHODS, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.smoke and args.out.resolve() == RESULTS.resolve():
        parser.error("--smoke figures mean nothing: give --out a directory outside benchmarks/results")
    return args


def skipped(method: str, n: int, args: argparse.Namespace) -> str | None:
    if method == "torch" and n > args.torch_max_n:
        return f"N above --torch-max-n {args.torch_max_n}"
    if method == "retrieval-torch" and n > args.retrieval_torch_max_n:
        return f"N above --retrieval-torch-max-n {args.retrieval_torch_max_n}"
    return None


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.child:
        configs = set_configs(args.pair_config, args.row_config) if args.child.startswith(("fused", "retrieval")) \
            else None
        result = run_child(args.child, args.n[0], args.dim, args.repeats, args.subset, args.exact_max_n, args.smoke)
        print(json.dumps({**result, "configs": configs}))
        return 0
    import torch

    if not args.smoke and not torch.cuda.is_available():
        print("error: this benchmark needs a CUDA device (--smoke checks the script on the CPU)", file=sys.stderr)
        return 2
    env = dict(os.environ)
    if args.smoke:
        env["TRITON_INTERPRET"] = "1"
    results: dict[str, dict[str, dict]] = {}
    for n in args.n:
        results[str(n)] = {}
        for method in args.methods:
            reason = skipped(method, n, args)
            if reason:
                results[str(n)][method] = {"skipped": reason}
                continue
            command = [sys.executable, __file__, "--child", method, "--n", str(n), "--dim", str(args.dim),
                       "--repeats", str(args.repeats), "--subset", str(args.subset), "--exact-max-n",
                       str(args.exact_max_n), "--out", str(args.out)] + (["--smoke"] if args.smoke else [])
            for flag, value in (("--pair-config", args.pair_config), ("--row-config", args.row_config)):
                command += [flag, value] if value else []
            try:
                child = subprocess.run(command, capture_output=True, text=True, env=env, timeout=args.timeout)
            except subprocess.TimeoutExpired:
                results[str(n)][method] = {"failed": f"timed out after {args.timeout} s"}
                continue
            if child.returncode != 0:
                last = (child.stderr.strip().splitlines() or [f"exit code {child.returncode}"])[-1]
                results[str(n)][method] = {"failed": last[:300]}
            else:
                results[str(n)][method] = json.loads(child.stdout.strip().splitlines()[-1])
            print(f"N={n:>9,} {method:>16}: {describe(results[str(n)][method])}", flush=True)
            write_tables(args, results)  # after every method: a run cut short still leaves what it measured
    write_tables(args, results)
    print(f"wrote {args.out / 'gpu_kernels.json'} and {args.out / 'gpu_kernels.md'}")
    return 0


def write_tables(args: argparse.Namespace, results: dict[str, dict[str, dict]]) -> None:
    """gpu_kernels.json and gpu_kernels.md in ``args.out`` with every result so far and the machine."""
    summary = {"benchmark": "gpu_kernels", "dim": args.dim, "t": T, "hubness_k": K, "repeats": args.repeats,
               "smoke": args.smoke, "machine": machine(args.smoke), "date": time.strftime("%Y-%m-%d %H:%M UTC",
                                                                                           time.gmtime()),
               "results": results}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "gpu_kernels.json").write_text(json.dumps(summary, indent=2) + "\n")
    (args.out / "gpu_kernels.md").write_text(markdown(summary))


def describe(result: dict) -> str:
    if "skipped" in result or "failed" in result:
        return result.get("skipped") or "FAILED: " + result["failed"]
    error = result.get("error")
    return (f"{result['seconds']:.3f} s (median {result['median_seconds']:.3f}, first call "
            f"{result['first_call_seconds']:.1f}){'' if error is None else f', error {error:.1e}'}")


def markdown(summary: dict) -> str:
    m = summary["machine"]
    where = "CPU smoke run: figures are meaningless" if summary["smoke"] else \
        f"{m['gpu']} ({m['sms']} SMs, {m['gpu_memory_gib']} GiB), CUDA {m['cuda']}"
    lines = [f"# Fused kernels on the GPU: uniformity (t = {summary['t']:g}) and recall/hubness, D = {summary['dim']}",
             "", f"Machine: {where}; torch {m['torch']}, triton {m['triton']}, Python {m['python']}; "
             f"{summary['date']}; best and median of {summary['repeats']} runs after a warm-up (first call "
             "includes compiling).", "",
             "| N | method | seconds (best) | median | first call | error vs float64 | rows in the error check |",
             "| --- | --- | --- | --- | --- | --- | --- |"]
    for n, methods in summary["results"].items():
        for method, r in methods.items():
            if "skipped" in r or "failed" in r:
                lines.append(f"| {int(n):,} | {method} | {r.get('skipped') or 'failed: ' + r['failed']} | | | | |")
                continue
            error = "" if r.get("error") is None else f"{r['error']:.1e}"
            rows = "" if r.get("error_rows") is None else f"{r['error_rows']:,}"
            lines.append(f"| {int(n):,} | {method} | {r['seconds']:.3f} | {r['median_seconds']:.3f} | "
                         f"{r['first_call_seconds']:.1f} | {error} | {rows} |")
    configs = next((r["configs"] for methods in summary["results"].values() for r in methods.values()
                    if r.get("configs")), None)
    lines += ["", "Uniformity error is |U − U_float64|; retrieval error is the largest difference over recall@1,5,10 "
              "and hubness, both ways. `gemm-fp16` computes no reduction: it is the time of the products alone.",
              "" if configs is None else f"Fused tile configurations (block_m, block_n, block_k, group, warps, "
              f"stages): pair {configs['pair']}, row {configs['row']}.", ""]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
