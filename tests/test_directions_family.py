"""The directions family: measure's numbers are the closed forms of constructed data; it runs only with directions;
the CLI reads them from an .npz and refuses bad ones in one line."""

from __future__ import annotations

import itertools
import json

import numpy as np
import pytest
from typer.testing import CliRunner

import embspace
from embspace.cli import app
from embspace.errors import InputError

D = 6


def constructed():
    """Rows of equal norm r: every sign pattern of (±3, ±2, ±1) along u1, u2, u3, the image shifted by +a·u4 and the
    text by −b·u5 (so Δ̂ = (a·u4 + b·u5)/r' after normalising, and every unit row keeps the variances / r'²)."""
    q, _ = np.linalg.qr(np.random.default_rng(0).standard_normal((D, D)))
    u = q.T  # rows u1 … u6
    signs = np.array(list(itertools.product((-3.0, 3.0), (-2.0, 2.0), (-1.0, 1.0))))  # (8, 3)
    base = signs @ u[:3]
    x, y = base + 2.0 * u[3], base - 1.0 * u[4]  # ‖x_i‖² = 14 + 4, ‖y_i‖² = 14 + 1
    return x, y, u


def test_the_family_reports_the_closed_forms():
    x, y, u = constructed()
    directions = {"core": np.stack([u[0], u[0] + u[1]]), "spurious": u[2], "gapx": u[3:4]}
    report = embspace.measure(image=x, text=y, metrics="directions", directions=directions, precision="fp64")
    for name, r2 in (("image", 18.0), ("text", 15.0)):
        total = 14.0 / r2  # the constant offset carries no variance
        assert report[f"direction_variance.{name}/core"] == pytest.approx(13.0 / r2, abs=1e-12)
        assert report[f"direction_share.{name}/core"] == pytest.approx(13.0 / 14.0, abs=1e-12)
        assert report[f"direction_variance.{name}/spurious"] == pytest.approx(1.0 / r2, abs=1e-12)
        assert report[f"direction_share.{name}/gapx"] == pytest.approx(0.0, abs=1e-12)
        assert report[f"direction_variance.{name}/core"] / report[f"direction_share.{name}/core"] == pytest.approx(
            total, abs=1e-12)
    a, b = 2.0 / 18.0**0.5, 1.0 / 15.0**0.5  # Δ = a·u4 + b·u5
    assert report["gap_direction_share.gapx"] == pytest.approx(a**2 / (a**2 + b**2), abs=1e-12)
    assert report["gap_direction_share.core"] == pytest.approx(0.0, abs=1e-12)
    assert report.settings["directions"]["rank"] == {"core": 2, "spurious": 1, "gapx": 1}
    assert {"direction_variance", "direction_share", "gap_direction_share"} <= set(report.conventions)


def test_one_modality_gets_the_variances():
    x, _, u = constructed()
    report = embspace.measure(image=x, metrics="directions", directions={"core": u[:1]}, precision="fp64")
    assert report["direction_share.image/core"] == pytest.approx(9.0 / 14.0, abs=1e-12)
    assert "gap_direction_share" not in report.metrics


def test_it_runs_only_when_directions_are_given():
    x, y, u = constructed()
    report = embspace.measure(image=x, text=y, metrics="gap,cone")
    everything = embspace.measure(image=x, text=y)
    assert not {"direction_share", "direction_variance"} & (set(report.metrics) | set(everything.metrics))
    with pytest.raises(InputError, match="needs the directions"):
        embspace.measure(image=x, text=y, metrics="directions")
    with pytest.raises(InputError, match="directions:core: directions of dimension 3"):
        embspace.measure(image=x, text=y, metrics="directions", directions={"core": np.eye(3)})
    with pytest.raises(InputError, match="letters, digits"):
        embspace.measure(image=x, text=y, metrics="directions", directions={"a b": u[:1]})


def test_the_cli_reads_directions_from_an_npz(tmp_path):
    x, y, u = constructed()
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "y.npy", y)
    np.savez(tmp_path / "dirs.npz", core=np.stack([u[0], u[1]]), spurious=u[2])
    out = tmp_path / "r.json"
    result = CliRunner().invoke(app, ["measure", f"image={tmp_path / 'x.npy'}", f"text={tmp_path / 'y.npy'}",
                                      "--metrics", "directions,gap", "--precision", "fp64", "--directions",
                                      str(tmp_path / "dirs.npz"), "--json", str(out), "-q"])
    assert result.exit_code == 0, result.output
    metrics = json.loads(out.read_text())["metrics"]
    assert metrics["direction_share"]["image/core"] == pytest.approx(13.0 / 14.0, abs=1e-9)
    assert metrics["direction_share"]["text/spurious"] == pytest.approx(1.0 / 14.0, abs=1e-9)


@pytest.mark.parametrize(("content", "message"), [("missing", "no such directions file"),
                                                  ("text", "cannot read the directions"),
                                                  ("wrong_dim", "dirs.npz:core: directions of dimension 2")])
def test_the_cli_refuses_bad_directions_in_one_line(tmp_path, content, message):
    x, y, _ = constructed()
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "y.npy", y)
    path = tmp_path / "dirs.npz"
    if content == "text":
        path.write_text("not an npz")
    elif content == "wrong_dim":
        np.savez(path, core=np.eye(2))
    out = tmp_path / "r.json"
    result = CliRunner().invoke(app, ["measure", f"image={tmp_path / 'x.npy'}", f"text={tmp_path / 'y.npy'}",
                                      "--metrics", "directions", "--directions", str(path), "--json", str(out)])
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.exit_code == 2 and len(lines) == 1 and message in lines[0], result.stderr
    assert not out.exists()
