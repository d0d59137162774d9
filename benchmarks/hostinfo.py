"""What the benchmark scripts record about the machine they ran on, and how they write their results."""

from __future__ import annotations

import json
import platform
import time
from pathlib import Path


def cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo, or what :mod:`platform` knows elsewhere."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def write_results(out: Path, name: str, summary: dict, markdown: str) -> None:
    """``out/name.json`` (the summary, indented) and ``out/name.md`` (the table), creating ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{name}.json").write_text(json.dumps(summary, indent=2) + "\n")
    (out / f"{name}.md").write_text(markdown)


def best_of(repeats: int, action) -> float:
    """The shortest of ``repeats`` timed calls of ``action()``, in seconds."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        action()
        times.append(time.perf_counter() - start)
    return min(times)
