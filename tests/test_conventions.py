"""Conventions fixed to their sources, each checked against a transcription of the authors' own formula:
Schrodi et al.'s ``compute_rmg`` (the floor on the matched distance), reptrix's ``get_alpha`` (α-ReQ: 1/k-weighted
over k = 11…100) and ``get_rankme`` (RankMe on the covariance eigenvalues); the previous conventions by name."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

import embspace
from embspace.cli import app
from embspace.errors import InputError
from tests import reference as ref

ROOT = Path(__file__).resolve().parents[1]
CLIP = ROOT.parent / "shared" / "data" / "mind-the-gap" / "features_clip.npy"


def compute_rmg(image: torch.Tensor, text: torch.Tensor) -> float:
    """Schrodi et al.'s compute_rmg (analysis/gap_precompute.py) for one caption per image, transcribed densely."""
    image = image / image.norm(dim=-1, keepdim=True)
    text = text / text.norm(dim=-1, keepdim=True)
    matching = 1 - ((image * text).sum(1).mean() + 1) / 2
    matching = torch.where(matching > 0, matching, torch.ones_like(matching) * 1e-3)
    sims = []
    for feats in (image, text):
        gram = feats @ feats.T
        gram.fill_diagonal_(0)
        sims.append(1 - (gram.sum() / (gram.numel() - len(gram)) + 1) / 2)
    return float(matching / (matching + (sims[0] + sims[1]) / 2))


