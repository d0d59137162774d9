"""Estimators wired into `measure`: sampled intervals cover the exact float64 value, auto switching, settings,
the budget's sizes, the precision default, and bad estimator options."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import embspace
from embspace.errors import InputError
from embspace.kernels.backend import precision_name
from embspace.kernels.budget import parse_size, plan
from tests import reference as ref

UNIFORMITY_KEYS = ("image", "text", "mean", "joint", "cross")


@pytest.fixture(scope="module")
def pairs():
    x, y = ref.paired_data("cone", 500, 16, seed=3)
    exact = {"image": ref.uniformity(x), "text": ref.uniformity(y), "joint": ref.uniformity_joint(x, y),
             "cross": ref.uniformity_cross(x, y)}
    exact["mean"] = (exact["image"] + exact["text"]) / 2
    for k in (1, 5):
        exact[f"recall@{k}.image->text"] = ref.recall(x, y, k)
        exact[f"recall@{k}.text->image"] = ref.recall(y, x, k)
    return x, y, exact


@pytest.mark.slow
def test_sampled_intervals_cover_the_exact_values_through_measure(pairs):
    x, y, exact = pairs
    draws = 100
    covered: dict[str, int] = {}
    for seed in range(draws):
        report = embspace.measure(image=x, text=y, metrics="uniformity,retrieval", estimate="sampled", pairs=8000,
                                  queries=120, recall_ks=(1, 5), seed=seed, device="cpu")
        for key in UNIFORMITY_KEYS:
            path = f"uniformity.{key}"
            u = report.uncertainty[path]
            assert u["method"] == "sampled" and u["confidence"] == 0.95 and u["ci"][0] < report[path] < u["ci"][1]
            covered[path] = covered.get(path, 0) + (u["ci"][0] <= exact[key] <= u["ci"][1])
        for path in (p for p in exact if p.startswith("recall")):
            u = report.uncertainty[path]
            assert u["samples"] == 120
            covered[path] = covered.get(path, 0) + (u["ci"][0] <= exact[path] <= u["ci"][1])
    assert report.uncertainty["uniformity.image"]["samples"] == 8000
    assert all(c / draws >= 0.90 for c in covered.values()), covered


def test_the_sampled_estimates_are_close_with_many_pairs(pairs):
    x, y, exact = pairs
    report = embspace.measure(image=x, text=y, metrics="uniformity", estimate="sampled", pairs=400_000)
    for key in UNIFORMITY_KEYS:
        low, high = report.uncertainty[f"uniformity.{key}"]["ci"]
        assert high - low < 0.02
        assert report[f"uniformity.{key}"] == pytest.approx(exact[key], abs=0.02)


def test_every_query_sampled_gives_the_exact_recall(pairs):
    x, y, exact = pairs
    report = embspace.measure(image=x, text=y, metrics="retrieval", estimate="sampled", queries=10_000,
                              recall_ks=(1, 5), precision="fp64")
    for k in (1, 5):
        assert report[f"recall@{k}.image->text"] == pytest.approx(exact[f"recall@{k}.image->text"], abs=1e-12)
        assert report[f"recall@{k}.text->image"] == pytest.approx(exact[f"recall@{k}.text->image"], abs=1e-12)
        assert report.uncertainty[f"recall@{k}.image->text"]["samples"] == len(x)


def test_auto_samples_above_the_threshold_and_labels_every_number(pairs):
    x, y, exact = pairs
    sampled = embspace.measure(image=x, text=y, sample_above=499, pairs=5000, queries=100)
    assert sampled.settings["estimate"] == {"method": "sampled", "requested": "auto", "sample_above": 499,
                                            "pairs": 5000, "queries": 100}
    methods = {path: u["method"] for path, u in sampled.uncertainty.items()}
    assert set(methods) == set(sampled.flat())
    for path, method in methods.items():
        expected = "sampled" if path.startswith("uniformity") else "exact"  # hubness asked for: recall exact
        assert method == expected, path
    assert sampled["gap"] == pytest.approx(ref.gap(x, y), abs=1e-6)
    assert sampled["hubness.image->text"] == pytest.approx(ref.hubness(x, y), abs=1e-6)
    assert sampled["recall@1.image->text"] == pytest.approx(exact["recall@1.image->text"], abs=1e-12)
    assert sampled.histograms["method"] == "sampled" and sum(sampled.histograms["unmatched"]) == 5000
    exact_report = embspace.measure(image=x, text=y, metrics="uniformity", sample_above=500)
    assert exact_report.settings["estimate"]["method"] == "exact"
    assert exact_report.uncertainty["uniformity.joint"] == {"method": "exact"}
    assert exact_report["uniformity.joint"] == pytest.approx(exact["joint"], abs=1e-6)


def test_sampled_histograms_follow_the_exact_distribution(pairs):
    x, y, _ = pairs
    m = 20_000
    report = embspace.measure(image=x, text=y, metrics="histograms", estimate="sampled", pairs=m, histogram_bins=50)
    hist = report.histograms
    edges = np.linspace(-1, 1, 51)
    ux, uy = ref.unit(x), ref.unit(y)
    np.testing.assert_array_equal(hist["matched"], np.histogram((ux * uy).sum(1), edges)[0])  # exact
    cross = ux @ uy.T
    exact = {"unmatched": cross[~np.eye(len(x), dtype=bool)],
             "image": (ux @ ux.T)[np.triu_indices(len(x), 1)], "text": (uy @ uy.T)[np.triu_indices(len(y), 1)]}
    sampled = {"unmatched": hist["unmatched"], **hist["within"]}
    for name, values in exact.items():
        assert sum(sampled[name]) == m
        cdf_exact = np.cumsum(np.histogram(values, edges)[0]) / len(values)
        cdf_sampled = np.cumsum(sampled[name]) / m
        assert np.abs(cdf_exact - cdf_sampled).max() < 0.02, name  # DKW: P(> 0.02) ≤ 2e^(−16)


def test_single_modality_sampled():
    x = ref.cone_data(400, 8, 1.5, seed=5)
    report = embspace.measure(image=x, estimate="sampled", pairs=50_000)
    low, high = report.uncertainty["uniformity.image"]["ci"]
    assert low < report["uniformity.image"] < high and high - low < 0.03
    assert report["uniformity.image"] == pytest.approx(ref.uniformity(x), abs=0.01)
    assert report.uncertainty["cone.image"] == {"method": "exact"}
    assert report["cone.image"] == pytest.approx(ref.cone(x), abs=1e-6)


@pytest.mark.parametrize(("options", "where"), [
    ({"estimate": "approx"}, "estimate"), ({"pairs": 1}, "pairs"), ({"queries": 0}, "queries"),
    ({"sample_above": -1}, "sample_above"), ({"memory": "lots"}, "memory"), ({"memory": "8XB"}, "memory"),
    ({"memory": "10"}, "memory"), ({"precision": "fp8"}, "precision")])
def test_bad_estimator_options_name_the_option(pairs, options, where):
    x, y, _ = pairs
    with pytest.raises(InputError) as info:
        embspace.measure(image=x, text=y, metrics="uniformity", **options)
    assert str(info.value).startswith(f"{where}: ")


def test_parse_size_units():
    assert parse_size("512MB") == 512_000_000
    assert parse_size("8GB") == 8_000_000_000
    assert parse_size("2GiB") == 2 * 1024**3
    assert parse_size("1.5G") == int(1.5 * 1024**3)
    assert parse_size("64mib") == 64 * 1024**2
    assert parse_size("3000000") == 3_000_000
    assert parse_size(4 << 20) == 4 << 20


def test_plan_fits_tiles_and_blocks_in_the_budget():
    layout = plan(64 << 20, 1024, 4096)
    quarter = (64 << 20) // 4
    assert layout.tile**2 * 32 <= quarter < (2 * layout.tile) ** 2 * 32  # the largest power-of-two tile that fits
    assert layout.block_rows * 1024 * 48 <= (64 << 20) // 8
    assert plan(1 << 40, 512, 4096).tile == 4096  # never above the requested tile


def test_precision_auto_is_fp32_on_the_cpu_and_fp16_on_cuda(pairs):
    x, y, _ = pairs
    assert precision_name("auto", torch.device("cpu")) == "fp32"
    assert precision_name("auto", torch.device("cuda")) == "fp16"
    assert precision_name("bf16", torch.device("cpu")) == "bf16"
    report = embspace.measure(image=x, text=y, metrics="uniformity", device="cpu")
    assert report.settings["precision"] == "fp32"


@pytest.mark.parametrize(("flag", "value", "start"), [
    ("--memory", "lots", "error: --memory: 'lots' is not a size"),
    ("--estimate", "bogus", "error: --estimate: unknown estimator 'bogus'"),
    ("--pairs", "1", "error: --pairs: must be an integer ≥ 2")])
def test_cli_refuses_bad_estimator_options_in_one_line(flag, value, start):
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-m", "embspace.cli", "measure", "--sample", "-q", flag, value],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 2
    assert done.stderr.startswith(start) and done.stderr.count("\n") == 1, done.stderr
    assert done.stdout == ""


def test_cli_table_shows_the_intervals_of_sampled_numbers():
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-m", "embspace.cli", "measure", "--sample", "-q", "--metrics",
                           "uniformity,gap", "--estimate", "sampled", "--pairs", "5000"], capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "95 % interval" in done.stdout and "n=5,000" in done.stdout
    assert "estimate=sampled (5,000 pairs" in done.stdout
