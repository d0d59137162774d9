"""`Trajectory`: reports of the same space at several training steps (or epochs), ordered by step.

Steps come from the dumps' names or are given explicitly (:mod:`embspace.checkpoints`). The JSON form (schema
``embspace.trajectory/1``) lists the points in step order, each with its report either embedded or as a path
relative to the trajectory file::

    {"schema": "embspace.trajectory/1", "embspace_version": "…", "created": "…", "name": "run-a", "unit": "epoch",
     "points": [{"step": 2, "label": "ckpt_epoch2", "report": "ckpt_epoch2.json"},
                {"step": 10, "label": "ckpt_epoch10", "report": {"schema": "embspace.report/1", …}}]}

>>> import numpy as np, embspace
>>> rng = np.random.default_rng(0)
>>> dumps = {step: {"image": rng.normal(size=(50, 8)) + step, "text": rng.normal(size=(50, 8))} for step in (0, 5)}
>>> trajectory = embspace.measure_trajectory(dumps, metrics="gap")
>>> trajectory.steps, trajectory.to_frame().columns.tolist()
([0, 5], ['gap', 'centroid_cosine'])
"""

from __future__ import annotations

import itertools
import json
import os
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from functools import partial
from pathlib import Path
from typing import Any, Union

import numpy as np

from embspace import defaults
from embspace.checkpoints import Step, dump_labels, find_dumps, natural_key, parse_steps, step_from_name
from embspace.errors import InputError
from embspace.io.atomic import atomic_write_text
from embspace.report import Report, parse_json, read_json_text
from embspace.version import __version__

__all__ = ["FILE_NAME", "SCHEMA", "Trajectory", "dump_labels", "find_dumps", "measure_trajectory", "natural_key",
           "read_reports", "sample_snapshots", "step_from_name"]

SCHEMA = "embspace.trajectory/1"
FILE_NAME = "trajectory.json"
SUMMARY_METRICS = ("gap", "alignment", "rmg", "uniformity", "cone", "recall@1", "rankme")
"""Metric families shown in the summary table (HTML and terminal), when a report has them."""

Dump = Union[str, os.PathLike, Sequence[str], Mapping[str, Any], Callable[[], Mapping[str, Any]]]  # noqa: UP007


# ---- steps and names (finding, naming and stepping the dumps: embspace.checkpoints) -----------------------
def step_order(steps: Sequence[Step], labels: Sequence[str]) -> list[int]:
    """Indices that sort by step; two dumps with the same step are refused."""
    order = sorted(range(len(steps)), key=lambda i: steps[i])
    for a, b in itertools.pairwise(order):
        if steps[a] == steps[b]:
            raise InputError(labels[b], f"step {steps[b]} is also the step of {labels[a]!r}; "
                                        "each dump needs its own step (see step_pattern=, steps=)")
    return order


def file_names(labels: Sequence[str]) -> list[str]:
    """A distinct report file name per label (characters other than letters, digits, ``.+-_`` become ``_``)."""
    names: list[str] = []
    for label in labels:
        stem = re.sub(r"[^\w.+\-]", "_", label).strip(".") or "report"
        name, n = f"{stem}.json", 1
        while name in names or name == FILE_NAME:
            n += 1
            name = f"{stem}_{n}.json"
        names.append(name)
    return names


