"""Open a page in headless Chromium: what rendered, which errors the console saw, and a screenshot.

:func:`check_page` loads a copy of the page with a small probe in its ``<head>`` that records uncaught errors and
``console.error`` calls and, once the page has settled, writes into the DOM what plotly drew (figures, their SVG
layers and WebGL canvases, the points of each trace); Chromium's ``--dump-dom`` returns that DOM. Chromium's own
console log (``--enable-logging=stderr``) is searched for uncaught errors as well. :func:`screenshot` takes a PNG.
Software WebGL (SwiftShader) draws the ``scattergl`` map without a GPU.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

__all__ = ["CHROMIUM_NAMES", "check_page", "find_chromium", "screenshot"]

CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--enable-unsafe-swiftshader", "--use-angle=swiftshader",
         "--hide-scrollbars", "--no-first-run", "--disable-extensions", "--mute-audio", "--enable-logging=stderr",
         "--v=0")
MARKER = "embspace-check"
PROBE = """<script>
window.__embspaceErrors = [];
window.addEventListener('error', function (e) { window.__embspaceErrors.push(String(e.message || e)); });
window.addEventListener('unhandledrejection', function (e) { window.__embspaceErrors.push(String(e.reason)); });
(function () {
  var original = console.error;
  console.error = function () {
    window.__embspaceErrors.push(Array.prototype.map.call(arguments, String).join(' '));
    return original.apply(console, arguments);
  };
})();
window.addEventListener('load', function () {
  setTimeout(function () {
    var figures = Array.prototype.slice.call(document.querySelectorAll('.js-plotly-plot'));
    var out = {errors: window.__embspaceErrors, sections: [], figures: {}};
    document.querySelectorAll('section').forEach(function (s) { out.sections.push(s.id); });
    figures.forEach(function (gd) {
      out.figures[gd.id] = {
        svg: gd.querySelectorAll('.main-svg').length,
        canvas: gd.querySelectorAll('canvas').length,
        traces: (gd._fullData || []).map(function (t) { return {type: t.type, points: t._length || 0}; })
      };
    });
    var pre = document.createElement('pre');
    pre.id = '%s';
    pre.textContent = JSON.stringify(out);
    document.body.appendChild(pre);
  }, 1500);
});
</script>""" % MARKER  # noqa: UP031  (a JavaScript body full of braces)


def find_chromium() -> str | None:
    """The path of a Chromium (or Chrome) binary on ``PATH``, or None."""
    for name in CHROMIUM_NAMES:
        found = shutil.which(name)
        if found:
            return found
    return None


def _run(binary: str, *args: str, timeout: float) -> subprocess.CompletedProcess:
    with tempfile.TemporaryDirectory(prefix="embspace-chromium-") as profile:
        env = {**os.environ, "HOME": profile}
        return subprocess.run([binary, *FLAGS, f"--user-data-dir={profile}", *args], capture_output=True,
                              text=True, timeout=timeout, env=env)


def check_page(page: str | os.PathLike[str], *, binary: str | None = None, budget_ms: int = 20_000,
               timeout: float = 240) -> dict[str, Any]:
    """Render ``page`` headless and return ``{"errors", "console_errors", "sections", "figures"}``: errors the page
    raised or logged, uncaught errors in Chromium's console log, the ids of its sections and, per plotly figure,
    its SVG layers, WebGL canvases and traces (type and number of points)."""
    binary = binary or find_chromium()
    if binary is None:
        raise FileNotFoundError("no chromium on PATH")
    text = Path(page).read_text(encoding="utf-8")
    probed = text.replace("<head>", "<head>" + PROBE, 1)
    with tempfile.TemporaryDirectory(prefix="embspace-page-") as folder:
        copy = Path(folder) / "probed.html"
        copy.write_text(probed, encoding="utf-8")
        done = _run(binary, f"--virtual-time-budget={budget_ms}", "--dump-dom", copy.as_uri(), timeout=timeout)
    match = re.search(rf'<pre id="{MARKER}">(.*?)</pre>', done.stdout, re.S)
    if match is None:
        raise RuntimeError(f"the page did not report back (chromium exit {done.returncode}): "
                           f"{done.stderr.strip().splitlines()[-1:] or ''}")
    import html

    found = json.loads(html.unescape(match.group(1)))
    found["console_errors"] = [line for line in done.stderr.splitlines()
                               if "CONSOLE" in line and re.search(r"Uncaught|TypeError|ReferenceError|SyntaxError",
                                                                  line)]
    return found


def screenshot(page: str | os.PathLike[str], png: str | os.PathLike[str], *, width: int = 1280, height: int = 4000,
               binary: str | None = None, budget_ms: int = 20_000, timeout: float = 240) -> Path:
    """A PNG of the page's first ``width`` × ``height`` pixels."""
    binary = binary or find_chromium()
    if binary is None:
        raise FileNotFoundError("no chromium on PATH")
    png = Path(png).resolve()
    done = _run(binary, f"--window-size={width},{height}", f"--virtual-time-budget={budget_ms}",
                f"--screenshot={png}", Path(page).resolve().as_uri(), timeout=timeout)
    if not png.is_file():
        raise RuntimeError(f"chromium wrote no screenshot (exit {done.returncode})")
    return png
