"""What a small memory budget costs the validation scan (NaN / Inf and zero rows) that every measurement runs first.

    python benchmarks/scan_budget.py [--n 400000] [--dim 512] [--repeats 3] [--out benchmarks/results]

The input is a seeded float32 ``.npy`` (N × D, one NaN in the last row), read warm. For the default budget and for
``--memory`` 64 MB, 256 MB and 1 GB, the scan runs with the row blocks that ``measure`` plans for that budget
(``embspace.kernels.budget.plan``); reported: best-of-``--repeats`` seconds and the ratio to the default budget.
Writes ``scan_budget_cpu.json`` and ``scan_budget_cpu.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
from pathlib import Path

from hostinfo import best_of


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=400_000)
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    args = parser.parse_args()

    import numpy as np

    import embspace
    from embspace.io.validate import scan, scan_rows
    from embspace.kernels.backend import resolve_device
    from embspace.kernels.budget import parse_size, plan
    from embspace.kernels.pairwise import DEFAULT_TILE
    from embspace.kernels.rows import available_memory

    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "x.npy"
        data = np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=(args.n, args.dim))
        rng = np.random.default_rng(0)
        for start in range(0, args.n, 65_536):
            stop = min(start + 65_536, args.n)
            data[start:stop] = rng.standard_normal((stop - start, args.dim), dtype=np.float32)
        data[-1, 3] = np.nan
        data.flush()
        del data
        (embeddings,) = embspace.load(f"image={path}").values()
        scan(embeddings)  # warm the page cache
        budgets = {"default": available_memory(resolve_device("cpu"))}
        budgets.update({size: parse_size(size) for size in ("1GB", "256MB", "64MB")})
        rows = {}
        for name, budget in budgets.items():
            block = plan(budget, args.dim, DEFAULT_TILE).block_rows
            seconds = best_of(args.repeats, lambda block=block: scan(embeddings, block))
            rows[name] = {"budget": budget, "block_rows": block, "scan_rows": scan_rows(embeddings, block),
                          "seconds": seconds}
    for row in rows.values():
        row["ratio"] = row["seconds"] / rows["default"]["seconds"]
    result = {"n": args.n, "dim": args.dim, "bytes": args.n * args.dim * 4, "repeats": args.repeats,
              "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "load": os.getloadavg()},
              "rows": rows}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "scan_budget_cpu.json").write_text(json.dumps(result, indent=2) + "\n")
    lines = [f"# Validation scan under a memory budget ({args.n:,} × {args.dim} float32, "
             f"{result['bytes'] / 1e6:,.0f} MB, warm)", "",
             f"{platform.platform()}, {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f} at the end", "",
             "| budget | row blocks of measure | rows per scan chunk | seconds (best of "
             f"{args.repeats}) | × default |", "| --- | ---: | ---: | ---: | ---: |"]
    for name, row in rows.items():
        lines.append(f"| {name} | {row['block_rows']:,} | {row['scan_rows']:,} | {row['seconds']:.2f} | "
                     f"{row['ratio']:.2f} |")
    (args.out / "scan_budget_cpu.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
