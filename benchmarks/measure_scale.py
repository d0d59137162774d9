"""`embspace measure` end to end on N image–text pairs read from .npy files, every metric family.

    python benchmarks/measure_scale.py [--n 1000000] [--dim 512] [--device cuda] [--estimate exact] [--out DIR]

Writes two (N, D) float16 dumps of cone-shaped, L2-normalised rows with noisy partners (seeded, drawn by torch on
the device; built in chunks, so N = 10⁶ needs ~2 GB of disk and little memory) into a temporary folder, then times
the command a user types, ``embspace measure image=….npy text=….npy --json …``, in a fresh process: start, reading,
every family and the report. Records the wall time, the report's per-family timings, settings (backend, passes,
precision) and the machine in ``measure_scale.{json,md}``. The issue's target for N = 10⁶ on one H100: ≤ 20 s.
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
CHUNK = 65_536


def write_pairs(folder: Path, n: int, dim: int, seed: int = 0, device: str = "cpu") -> tuple[Path, Path]:
    """image.npy and text.npy: (n, dim) float16 unit rows in a cone and their noisy partners, drawn by torch on
    ``device`` (seeded) chunk by chunk and written through memory maps."""
    import numpy as np
    import torch

    generator = torch.Generator(device=device).manual_seed(seed)
    axis = torch.randn(dim, generator=generator, device=device)
    axis /= axis.norm()
    paths = folder / "image.npy", folder / "text.npy"
    image, text = (np.lib.format.open_memmap(p, mode="w+", dtype=np.float16, shape=(n, dim)) for p in paths)
    for start in range(0, n, CHUNK):
        rows = min(CHUNK, n - start)
        x = axis + 1.5 * torch.randn(rows, dim, generator=generator, device=device) / dim**0.5
        x /= x.norm(dim=1, keepdim=True)
        y = x + 3.0 * torch.randn(rows, dim, generator=generator, device=device) / dim**0.5
        y /= y.norm(dim=1, keepdim=True)
        image[start : start + rows] = x.half().cpu().numpy()
        text[start : start + rows] = y.half().cpu().numpy()
    image.flush()
    text.flush()
    del image, text
    return paths


def machine(device: str) -> dict[str, object]:
    import torch

    info: dict[str, object] = {"cpu": cpu_model(), "cpu_cores": os.cpu_count(), "python": platform.python_version(),
                               "torch": torch.__version__, "platform": platform.platform()}
    if device == "cuda" and torch.cuda.is_available():
        info.update({"gpu": torch.cuda.get_device_name(0), "cuda": torch.version.cuda})
    return info


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1_000_000)
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--device", default="cuda", help="cuda or cpu")
    parser.add_argument("--estimate", default="exact", help="exact, sampled or auto (embspace measure --estimate)")
    parser.add_argument("--extra", nargs=argparse.REMAINDER, default=[], help="further embspace measure options")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="embspace-scale-") as tmp:
        folder = Path(tmp)
        began = time.perf_counter()
        image, text = write_pairs(folder, args.n, args.dim, device=args.device)
        print(f"wrote 2 × ({args.n:,}, {args.dim}) float16 in {time.perf_counter() - began:.1f} s", flush=True)
        report_path = folder / "report.json"
        command = [sys.executable, "-m", "embspace.cli", "measure", f"image={image}", f"text={text}", "--device",
                   args.device, "--estimate", args.estimate, "--json", str(report_path), "-q", *args.extra]
        began = time.perf_counter()
        done = subprocess.run(command, capture_output=True, text=True)
        seconds = time.perf_counter() - began
        if done.returncode != 0:
            print(done.stderr[-2000:], file=sys.stderr)
            return done.returncode
        report = json.loads(report_path.read_text())
    summary = {"benchmark": "measure_scale", "n": args.n, "dim": args.dim, "device": args.device,
               "estimate": args.estimate, "extra": args.extra, "seconds": round(seconds, 2),
               "timings": report.get("timings", {}),
               "settings": {key: report["settings"].get(key) for key in
                            ("device", "precision", "backend", "pairwise_passes", "estimate", "tile")},
               "machine": machine(args.device), "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}
    write_results(args.out, "measure_scale", summary, markdown(summary))
    print(markdown(summary))
    return 0


def markdown(summary: dict) -> str:
    timings = ", ".join(f"{name} {value:.1f} s" for name, value in summary["timings"].items()
                        if isinstance(value, int | float))
    where = summary["machine"].get("gpu") or summary["machine"]["cpu"]
    return (f"# embspace measure end to end: N = {summary['n']:,} pairs, D = {summary['dim']}, float16 .npy\n\n"
            f"Machine: {where}; torch {summary['machine']['torch']}; {summary['date']}.\n\n"
            f"`embspace measure image=… text=… --device {summary['device']} --estimate {summary['estimate']}` "
            f"(every family): **{summary['seconds']:.1f} s** wall, process start to report written.\n\n"
            f"Per family: {timings}.\n\nSettings: {json.dumps(summary['settings'])}\n")


if __name__ == "__main__":
    sys.exit(main())