def near_aligned(n: int = 300, d: int = 24, noise: float = 0.004, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Pairs whose matched distance d_m = (1 − cos)/2 is about d·noise²/4 ≈ 1e-4 < 1e-3: where the two floors part."""
    rng = np.random.default_rng(seed)
    x = ref.unit(rng.normal(size=(n, d)))
    return x, ref.unit(x + noise * rng.normal(size=(n, d)))


def test_rmg_follows_compute_rmg_and_keeps_the_clamp_by_name():
    x, y = near_aligned()
    assert ref.matched_cosine(x, y) > 0.998
    source = embspace.measure(image=x, text=y, metrics="rmg", device="cpu", precision="fp64")
    clamp = embspace.measure(image=x, text=y, metrics="rmg", device="cpu", precision="fp64", rmg_floor="clamp")
    authors = compute_rmg(torch.from_numpy(x), torch.from_numpy(y))
    assert source["rmg"] == pytest.approx(authors, rel=1e-9)
    assert source["rmg"] == pytest.approx(ref.rmg(x, y), rel=1e-9)
    assert clamp["rmg"] == pytest.approx(ref.rmg(x, y, floor="clamp"), rel=1e-9)
    assert clamp["rmg"] > 4 * source["rmg"]  # the clamp lifts d_m ≈ 1e-4 to 1e-3
    assert source.settings["rmg_floor"] == "source" and clamp.settings["rmg_floor"] == "clamp"
    assert "compute_rmg" in source.conventions["rmg"]


def test_rmg_floors_agree_where_the_matched_distance_is_zero_or_large():
    rows = np.eye(8)[np.arange(40) % 8] * np.where(np.arange(40)[:, None] % 3, 1.0, -1.0)  # exact unit rows
    same = {m: embspace.measure(image=rows, text=rows.copy(), metrics="rmg", device="cpu", precision="fp64",
                                rmg_floor=m)["rmg"] for m in ("source", "clamp")}
    d_a = 1 - (ref.cone(rows) + 1) / 2
    assert same["source"] == same["clamp"] == pytest.approx(1e-3 / (1e-3 + d_a), rel=1e-12)  # d_m = 0 exactly
    assert compute_rmg(torch.from_numpy(rows), torch.from_numpy(rows)) == pytest.approx(same["source"], rel=1e-12)
    x, y = ref.paired_data("cone", 200, 16, seed=1)
    far = [embspace.measure(image=x, text=y, metrics="rmg", device="cpu", rmg_floor=m)["rmg"]
           for m in ("source", "clamp")]
    assert far[0] == far[1] == pytest.approx(ref.rmg(x, y), abs=1e-6)


def test_an_unknown_rmg_floor_is_refused_before_any_work():
    x, y = near_aligned(n=20)
    with pytest.raises(InputError, match=r"rmg_floor.*source, clamp"):
        embspace.measure(image=x, text=y, metrics="rmg", rmg_floor="max")


def power_law_rows(n: int = 4000, d: int = 160, alpha: float = 1.2, seed: int = 3) -> np.ndarray:
    rng = np.random.default_rng(seed)
    q, _ = np.linalg.qr(rng.normal(size=(d, d)))
    return (rng.normal(size=(n, d)) * np.arange(1, d + 1) ** (-alpha / 2)) @ q.T


def test_alpha_req_is_reptrix_fit_by_default():
    x = power_law_rows()
    report = embspace.measure(image=x, metrics="spectrum", device="cpu", precision="fp64")
    assert report["alpha_req.image"] == pytest.approx(ref.alpha_req_reptrix(x), abs=1e-6)
    assert report.settings["alpha_req_fit"] == "reptrix"
    assert report.settings["alpha_req_range"]["image"] == [11, 100]
    ranged = embspace.measure(image=x, metrics="spectrum", device="cpu", precision="fp64", alpha_req_range=(5, 60))
    assert ranged["alpha_req.image"] == pytest.approx(ref.alpha_req_reptrix(x, 5, 60), abs=1e-6)
    ols = embspace.measure(image=x, metrics="spectrum", device="cpu", precision="fp64", alpha_req_fit="ols")
    lam = np.sort(np.linalg.eigvalsh(np.cov(ref.unit(x), rowvar=False)))[::-1]
    assert ols["alpha_req.image"] == pytest.approx(-np.polyfit(np.log(np.arange(1, 161)), np.log(lam), 1)[0],
                                                   abs=1e-6)
    assert ols.settings["alpha_req_range"]["image"] == [1, 160]


def test_rankme_variants_by_name():
    x = power_law_rows(n=300, d=64)
    report = embspace.measure(image=x, metrics="spectrum", device="cpu", precision="fp64")
    assert report["rankme.image"] == pytest.approx(ref.rankme(x), rel=1e-9)  # the paper's: σ, uncentred
    assert report["rankme_covariance.image"] == pytest.approx(ref.rankme_covariance(x), rel=1e-7)  # reptrix's
    assert "reptrix" in report.conventions["rankme_covariance"]
    assert "uncentred" in report.conventions["rankme"]
    wide = power_law_rows(n=40, d=64)  # N ≤ D: PCA keeps N components, the last one zero after centring
    report = embspace.measure(image=wide, metrics="spectrum", device="cpu", precision="fp64")
    assert report["rankme_covariance.image"] == pytest.approx(ref.rankme_covariance(wide), rel=1e-7)


def test_a_spectrum_too_short_for_the_fit_says_why():
    x = power_law_rows(n=500, d=16)
    report = embspace.measure(image=x, metrics="spectrum", device="cpu", precision="fp64")
    assert report.settings["alpha_req_range"]["image"] == [11, 16]  # reptrix's range, ended where the spectrum does
    assert report["alpha_req.image"] == pytest.approx(ref.alpha_req_reptrix(x, 11, 16), abs=1e-6)
    assert "16 eigenvalues" in report.settings["alpha_req_note"]["image"]
    narrow = embspace.measure(image=x[:, :8], metrics="spectrum", device="cpu", precision="fp64")
    assert narrow.settings["alpha_req_range"]["image"] == [1, 8]  # no tail beyond k = 11
    assert narrow["alpha_req.image"] == pytest.approx(ref.alpha_req_reptrix(x[:, :8], 1, 8), abs=1e-6)
    with pytest.raises(InputError, match=r"alpha_req_range: .* needs 40 covariance eigenvalues.* at most 16"):
        embspace.measure(image=x, metrics="spectrum", alpha_req_range=(2, 40))
    flat = np.concatenate([x[:, :5], np.zeros((500, 11))], axis=1)  # rank 5 in 16 dimensions
    undefined = embspace.measure(image=flat, metrics="spectrum", device="cpu", alpha_req_range=(2, 12))
    assert math.isnan(undefined["alpha_req.image"])
    assert "needs 12 eigenvalues" in undefined.settings["alpha_req_undefined"]["image"]
    assert "has 5" in undefined.settings["alpha_req_undefined"]["image"]
    with pytest.raises(InputError, match="alpha_req_fit"):
        embspace.measure(image=x, metrics="spectrum", alpha_req_fit="weighted")


def test_cli_takes_the_conventions_by_flag(tmp_path):
    x = power_law_rows(n=300, d=32)
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "pairs.npy", np.stack([x, x[::-1]]))
    runner = CliRunner()
    ok = runner.invoke(app, ["measure", f"image={tmp_path / 'x.npy'}", "--metrics", "spectrum", "--alpha-req-range",
                             "2,30", "--alpha-req-fit", "ols", "--json", str(tmp_path / "r.json"), "-q"])
    assert ok.exit_code == 0, ok.stderr
    report = embspace.Report.from_json(tmp_path / "r.json")
    assert report.settings["alpha_req_range"]["image"] == [2, 30] and report.settings["alpha_req_fit"] == "ols"
    for args, message in ((["--alpha-req-range", "2"], "--alpha-req-range: give two integers"),
                          (["--alpha-req-range", "2,99"], "--alpha-req-range: the fit over k = 2…99"),
                          (["--rmg-floor", "max", "--metrics", "rmg"], "--rmg-floor: unknown RMG floor")):
        bad = runner.invoke(app, ["measure", f"pairs={tmp_path / 'pairs.npy'}", "--json", str(tmp_path / "bad.json"),
                                  *(["--metrics", "spectrum"] if "--metrics" not in args else []), *args])
        lines = [line for line in bad.stderr.splitlines() if line.strip()]
        assert bad.exit_code == 2 and len(lines) == 1 and message in lines[0], bad.stderr
        assert not (tmp_path / "bad.json").exists()


@pytest.mark.skipif(not CLIP.exists(), reason="the Mind-the-Gap embeddings are not here")
def test_alpha_req_and_rmg_on_the_mind_the_gap_clip_file():
    pairs = np.load(CLIP).astype(np.float64)
    report = embspace.measure(image=pairs[0], text=pairs[1], metrics="spectrum,rmg", device="cpu")
    for i, name in enumerate(("image", "text")):
        assert report[f"alpha_req.{name}"] == pytest.approx(ref.alpha_req_reptrix(pairs[i]), abs=1e-6)
        assert report[f"rankme_covariance.{name}"] == pytest.approx(ref.rankme_covariance(pairs[i]), rel=1e-6)
    assert report["alpha_req.image"] == pytest.approx(0.977, abs=1e-3)
    assert report["alpha_req.text"] == pytest.approx(1.000, abs=1e-3)
    ols = embspace.measure(image=pairs[0], text=pairs[1], metrics="spectrum", device="cpu", alpha_req_fit="ols")
    assert ols["alpha_req.image"] == pytest.approx(2.22, abs=0.005)
    assert ols["alpha_req.text"] == pytest.approx(2.37, abs=0.005)
    assert report["rmg"] == pytest.approx(compute_rmg(torch.from_numpy(pairs[0]), torch.from_numpy(pairs[1])),
                                          abs=1e-6)
