"""The notebooks run top to bottom (nbclient), are stored without outputs, and show their figures inline."""

from __future__ import annotations

import os

os.environ.setdefault("MPLBACKEND", "Agg")

import ast
import json
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = ROOT / "notebooks"
SAMPLE = ROOT / "embspace" / "data" / "sample.npz"
SHARED = ROOT.parent / "shared" / "data" / "mind-the-gap"
NEEDS_SAMPLE = {"01_quickstart.ipynb", "02_training_trajectory.ipynb", "04_labels_before_after.ipynb"}
ALL = sorted(p.name for p in NOTEBOOKS.glob("*.ipynb"))


def test_the_notebooks_are_stored_without_outputs():
    assert ALL == ["01_quickstart.ipynb", "02_training_trajectory.ipynb", "03_mind_the_gap_clip.ipynb",
                   "04_labels_before_after.ipynb", "05_synthetic_data_model.ipynb"]
    for name in ALL:
        cells = json.loads((NOTEBOOKS / name).read_text())["cells"]
        code = [c for c in cells if c["cell_type"] == "code"]
        assert code and all(not c["outputs"] and c["execution_count"] is None for c in code), name


@pytest.mark.parametrize("name", ALL)
def test_a_notebook_calls_each_function_by_one_name(name):
    """No ``from embspace.x import f as g`` beside ``embspace.f``: two functions of one name read as one."""
    cells = json.loads((NOTEBOOKS / name).read_text())["cells"]
    tree = ast.parse("\n".join("".join(c["source"]) for c in cells if c["cell_type"] == "code"))
    renamed = {a.name for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) for a in node.names
               if a.asname and a.asname != a.name}
    used = {node.attr for node in ast.walk(tree) if isinstance(node, ast.Attribute)
            and isinstance(node.value, ast.Name) and node.value.id == "embspace"}
    imported = [a.name for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) for a in node.names]
    assert not renamed & used and not set(imported) & used, (renamed & used) | (set(imported) & used)


@pytest.mark.parametrize("name", ALL)
def test_notebook_runs(name):
    nbclient = pytest.importorskip("nbclient")
    nbformat = pytest.importorskip("nbformat")
    pytest.importorskip("ipykernel")
    if name in NEEDS_SAMPLE and not SAMPLE.exists():
        pytest.skip("the bundled sample embspace/data/sample.npz is not built")
    notebook = nbformat.read(NOTEBOOKS / name, as_version=4)
    quiet_threads = {name: "1" for name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")}
    nbclient.NotebookClient(notebook, timeout=240, kernel_name="python3",
                            resources={"metadata": {"path": str(NOTEBOOKS)}}).execute(env={**os.environ,
                                                                                           **quiet_threads})
    outputs = [o for cell in notebook.cells if cell.cell_type == "code" for o in cell.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    # nothing on stderr (a warning, a progress bar) and no table cell that is None
    assert not [o.text for o in outputs if o.output_type == "stream" and o.name == "stderr"]
    tables = [o.data["text/html"] for o in outputs if "<table" in o.get("data", {}).get("text/html", "")]
    assert not [t for t in tables if re.search(r"<td>\s*(None|NaN|nan)\s*</td>", t)]
    images = [o for o in outputs if "image/png" in o.get("data", {})]
    if name == "03_mind_the_gap_clip.ipynb" and not (SHARED / "features_clip.npy").exists():
        assert any("skipping" in o.get("text", "") for o in outputs) and not images
    else:
        assert len(images) >= 3  # the figures show inline
        assert any("text/html" in o.get("data", {}) for o in outputs)  # the report / trajectory tables