# ---- the trajectory --------------------------------------------------------------------------------------------
@dataclass
class Trajectory:
    """Reports at several steps, in step order; iterates as ``(step, report)`` pairs.

    Attributes:
        steps: the step (or epoch) of each report, increasing.
        reports: one :class:`~embspace.report.Report` per step.
        labels: a name per step (the dump's file name by default).
        paths: where each report lies on disk (None for one only in memory).
        name: the run's name (used in legends when runs are overlaid).
        unit: what a step counts (``"step"``, ``"epoch"``); the x-axis label of curves.
    """

    steps: list[Step]
    reports: list[Report]
    labels: list[str] = field(default_factory=list)
    paths: list[str | None] = field(default_factory=list)
    name: str = ""
    unit: str = "step"

    def __post_init__(self) -> None:
        n = len(self.steps)
        self.labels = list(self.labels) or [f"{self.unit} {s}" for s in self.steps]
        self.paths = list(self.paths) or [None] * n
        if not len(self.reports) == len(self.labels) == len(self.paths) == n:
            raise ValueError("steps, reports, labels and paths must have the same length")
        order = step_order(self.steps, self.labels)
        self.steps, self.reports, self.labels, self.paths = (
            [seq[i] for i in order] for seq in (self.steps, self.reports, self.labels, self.paths))

    # ---- access -------------------------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.steps)

    def __iter__(self) -> Iterator[tuple[Step, Report]]:
        return iter(zip(self.steps, self.reports, strict=True))

    def __getitem__(self, index: int) -> tuple[Step, Report]:
        return self.steps[index], self.reports[index]

    def at(self, step: Step) -> Report:
        """The report at ``step``."""
        if step not in self.steps:
            raise KeyError(f"no step {step}; steps are {self.steps}")
        return self.reports[self.steps.index(step)]

    def values(self, path: str) -> np.ndarray:
        """One number per step by dotted path (``"uniformity.mean"``), NaN where a report lacks it."""
        out = np.full(len(self), np.nan)
        for i, report in enumerate(self.reports):
            value = report.flat().get(path)
            if isinstance(value, int | float) and not isinstance(value, bool):
                out[i] = value
        return out

    def paths_of(self, metric: str) -> list[str]:
        """The dotted paths a name stands for: itself if it is one number, else every key of that family."""
        seen: dict[str, None] = {}
        for report in self.reports:
            for path in report.flat():
                if path == metric or path.partition(".")[0] == metric:
                    seen[path] = None
        return list(seen)

    def to_frame(self):  # -> pandas.DataFrame
        """One row per step (index named by ``unit``), one column per dotted metric path."""
        import pandas as pd

        frame = pd.DataFrame([report.flat() for report in self.reports], index=pd.Index(self.steps, name=self.unit))
        return frame.astype(float)

    # ---- JSON ---------------------------------------------------------------------------------------------
    def to_dict(self, *, embed: bool | None = None, base: str | os.PathLike[str] | None = None) -> dict[str, Any]:
        """The JSON object; reports embedded when ``embed`` (default: when any report has no file), else their
        paths, relative to ``base`` when given."""
        embed = any(p is None for p in self.paths) if embed is None else embed
        points = []
        for step, label, report, path in zip(self.steps, self.labels, self.reports, self.paths, strict=True):
            if embed or path is None:
                ref: Any = report.to_dict()
            else:
                ref = os.path.relpath(os.path.abspath(path), os.path.abspath(base)) if base is not None else str(path)
            points.append({"step": step, "label": label, "report": ref})
        return {"schema": SCHEMA, "embspace_version": __version__,
                "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                "name": self.name, "unit": self.unit, "points": points}

    def to_json(self, path: str | os.PathLike[str] | None = None, *, embed: bool | None = None,
                indent: int = 2) -> str:
        """The JSON text; written atomically to ``path`` when given (report paths then relative to its folder)."""
        base = Path(path).parent if path is not None else None
        data = self.to_dict(embed=embed, base=base)
        text = json.dumps(data, indent=indent, allow_nan=False, default=_jsonable) + "\n"
        if path is not None:
            atomic_write_text(path, text)
        return text

    @classmethod
    def from_dict(cls, data: Any, where: str = "<dict>", base: str | os.PathLike[str] = ".") -> Trajectory:
        """Read the JSON object; report paths are resolved against ``base``."""
        if not isinstance(data, dict) or data.get("schema") != SCHEMA:
            found = data.get("schema") if isinstance(data, dict) else type(data).__name__
            raise InputError(where, f"not an embspace trajectory (schema {found!r}, expected {SCHEMA!r})")
        points = data.get("points")
        if not isinstance(points, list) or not points:
            raise InputError(where, "trajectory has no points")
        steps, reports, labels, paths = [], [], [], []
        for i, point in enumerate(points):
            if not isinstance(point, dict) or not isinstance(point.get("step"), int | float) or "report" not in point:
                raise InputError(where, f"point {i} needs a numeric 'step' and a 'report'")
            ref = point["report"]
            if isinstance(ref, str):
                path = Path(base) / ref
                reports.append(Report.from_json(path))
                paths.append(str(path))
            else:
                reports.append(Report.from_dict(ref, f"{where}: point {i}"))
                paths.append(None)
            steps.append(point["step"])
            labels.append(str(point.get("label", f"{data.get('unit', 'step')} {point['step']}")))
        return cls(steps, reports, labels, paths, name=str(data.get("name", "")), unit=str(data.get("unit", "step")))

    @classmethod
    def from_json(cls, source: str | os.PathLike[str]) -> Trajectory:
        """Read a trajectory from a file (or from a folder holding ``trajectory.json``), or from JSON text."""
        text, where, base = str(source), "<json>", Path(".")
        if not text.lstrip().startswith("{"):
            path = Path(source)
            path = path / FILE_NAME if path.is_dir() else path
            where, base = str(path), path.parent
            text = read_json_text(path)  # a regular file only: a fifo or device is refused, not waited on
        data = parse_json(text, where)  # invalid or too deeply nested JSON: one line
        return cls.from_dict(data, where, base)

    # ---- views --------------------------------------------------------------------------------------------
    def summary(self, families: Sequence[str] = SUMMARY_METRICS) -> tuple[list[str], list[list[Any]]]:
        """(column names, rows): step, label and the numbers of the given families that the reports have."""
        columns = [p for family in families for p in self.paths_of(family)]
        rows = [[step, label, *(report.flat().get(p) for p in columns)]
                for step, label, report in zip(self.steps, self.labels, self.reports, strict=True)]
        return [self.unit, "label", *columns], rows

    def __repr__(self) -> str:
        span = f"{self.steps[0]} … {self.steps[-1]}" if self.steps else "empty"
        name = f"{self.name!r}, " if self.name else ""
        return f"Trajectory({name}{len(self)} {self.unit}s: {span})"

    def to_html(self, path: str | os.PathLike[str] | None = None, **options: Any) -> str:
        """The self-contained HTML page of this run (:func:`embspace.page.render.render_page`: table, curves,
        plane, spectra, histograms, its first against its last point); written atomically to ``path`` when given.
        :func:`embspace.html_report` adds the noise verdicts of that comparison given the embeddings."""
        from embspace.page.render import render_page

        if "comparison" not in options and len(self) >= 2:
            from embspace.compare import compare

            options["comparison"] = compare(self.reports[0], self.reports[-1])
        page = render_page(self, **options)
        if path is not None:
            atomic_write_text(path, page)
        return page

    def _repr_html_(self) -> str:
        """Jupyter shows what :meth:`to_html` writes (the same sections, as a fragment)."""
        return self.to_html(fragment=True)

def read_reports(source: str | os.PathLike[str]) -> Report | Trajectory:
    """The report or the trajectory a JSON file holds, told apart by its ``schema`` (a folder means its
    ``trajectory.json``). Read as :meth:`Report.from_json` reads: a regular file only (a fifo or device is refused,
    not waited on), invalid or too deeply nested JSON refused in one line."""
    path = Path(source)
    if path.is_dir():
        path = path / FILE_NAME
    data = parse_json(read_json_text(path), str(path))
    schema = data.get("schema", "") if isinstance(data, dict) else ""
    if str(schema).startswith(SCHEMA.partition("/")[0] + "/"):
        return Trajectory.from_dict(data, str(path), path.parent)
    return Report.from_dict(data, str(path))


# ---- measuring -------------------------------------------------------------------------------------------------
def measure_trajectory(
    dumps: Sequence[Dump] | Mapping[Step, Dump],
    *,
    steps: Sequence[Step] | str | None = None,
    labels: Sequence[str] | None = None,
    step_pattern: str | None = None,
    names: Sequence[str] = defaults.PAIR_NAMES,
    out: str | os.PathLike[str] | None = None,
    name: str = "",
    unit: str = defaults.UNIT,
    progress: bool = False,
    **options: Any,
) -> Trajectory:
    """Measure every dump of a run and order the reports by step.

    Args:
        dumps: one entry per checkpoint, or ``{step: entry}``. An entry is a path (read as ``pairs=PATH``: a
            (2, N, D) stack or a clip-retrieval folder), a list of specs (``["image=e3.npz:img", "text=e3.npz:txt"]``),
            a mapping of modality name to array / tensor / :class:`~embspace.embeddings.Embeddings`, or a function
            returning such a mapping (called when that entry is measured, so only one is in memory at a time).
            :func:`embspace.checkpoints.checkpoint_dumps` finds a run's dumps by glob and spec template (``{}``), as
            ``embspace measure --each`` does, and gives their labels.
        steps: the step of each entry (or ``"0,100,200"``); by default read from its label by ``step_pattern``.
        labels: a name per entry; by default the varying part of its file name (``ckpt_epoch12``).
        step_pattern: regular expression whose last match in a label is the step (its first group if it has one);
            default: the last integer.
        names: the two modality names of ``pairs=`` stacks.
        out: folder to write ``<label>.json`` per entry (as each is done) and ``trajectory.json`` into. Every
            entry but a function is opened and validated first (:func:`embspace.measure.check_inputs`, a streamed
            scan), so that a bad dump is refused before any report is written.
        name, unit: the run's name (legends) and what a step counts (``"epoch"``; axis labels).
        progress: progress bars on stderr (one over entries, one within each measurement).
        **options: passed to :func:`embspace.measure` (``metrics``, ``t``, ``device``, …).
    """
    from embspace.measure import check_inputs, measure

    if isinstance(dumps, Mapping):
        if steps is not None:
            raise InputError("steps", "steps come from the mapping's keys; do not give steps= too")
        steps, entries = list(dumps), list(dumps.values())
    else:
        entries, steps = list(dumps), parse_steps(steps)
    if not entries:
        raise InputError("dumps", "no dumps to measure")
    if labels is None:
        labels = _default_labels(entries, steps, unit)
    if steps is None:
        steps = [step_from_name(label, step_pattern) for label in labels]
    if not len(steps) == len(labels) == len(entries):
        raise InputError("steps", f"{len(entries)} dumps but {len(steps)} steps and {len(labels)} labels")
    order = step_order(steps, labels)
    checked = {key: options[key] for key in ("metrics", "device", "memory", "tile", "drop_invalid") if key in options}
    for i in order:  # bad input: one line, before anything is measured or written
        if not callable(entries[i]):
            check_inputs(_open(entries[i], names), **checked)
    folder = Path(out) if out is not None else None
    if folder is not None:
        folder.mkdir(parents=True, exist_ok=True)
    files = file_names(labels)
    reports, paths = [], []
    shown = order
    if progress:  # tqdm.auto is imported only for a bar: in Jupyter without ipywidgets it warns on import
        from tqdm.auto import tqdm

        shown = tqdm(order, desc="checkpoints", unit="dump", leave=False)
    for i in shown:
        report = measure(_open(entries[i], names), progress=progress, **options)
        path = None
        if folder is not None:
            path = str(folder / files[i])
            report.to_json(path)
        reports.append(report)
        paths.append(path)
    trajectory = Trajectory([steps[i] for i in order], reports, [labels[i] for i in order], paths, name=name,
                            unit=unit)
    if folder is not None:
        trajectory.to_json(folder / FILE_NAME)
    return trajectory


def sample_snapshots() -> dict[int, Callable[[], Mapping[str, Any]]]:
    """The bundled sample's training snapshots as ``{step: loader}``, for :func:`measure_trajectory`."""
    from embspace.data import sample_embeddings, sample_steps

    return {step: partial(sample_embeddings, step) for step in sample_steps()}


def _open(entry: Dump, names: Sequence[str]) -> Mapping[str, Any]:
    from embspace.io import load

    if isinstance(entry, str | os.PathLike):
        return load([f"pairs={os.fspath(entry)}"], tuple(names))
    if isinstance(entry, Mapping):
        return entry
    if callable(entry):
        return entry()
    return load(list(entry), tuple(names))


def _default_labels(entries: list[Dump], steps: Sequence[Step] | None, unit: str) -> list[str]:
    """Labels from the entries' paths (the spec whose path differs between entries), else from the steps."""
    from embspace.io import parse_spec

    columns: list[list[str]] = []
    for entry in entries:
        if isinstance(entry, str | os.PathLike):
            columns.append([os.fspath(entry)])
        elif isinstance(entry, Sequence) and not isinstance(entry, Mapping):
            columns.append([str(parse_spec(spec).path) for spec in entry])
        else:
            columns = []
            break
    if columns and len({len(c) for c in columns}) == 1:
        varying = [j for j in range(len(columns[0])) if len({c[j] for c in columns}) > 1]
        return dump_labels([c[varying[0] if varying else 0] for c in columns])
    if steps is None:
        raise InputError("labels", "in-memory dumps need steps= (or labels= to read steps from)")
    return [f"{unit}{s}" for s in steps]


def _jsonable(value: Any) -> Any:
    if hasattr(value, "tolist"):
        return value.tolist()
    raise TypeError(f"cannot write {type(value).__name__} to JSON")
