"""The dumps of a training run on disk: found by glob or folder, named, and given a step each.

Steps come from the dumps' names — by default the last integer in the name (``ckpt_epoch12.npy`` → 12, so
``epoch2`` sorts before ``epoch10``), or the last match of a regular expression (its first group, if it has one) —
or are given explicitly (:func:`parse_steps`). :func:`checkpoint_dumps` turns glob patterns and spec templates
(``image={}:img``, ``{}`` standing for each matched path) into the entries :func:`embspace.measure_trajectory`
measures, with their labels — what ``embspace measure --each`` does, for a notebook too:

>>> import numpy as np, embspace, tempfile, pathlib
>>> folder = pathlib.Path(tempfile.mkdtemp())
>>> for epoch in (10, 2):
...     np.savez(folder / f"ckpt_epoch{epoch}.npz", img=np.eye(4) + epoch, txt=np.eye(4))
>>> run = checkpoint_dumps([str(folder / "*.npz")], ["image={}:img", "text={}:txt"])
>>> run.labels, [step_from_name(label) for label in run.labels]
(['ckpt_epoch2', 'ckpt_epoch10'], [2, 10])
>>> embspace.measure_trajectory(run.dumps, labels=run.labels, metrics="gap").steps
[2, 10]
"""

from __future__ import annotations

import glob
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Union

from embspace.errors import InputError

Step = Union[int, float]  # noqa: UP007  (a runtime alias; ``int | float`` is the same)
PLACEHOLDER = "{}"
"""Where the matched path goes in a spec template (``image={}:img``)."""
DEFAULT_TEMPLATES = (f"pairs={PLACEHOLDER}",)
"""Without templates each matched dump is read as a (2, N, D) stack or a clip-retrieval folder."""


def step_from_name(name: str, pattern: str | None = None) -> Step:
    """The step in a dump's name: the last integer by default, else the last match of ``pattern``.

    >>> step_from_name("ckpt_epoch12"), step_from_name("run3/epoch_7"), step_from_name("lr1e-3_it500", r"it(\\d+)")
    (12, 7, 500)
    """
    try:
        matches = list(re.finditer(pattern or r"\d+", name))
    except re.error as exc:
        raise InputError("step_pattern", f"invalid regular expression {pattern!r}: {exc}") from None
    if not matches:
        how = f"the pattern {pattern!r}" if pattern else "no integer"
        raise InputError(name, f"cannot read a step from the name ({how} matches); give step_pattern or steps")
    match = matches[-1]
    text = match.group(1) if match.re.groups else match.group(0)
    try:
        return int(text)
    except ValueError:
        try:
            return float(text)
        except ValueError:
            raise InputError(name, f"the step pattern matched {text!r}, which is not a number") from None


def parse_steps(text: str | Sequence[Step] | None) -> list[Step] | None:
    """Steps given explicitly: ``"0,100,200"`` → ``[0, 100, 200]`` (``2.5`` and ``1e3`` are floats); a list is kept.

    >>> parse_steps("0, 100,2.5")
    [0, 100, 2.5]
    """
    if text is None or not isinstance(text, str):
        return None if text is None else list(text)
    try:
        return [float(v) if "." in v or "e" in v.lower() else int(v) for v in (p.strip() for p in text.split(",")) if v]
    except ValueError:
        raise InputError("steps", f"{text!r}: expected numbers separated by commas (0,100,200)") from None


def natural_key(text: str) -> list[Any]:
    """Sort key that orders digit runs by value: ``epoch2`` before ``epoch10``."""
    return [(0, int(part), "") if part.isdigit() else (1, 0, part) for part in re.split(r"(\d+)", text) if part]


def find_dumps(patterns: Sequence[str]) -> list[Path]:
    """Every dump a pattern names: a glob (``ckpts/*.npy``), a folder of dumps, or one path; natural order."""
    from embspace.io import SUPPORTED_SUFFIXES
    from embspace.io.clip_retrieval import is_clip_retrieval_folder

    found: list[Path] = []
    for pattern in patterns:
        path = Path(pattern)
        if path.is_dir() and not is_clip_retrieval_folder(path):
            matches = [p for p in path.iterdir() if not p.name.startswith(".") and (
                (p.is_file() and p.suffix.lower() in SUPPORTED_SUFFIXES) or is_clip_retrieval_folder(p))]
        elif glob.has_magic(pattern):
            matches = [Path(p) for p in glob.glob(pattern)]
        else:
            matches = [path] if path.exists() else []
        if not matches:
            raise InputError(pattern, "matches no dump" if path.is_dir() or glob.has_magic(pattern)
                             else "no such file or folder")
        found += [p for p in sorted(matches, key=lambda p: natural_key(str(p))) if p not in found]
    return found


def dump_labels(paths: Sequence[str | os.PathLike[str]]) -> list[str]:
    """Short unique names: each path relative to the folder all share, suffix dropped, ``/`` → ``_``.

    >>> dump_labels(["ckpts/ckpt_epoch2.npy", "ckpts/ckpt_epoch10.npy"])
    ['ckpt_epoch2', 'ckpt_epoch10']
    """
    absolute = [os.path.abspath(p) for p in paths]
    if not absolute:
        return []
    common = os.path.commonpath([os.path.dirname(p) for p in absolute])
    labels = []
    for path in absolute:
        relative = Path(os.path.relpath(path, common))
        labels.append(str(relative.with_suffix("") if relative.suffix else relative).replace(os.sep, "_"))
    return labels


def check_templates(templates: Sequence[str]) -> list[str]:
    """Spec templates, each ``NAME=PATH[:KEY]`` with ``{}`` in at least one of them; none → ``pairs={}``."""
    templates = list(templates) or list(DEFAULT_TEMPLATES)
    for spec in templates:
        if "=" not in spec:
            raise InputError(spec, "not a spec template NAME=PATH[:KEY]; quote a glob pattern so that the shell does "
                                   "not expand it ('ckpts/*.npy')")
    if not any(PLACEHOLDER in spec for spec in templates):
        raise InputError("templates", f"write {PLACEHOLDER} in a spec where the matched path goes (e.g. "
                                      f"image={PLACEHOLDER}:img text={PLACEHOLDER}:txt)")
    return templates


@dataclass(frozen=True)
class Checkpoints:
    """The dumps of a run, in natural order: ``dumps[i]`` is the list of specs of ``paths[i]``, named ``labels[i]``."""

    paths: list[Path]
    dumps: list[list[str]]
    labels: list[str]


def checkpoint_dumps(patterns: Sequence[str], templates: Sequence[str] = ()) -> Checkpoints:
    """Every dump the glob patterns (or folders) match, as specs with each path put in place of ``{}`` in the
    ``templates`` (default ``pairs={}``), and a label per dump (:func:`dump_labels`): what
    :func:`embspace.measure_trajectory` takes as ``dumps`` and ``labels``."""
    templates = check_templates(templates)
    paths = find_dumps(patterns)
    dumps = [[spec.replace(PLACEHOLDER, str(path)) for spec in templates] for path in paths]
    return Checkpoints(paths, dumps, dump_labels(paths))
