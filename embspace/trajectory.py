"""`Trajectory`: reports of the same space at several training steps (or epochs), ordered by step.

Steps come from the dumps' names — by default the last integer in the name (``ckpt_epoch12.npy`` → 12, so
``epoch2`` sorts before ``epoch10``), or the last match of a regular expression (its first group, if it has one) —
or are given explicitly. The JSON form (schema ``embspace.trajectory/1``) lists the points in step order, each with
its report either embedded or as a path relative to the trajectory file::

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

import glob
import html
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

from embspace.errors import InputError
from embspace.io.atomic import atomic_write_text
from embspace.report import Report, format_value, parse_json, read_json_text

SCHEMA = "embspace.trajectory/1"
FILE_NAME = "trajectory.json"
SUMMARY_METRICS = ("gap", "alignment", "rmg", "uniformity", "cone", "recall@1", "rankme")
"""Metric families shown in the summary table (HTML and terminal), when a report has them."""

Step = Union[int, float]  # noqa: UP007  (a runtime alias; ``int | float`` is the same)
Dump = Union[str, os.PathLike, Sequence[str], Mapping[str, Any], Callable[[], Mapping[str, Any]]]  # noqa: UP007


# ---- steps and names -------------------------------------------------------------------------------------------
def step_from_name(name: str, pattern: str | None = None) -> Step:
    """The step in a dump's name: the last integer by default, else the last match of ``pattern``.

    >>> step_from_name("ckpt_epoch12"), step_from_name("run3/epoch_7"), step_from_name("lr1e-3_it500", r"it(\\d+)")
    (12, 7, 500)
    """
    try:
        matches = list(re.finditer(pattern or r"\d+", name))
    except re.error as exc:
        raise InputError("--step-pattern", f"invalid regular expression {pattern!r}: {exc}") from None
    if not matches:
        how = f"the pattern {pattern!r}" if pattern else "no integer"
        raise InputError(name, f"cannot read a step from the name ({how} matches); give --step-pattern or --steps")
    match = matches[-1]
    text = match.group(1) if match.re.groups else match.group(0)
    try:
        return int(text)
    except ValueError:
        try:
            return float(text)
        except ValueError:
            raise InputError(name, f"the step pattern matched {text!r}, which is not a number") from None


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


def step_order(steps: Sequence[Step], labels: Sequence[str]) -> list[int]:
    """Indices that sort by step; two dumps with the same step are refused."""
    order = sorted(range(len(steps)), key=lambda i: steps[i])
    for a, b in itertools.pairwise(order):
        if steps[a] == steps[b]:
            raise InputError(labels[b], f"step {steps[b]} is also the step of {labels[a]!r}; "
                                        "each dump needs its own step (see --step-pattern, --steps)")
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

    @classmethod
    def from_reports(cls, reports: Mapping[Step, Report] | Sequence[tuple[Step, Report]], **kwargs: Any) -> Trajectory:
        """From ``{step: report}`` or ``[(step, report), …]`` (reports or paths to report JSON)."""
        items = list(reports.items()) if isinstance(reports, Mapping) else list(reports)
        loaded = [r if isinstance(r, Report) else Report.from_json(r) for _, r in items]
        return cls([s for s, _ in items], loaded, **kwargs)

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
        from embspace import __version__

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

    def _repr_html_(self) -> str:
        columns, rows = self.summary()
        head = "".join(f"<th>{html.escape(c)}</th>" for c in columns)
        body = "".join(
            "<tr>" + f"<td style='text-align:right'>{html.escape(str(row[0]))}</td><td>{html.escape(row[1])}</td>"
            + "".join(f"<td style='text-align:right'>{format_value(v)}</td>" for v in row[2:]) + "</tr>"
            for row in rows)
        total = len(self.to_frame().columns)
        shown = len(columns) - 2
        more = f" — {total - shown} more numbers per step in <code>.to_frame()</code>" if total > shown else ""
        title = f"<b>embspace trajectory</b>{' ' + html.escape(self.name) if self.name else ''}"
        return (f"<div><p>{title} — {len(self)} {html.escape(self.unit)}s{more}</p>"
                f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></div>")


# ---- measuring -------------------------------------------------------------------------------------------------
def measure_trajectory(
    dumps: Sequence[Dump] | Mapping[Step, Dump],
    *,
    steps: Sequence[Step] | None = None,
    labels: Sequence[str] | None = None,
    step_pattern: str | None = None,
    names: Sequence[str] = ("image", "text"),
    out: str | os.PathLike[str] | None = None,
    name: str = "",
    unit: str = "step",
    progress: bool = False,
    **options: Any,
) -> Trajectory:
    """Measure every dump of a run and order the reports by step.

    Args:
        dumps: one entry per checkpoint, or ``{step: entry}``. An entry is a path (read as ``pairs=PATH``: a
            (2, N, D) stack or a clip-retrieval folder), a list of specs (``["image=e3.npz:img", "text=e3.npz:txt"]``),
            a mapping of modality name to array / tensor / :class:`~embspace.embeddings.Embeddings`, or a function
            returning such a mapping (called when that entry is measured, so only one is in memory at a time).
        steps: the step of each entry; by default read from its label by ``step_pattern``.
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
            raise InputError("measure_trajectory", "steps come from the mapping's keys; do not give steps= too")
        steps, entries = list(dumps), list(dumps.values())
    else:
        entries = list(dumps)
    if not entries:
        raise InputError("measure_trajectory", "no dumps to measure")
    if labels is None:
        labels = _default_labels(entries, steps, unit)
    if steps is None:
        steps = [step_from_name(label, step_pattern) for label in labels]
    if not len(steps) == len(labels) == len(entries):
        raise InputError("--steps", f"{len(entries)} dumps but {len(steps)} steps and {len(labels)} labels")
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
    import embspace
    from embspace.data import sample_steps

    return {step: partial(embspace.load_sample, step) for step in sample_steps()}


def _open(entry: Dump, names: Sequence[str]) -> Mapping[str, Any]:
    import embspace

    if isinstance(entry, str | os.PathLike):
        return embspace.load(f"pairs={os.fspath(entry)}", names=tuple(names))
    if isinstance(entry, Mapping):
        return entry
    if callable(entry):
        return entry()
    return embspace.load(*entry, names=tuple(names))


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
        raise InputError("measure_trajectory", "in-memory dumps need steps= (or labels= to read steps from)")
    return [f"{unit}{s}" for s in steps]


def _jsonable(value: Any) -> Any:
    if hasattr(value, "tolist"):
        return value.tolist()
    raise TypeError(f"cannot write {type(value).__name__} to JSON")
