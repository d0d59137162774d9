"""What provenance costs on the CPU: the content hash a report records per input, next to the passes a measurement
makes anyway (reading + the NaN / zero-row scan of validation, the O(N·D) centroid metrics).

    python benchmarks/provenance_cpu.py [--n 200000] [--dim 512] [--out benchmarks/results]

The input is a memory-mapped ``.npy`` (float32 and float16, seeded), read warm (the page cache holds it after a
first pass). Reported per dtype: best-of-``--repeats`` seconds of ``content_hash`` (blake2b-256 over the rows), of
``validate`` (the scan every measurement runs) and of ``measure --metrics gap`` (validation, centroid sums, hash
and report), and the hash's throughput. Writes ``provenance_cpu.json`` and ``provenance_cpu.md``.
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
    parser.add_argument("--n", type=int, default=200_000)
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    args = parser.parse_args()

    import numpy as np
    import torch

    import embspace
    from embspace.io import content_hash, open_matrix, validate

    rows = []
    with tempfile.TemporaryDirectory() as scratch:
        for dtype in (np.float32, np.float16):
            path = Path(scratch) / f"x_{np.dtype(dtype).name}.npy"
            data = np.lib.format.open_memmap(path, mode="w+", dtype=dtype, shape=(args.n, args.dim))
            generator = np.random.default_rng(0)
            for start in range(0, args.n, 50_000):
                block = generator.normal(size=(min(50_000, args.n - start), args.dim)) + 0.5
                data[start : start + len(block)] = block
            data.flush()
            del data
            x = open_matrix(path)
            content_hash(x)  # warm the page cache
            hash_s = best_of(args.repeats, lambda x=x: content_hash(x))
            scan_s = best_of(args.repeats, lambda x=x: validate({"x": x}, paired=False))
            gap_s = best_of(args.repeats, lambda x=x: embspace.measure(image=x, text=x, metrics="gap"))
            size = os.path.getsize(path)
            rows.append({"dtype": np.dtype(dtype).name, "n": args.n, "dim": args.dim, "bytes": size,
                         "content_hash_s": round(hash_s, 4), "validate_s": round(scan_s, 4),
                         "measure_gap_s": round(gap_s, 4), "hash_mb_per_s": round(size / hash_s / 1e6, 1)})

    machine = {"platform": platform.platform(), "processor": platform.processor() or platform.machine(),
               "cpus": os.cpu_count(), "torch_threads": torch.get_num_threads(), "torch": torch.__version__,
               "numpy": np.__version__, "load_average": os.getloadavg()}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "provenance_cpu.json").write_text(json.dumps({"machine": machine, "results": rows}, indent=2) + "\n")
    lines = ["# Provenance cost on the CPU", "", f"Machine: {machine['processor']}, {machine['cpus']} CPUs, torch "
             f"{machine['torch']} ({machine['torch_threads']} threads); load average at the run "
             f"{', '.join(f'{v:.1f}' for v in machine['load_average'])}.", "",
             "| dtype | N × D | file | content hash | validate scan | measure gap (2 inputs) | hash throughput |",
             "| --- | --- | --- | --- | --- | --- | --- |"]
    for r in rows:
        lines.append(f"| {r['dtype']} | {r['n']:,} × {r['dim']} | {r['bytes'] / 1e6:.0f} MB "
                     f"| {r['content_hash_s']:.3f} s | {r['validate_s']:.3f} s | {r['measure_gap_s']:.3f} s "
                     f"| {r['hash_mb_per_s']:.0f} MB/s |")
    (args.out / "provenance_cpu.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
