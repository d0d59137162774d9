"""Overhead of EmbeddingMonitor per training step: a tiny Hugging Face CLIP trained on the CPU for STEPS steps,
without the monitor and with it (every EVERY steps, 256 evaluation pairs, gap/alignment/uniformity), budgets 5 % and
none. Writes benchmarks/results/callback_overhead.{json,md} with the machine and its `uptime` load (it is shared).

    python benchmarks/callback_overhead.py
"""

from __future__ import annotations

import runpy
import subprocess
import tempfile
import time
from pathlib import Path

import torch

from benchmarks.hostinfo import cpu_model, write_results
from embspace.callbacks import EmbeddingMonitor, clip_embedder

ROOT = Path(__file__).resolve().parents[1]
STEPS, EVERY = 40, 10


def run(budget: float | None, monitored: bool) -> float:
    example = runpy.run_path(str(ROOT / "examples" / "finetune_clip_model.py"))
    model = example["tiny_hf_clip"](seed=0).model
    images, texts, _ = example["synthetic_pairs"](288, seed=0)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    with tempfile.TemporaryDirectory() as folder:
        monitor = EmbeddingMonitor(clip_embedder(images[32:], texts[32:]), folder, every=EVERY,
                                   metrics="gap,alignment,uniformity", budget=budget) if monitored else None
        start = time.perf_counter()
        for step in range(1, STEPS + 1):
            optimizer.zero_grad()
            model(pixel_values=images[:32], input_ids=texts[:32], return_loss=True).loss.backward()
            optimizer.step()
            if monitor is not None:
                monitor.after_step(step, model)
        return (time.perf_counter() - start) / STEPS


def main() -> None:
    torch.set_num_threads(1)
    load_before = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    base = run(None, False)
    rows = {"none": base, "budget 5 %": run(0.05, True), "no budget": run(None, True)}
    load_after = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    summary = {"cpu": cpu_model(), "threads": 1, "steps": STEPS, "every": EVERY, "eval_pairs": 256,
               "seconds_per_step": rows, "uptime_before": load_before, "uptime_after": load_after}
    lines = [f"Callback overhead per step ({cpu_model()}, 1 thread, {STEPS} steps of a tiny HF CLIP, batch 32, "
             f"measured every {EVERY} steps on 256 pairs)", "", f"load before: `{load_before}`",
             f"load after: `{load_after}`", "", "| monitor | s / step | overhead |", "|---|---:|---:|"]
    lines += [f"| {name} | {value:.4f} | {100 * (value / base - 1):+.1f} % |" for name, value in rows.items()]
    write_results(ROOT / "benchmarks" / "results", "callback_overhead", summary, "\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
