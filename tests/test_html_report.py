"""The self-contained HTML page (`embspace report --html`, `embspace.html_report`, `Report/Trajectory.to_html`):
what it holds, the output rules, and — where Chromium is installed — that a real browser renders it with no console
errors, every figure drawn, the WebGL map holding every point."""

from __future__ import annotations

import html
import re
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

import embspace
from embspace.cli import app
from embspace.page import html_report
from embspace.page.browser import check_page, find_chromium, screenshot
from embspace.report import format_value
from tests import reference as ref

METRICS = "gap,alignment,uniformity,cone,spectrum,histograms,retrieval"
CHROMIUM = find_chromium()
needs_chromium = pytest.mark.skipif(CHROMIUM is None, reason="needs chromium (apt-get install -y chromium)")


def cli(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


@pytest.fixture(scope="module")
def disk(tmp_path_factory) -> Path:
    """A run of three steps, two reports and the stacks behind them, and captions."""
    root = tmp_path_factory.mktemp("page")
    x, y = ref.paired_data("cone", 300, 8, seed=0)
    after = ref.unit(y + 0.8 * x)
    np.save(root / "before.npy", np.stack([x, y]).astype(np.float32))
    np.save(root / "after.npy", np.stack([x, after]).astype(np.float32))
    np.savez(root / "meta.npz", captions=np.array([f"caption <{i}>" for i in range(300)]))
    embspace.measure(image=x, text=y, metrics=METRICS).to_json(root / "before.json")
    embspace.measure(image=x, text=after, metrics=METRICS).to_json(root / "after.json")
    dumps = {step: {"image": x, "text": ref.unit(y + step / 4 * x)} for step in (0, 2, 4)}
    embspace.measure_trajectory(dumps, metrics=METRICS, out=root / "run", name="run-a")
    return root


def test_the_page_holds_every_section_and_needs_no_network(disk):
    run = embspace.Trajectory.from_json(disk / "run")
    x, y = np.load(disk / "before.npy")
    page = html_report(run, map_data={"image": x, "text": y}, captions=[f"cap {i}" for i in range(300)])
    assert page.startswith("<!DOCTYPE html>")
    sections = re.findall(r"<section id='(\w+)'>", page)
    assert sections == ["metrics", "curves", "plane", "spectra", "histograms", "comparison", "map"]
    assert page.count("Plotly.newPlot(") == 5  # curves, plane, spectra, histograms, map
    from plotly.offline import get_plotlyjs

    bundle = get_plotlyjs()
    assert page.count(bundle) == 1  # plotly.js embedded whole, once
    rest = page.replace(bundle, "")
    assert not re.search(r"""(src|href)=['"]?(https?:)?//""", rest)  # nothing fetched when viewed
    assert "<script src" not in rest and "<link" not in rest
    last = run.reports[-1]
    for path in ("gap", "alignment", "uniformity.mean"):  # the table shows the last point's numbers
        assert f"<td class='num'>{format_value(last[path])}</td>" in page
    assert "scattergl" in page and "cap 17" in page and "partner: text row 17" in page


def test_two_reports_with_their_data_get_noise_verdicts(disk):
    before, after = (embspace.Report.from_json(disk / f"{n}.json") for n in ("before", "after"))
    a, b = np.load(disk / "before.npy"), np.load(disk / "after.npy")
    data_before, data_after = {"image": a[0], "text": a[1]}, {"image": b[0], "text": b[1]}
    page = html_report([before, after], data_before=data_before, data_after=data_after, resamples=100)
    comparison = embspace.compare(before, after, data_before=data_before, data_after=data_after, resamples=100)
    table = page.split("<table class='comparison'>")[1].split("</table>")[0]
    tested = comparison.significance.metrics
    shown = [c.path for c in comparison.changes if c.path in tested]  # the numbers both reports have, as the CLI
    assert len(shown) >= 10
    for path in shown:
        entry = tested[path]
        row = re.search(rf"<tr><td>{re.escape(html.escape(path))}</td>.*?</tr>", table).group(0)
        assert html.escape(entry.verdict()) in row and html.escape(entry.ci_text()) in row
    # the gap moved far beyond its noise (the texts were pulled towards the images)
    assert ref.gap(a[0], a[1]) - ref.gap(b[0], b[1]) > 0.1
    assert re.search(r"<tr><td>gap</td>.*?class='beyond'", table)


def test_jupyter_shows_the_same_sections(disk):
    run = embspace.Trajectory.from_json(disk / "run")
    fragment, page = run._repr_html_(), run.to_html()
    assert fragment.startswith("<div class='embspace-page'>")
    assert re.findall(r"<section id='(\w+)'>", fragment) == re.findall(r"<section id='(\w+)'>", page)
    report = embspace.Report.from_json(disk / "before.json")
    assert re.findall(r"<section id='(\w+)'>", report._repr_html_()) == ["metrics", "plane", "spectra",
                                                                          "histograms"]


def test_cli_writes_the_page_and_follows_the_output_rules(disk, tmp_path):
    page = tmp_path / "page.html"
    result = cli("report", disk / "run", "--map", f"pairs={disk / 'before.npy'}", "--captions",
                 f"{disk / 'meta.npz'}:captions", "--html", page)
    assert result.exit_code == 0, result.output
    text = page.read_text()
    assert "caption &lt;5&gt;" in text and "<section id='map'>" in text  # captions escaped, not markup
    (tmp_path / "folder.html").mkdir()
    before = (disk / "before.json").read_bytes()
    refused = cli("report", disk / "before.json", "--html", disk / "before.json")
    assert refused.exit_code == 2 and "error:" in refused.output and "Traceback" not in refused.output
    assert (disk / "before.json").read_bytes() == before  # the input is untouched
    for args, message in (((disk / "run",), "--html"), ((disk / "run", "--html", tmp_path / "p.txt"), ".html"),
                          ((disk / "run", "--html", tmp_path / "folder.html"), "directory"),
                          ((disk / "run", "--map", f"pairs={disk / 'before.npy'}", "--captions",
                            f"{disk / 'meta.npz'}:nope", "--html", tmp_path / "q.html"), "no key 'nope'"),
                          ((disk / "run", "--data-before", "pairs=x.npy", "--html", tmp_path / "r.html"),
                           "both --data-before")):
        result = cli("report", *args)
        assert result.exit_code == 2 and message in result.output, result.output
    assert not (tmp_path / "q.html").exists() and not (tmp_path / "r.html").exists()
    link = tmp_path / "link.html"
    link.symlink_to(disk / "after.json")
    assert cli("report", disk / "after.json", "--html", link).exit_code == 2  # a link to an input


@needs_chromium
@pytest.mark.slow
def test_chromium_renders_the_page_with_every_figure_and_no_console_error(disk, tmp_path):
    n = 20_000  # tens of thousands of points on the WebGL map
    rng = np.random.default_rng(0)
    x = rng.normal(size=(n, 16)) + 2.0
    y = rng.normal(size=(n, 16)) - 2.0 + 0.5 * x
    run = embspace.Trajectory.from_json(disk / "run")
    page = tmp_path / "page.html"
    run.to_html(page, map_data={"image": x, "text": y}, ids=[f"id{i}" for i in range(n)])
    found = check_page(page, binary=CHROMIUM)
    assert found["errors"] == [] and found["console_errors"] == []
    assert found["sections"] == ["metrics", "curves", "plane", "spectra", "histograms", "comparison", "map"]
    figures = found["figures"]
    assert set(figures) == {f"embspace-{k}-page" for k in ("curves", "plane", "spectra", "histograms", "map")}
    assert all(f["svg"] >= 1 for f in figures.values())  # every figure drew its axes
    curves = figures["embspace-curves-page"]["traces"]
    assert curves and all(t["points"] == 3 for t in curves)  # one point per step
    spectra = figures["embspace-spectra-page"]["traces"]
    assert [t["points"] for t in spectra] == [8, 8]  # σ_1 … σ_8 of each modality
    gl = figures["embspace-map-page"]
    assert [t["type"] for t in gl["traces"]] == ["scattergl", "scattergl"]
    assert [t["points"] for t in gl["traces"]] == [n, n] and gl["canvas"] >= 1
    png = screenshot(page, tmp_path / "shot.png", height=1200, binary=CHROMIUM)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 50_000
