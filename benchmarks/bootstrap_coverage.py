"""Coverage of `compare`'s paired-bootstrap intervals, percentile vs BCa, on data with a known change.

    python benchmarks/bootstrap_coverage.py [--n 500] [--resamples 1000] [--reps 700] [--out benchmarks/results]

Data (seeded; D = 16): a latent z ~ N(0, I) per pair, a shared offset c (the cone) and a modality offset ±μ (the
gap), independent noise e₁, e₂ per modality:

    before: x̂ = unit(z + c + μ + 0.8 e₁),    ŷ = unit(z + c − μ + 0.8 e₂)
    shift:  x̂ = unit(z + c + μ/2 + 0.5 e₁),  ŷ = unit(z + c − μ/2 + 0.5 e₂)   (the same z, e₁, e₂: paired)
    closed: x̂ = unit(z + c + 0.5 e₁),        ŷ = unit(z + c + 0.5 e₂)         (the gap closed: 0 in population)
    null:   x̂, ŷ as before, with fresh noise e₁′, e₂′ (the same z: paired; the true change of every metric is 0)

The true change of each metric is its population value after minus before: the O(N·D) metrics from the moments of
2·10⁶ pairs in float64 (gap ‖E x̂ − E ŷ‖, centroid cosine, alignment E‖x̂ − ŷ‖², matched cosine E x̂·ŷ, cone ‖E x̂‖²,
RMG from those), the uniformities from the kernel means E e^{−t‖a−b‖²} of 2·10⁶ independent pairs (the joint
uniformity of 2N points mixes N matched and N(N−1) unmatched image–text pairs, so its value at N is formed from
both means), and recall@k — the share of N queries whose partner ranks in the top k among N candidates, a quantity
that depends on N — as the mean over 1,000 independent draws of N pairs.

Each repetition draws N pairs, runs :func:`embspace.compare.paired_bootstrap` (B resamples, both intervals from the
same resamples) and records whether each interval covers the true change. The Monte-Carlo tolerance of a coverage
p over R repetitions is ±2·√(p(1 − p)/R). Writes ``bootstrap_coverage.{md,json}``.
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch
from hostinfo import cpu_model, write_results  # benchmarks/hostinfo.py, beside this script

from embspace.compare import paired_bootstrap

RESULTS = Path(__file__).parent / "results"
DIM, T, KS = 16, 2.0, (1, 5)
POPULATION = 2_000_000
RECALL_DRAWS = 1000
SCENARIOS = ("shift", "closed", "null")


def unit(a: np.ndarray) -> np.ndarray:
    return a / np.linalg.norm(a, axis=1, keepdims=True)


def draw(rng: np.random.Generator, n: int, scenario: str) -> tuple[tuple[np.ndarray, np.ndarray], ...]:
    """(before, after): two (x̂, ŷ) pairs of (n, DIM) float64 unit rows, paired row by row."""
    mu, c = np.zeros(DIM), np.zeros(DIM)
    mu[0], c[1] = 1.5, 1.0
    z, e1, e2 = (rng.normal(size=(n, DIM)) for _ in range(3))
    before = (unit(z + c + mu + 0.8 * e1), unit(z + c - mu + 0.8 * e2))
    if scenario in ("shift", "closed"):
        m = mu / 2 if scenario == "shift" else 0 * mu
        return before, (unit(z + c + m + 0.5 * e1), unit(z + c - m + 0.5 * e2))
    f1, f2 = rng.normal(size=(n, DIM)), rng.normal(size=(n, DIM))
    return before, (unit(z + c + mu + 0.8 * f1), unit(z + c - mu + 0.8 * f2))


def population(x: np.ndarray, y: np.ndarray, n: int) -> dict[str, float]:
    """The population value of every moment and uniformity metric from a large sample (float64, definitions)."""
    mx, my = x.mean(0), y.mean(0)
    matched = float((x * y).sum(1).mean())
    cone_x, cone_y = float(mx @ mx), float(my @ my)  # E x̂_i·x̂_j, i ≠ j
    d_m = max(1 - (matched + 1) / 2, 1e-3)
    rmg = d_m / (d_m + ((1 - (cone_x + 1) / 2) + (1 - (cone_y + 1) / 2)) / 2)
    half = len(x) // 2  # rows i and half + i are independent draws

    def kernel(a: np.ndarray, b: np.ndarray) -> float:
        return float(np.exp(-T * ((a - b) ** 2).sum(1)).mean())

    k_xx, k_yy = kernel(x[:half], x[half:2 * half]), kernel(y[:half], y[half:2 * half])
    k_xy, k_matched = kernel(x[:half], y[half:2 * half]), kernel(x, y)
    joint = ((n - 1) * (k_xx + k_yy) + 2 * (n - 1) * k_xy + 2 * k_matched) / (2 * (n - 1) + 2 * n)
    u_x, u_y = math.log(k_xx), math.log(k_yy)
    return {"gap": float(np.linalg.norm(mx - my)),
            "centroid_cosine": float(mx @ my / (np.linalg.norm(mx) * np.linalg.norm(my))),
            "alignment": float(((x - y) ** 2).sum(1).mean()), "matched_cosine": matched, "rmg": rmg,
            "cone.image": cone_x, "cone.text": cone_y, "uniformity.image": u_x, "uniformity.text": u_y,
            "uniformity.mean": (u_x + u_y) / 2, "uniformity.joint": math.log(joint), "uniformity.cross": math.log(k_xy)}


def ranks(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """(N,) for each row of x, how many rows of y are more similar to it than its partner (float64 brute force)."""
    s = x @ y.T
    return (s > s.diagonal()[:, None]).sum(1)


def true_changes(scenario: str, n: int, rng: np.random.Generator) -> dict[str, float]:
    if scenario == "null":  # the same distribution before and after: every true change is exactly 0
        recall = [f"recall@{k}.{d}" for k in KS for d in ("image->text", "text->image")]
        return {path: 0.0 for path in [*population(*draw(rng, 4, "null")[0], n), *recall]}
    before, after = draw(rng, POPULATION, scenario)
    old, new = population(*before, n), population(*after, n)
    truth = {path: new[path] - old[path] for path in old}
    sums: dict[str, float] = {}
    for _ in range(RECALL_DRAWS):
        before, after = draw(rng, n, scenario)
        for direction, (a, b) in (("image->text", (0, 1)), ("text->image", (1, 0))):
            old_ranks, new_ranks = ranks(before[a], before[b]), ranks(after[a], after[b])
            for k in KS:
                path = f"recall@{k}.{direction}"
                sums[path] = sums.get(path, 0.0) + float((new_ranks < k).mean() - (old_ranks < k).mean())
    truth.update({path: total / RECALL_DRAWS for path, total in sums.items()})
    return truth


def coverage(scenario: str, n: int, resamples: int, reps: int, seed: int) -> dict:
    rng = np.random.default_rng(seed)
    truth = true_changes(scenario, n, rng)
    hits = {path: {"percentile": 0, "bca": 0} for path in truth}
    widths = {path: {"percentile": 0.0, "bca": 0.0} for path in truth}
    for rep in range(reps):
        before, after = draw(rng, n, scenario)
        result = paired_bootstrap(before, after, resamples=resamples, seed=rep, recall_ks=KS)
        for path, target in truth.items():
            entry = result.metrics[path]
            for name, (lo, hi) in (("percentile", entry.percentile_ci), ("bca", entry.ci)):
                hits[path][name] += lo <= target <= hi
                widths[path][name] += (hi - lo) / reps
    rows = {}
    for path in truth:
        rows[path] = {"true_change": truth[path]}
        for name in ("percentile", "bca"):
            p = hits[path][name] / reps
            rows[path][name] = {"coverage": p, "tolerance": 2 * math.sqrt(max(p * (1 - p), 0.05 * 0.95) / reps),
                                "mean_width": widths[path][name]}
    return rows


def markdown(results: dict, settings: dict) -> str:
    lines = [f"Coverage of the 95 % paired-bootstrap interval of the change, N = {settings['n']} pairs, "
             f"B = {settings['resamples']} resamples, R = {settings['reps']} repetitions per scenario "
             f"(Monte-Carlo tolerance ±2·√(p(1−p)/R) ≈ ±{2 * math.sqrt(0.95 * 0.05 / settings['reps']):.3f} at "
             f"p = 0.95). {settings['machine']}; {settings['seconds']:.0f} s (load average "
             f"{settings['load_average'][0]:.1f} at the end).", "",
             "| metric | shift: true change | percentile | BCa | closed: true change | percentile | BCa "
             "| null: percentile | BCa |",
             "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for path in results["shift"]:
        cells = []
        for scenario in SCENARIOS:
            block = results[scenario][path]
            if scenario != "null":
                cells.append(f"{block['true_change']:+.4f}")
            cells += [f"{block[name]['coverage']:.3f}" for name in ("percentile", "bca")]
        lines.append(f"| {path} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=500)
    parser.add_argument("--resamples", type=int, default=1000)
    parser.add_argument("--reps", type=int, default=700)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    start = time.perf_counter()
    results = {scenario: coverage(scenario, args.n, args.resamples, args.reps, args.seed + i)
               for i, scenario in enumerate(SCENARIOS)}
    seconds = time.perf_counter() - start
    settings = {"n": args.n, "resamples": args.resamples, "reps": args.reps, "seed": args.seed, "dim": DIM, "t": T,
                "threads": args.threads, "seconds": seconds, "load_average": os.getloadavg(),
                "machine": f"{cpu_model()}, {os.cpu_count()} cores, {args.threads} torch thread(s)",
                "python": sys.version.split()[0], "torch": torch.__version__, "platform": platform.platform()}
    summary = {"settings": settings, "interval": "95 % two-sided", "results": results}
    text = markdown(results, settings)
    write_results(args.out, "bootstrap_coverage", summary, text)
    print(text)


if __name__ == "__main__":
    main()
