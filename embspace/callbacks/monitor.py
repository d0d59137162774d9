"""`EmbeddingMonitor`: measure a fixed evaluation set during training and keep the run's trajectory on disk.

The monitor is the plain hook (call :meth:`EmbeddingMonitor.after_step` at the end of each step or epoch of a
hand-written loop, or of open_clip's ``train_one_epoch``); the Lightning and Hugging Face callbacks of this package
drive the same object. Every ``every``-th step it embeds the evaluation set with the model as it is
(``embed(model)`` → ``{"image": (N, D), "text": (N, D)}``), measures it with :func:`embspace.measure`, and writes

- ``<unit><step>.json``: the report (schema ``embspace.report/1``), then
- ``trajectory.json``: the run so far (schema ``embspace.trajectory/1``, reports by relative path), which
  ``embspace plot curves``, ``embspace compare``, :meth:`embspace.Trajectory.from_json` and the notebooks read.

Both are written atomically (:mod:`embspace.io.atomic`): a run killed at any instant leaves the trajectory of the
points measured so far, never a torn file. A monitor started on a folder that holds a trajectory continues it (a
resumed run): a point measured at step ``s`` replaces the points at ``s`` and after it, which belong to the part of
the killed run that the resumed one repeats, so no step appears twice.

**Time budget.** ``budget`` is the share of training time that measuring may take (0.05: 5 %). Measuring time
(embedding plus metrics) and training time (the wall time between calls, less the monitor's own) are summed over the
run, resumed runs included; before each measurement the monitor predicts its cost from the last one (embedding time
linear in nothing it controls, metric time ∝ N², the pairwise families' cost) and takes what fits in
``budget × training time − time already spent``:

1. every row of the evaluation set (``mode: "full"``);
2. else a fixed random subset of ``n`` pairs, the largest that fits (``mode: "subsampled"``; the same rows every
   time, the first ``n`` of one seeded permutation, so that consecutive points stay comparable), at least
   ``min_pairs``;
3. else nothing: the step is recorded as skipped, with the reason, in ``trajectory.json``'s ``monitor.skipped``.

Each report says how it was made in ``settings["monitor"]`` (mode, pairs, seconds, allowance). The first measurement
has no cost to predict from and is made in full (it calibrates; its time counts against the budget, so later points
are thinned until training has paid for it). Under DDP only rank 0 embeds, measures and writes (in this process
alone: :func:`embspace.distributed.group.alone`); the others return at once.

Example (a loop of 30 steps, measured every 10; ``budget=None`` measures every due step in full — with a budget,
steps this short would leave no time for the second point)::

    >>> import numpy as np, tempfile, embspace
    >>> from embspace.callbacks import EmbeddingMonitor
    >>> rng = np.random.default_rng(0)
    >>> x, y = rng.normal(size=(64, 8)), rng.normal(size=(64, 8))
    >>> folder = tempfile.mkdtemp()
    >>> monitor = EmbeddingMonitor(lambda model: {"image": x + model, "text": y}, folder, every=10, metrics="gap",
    ...                            budget=None)
    >>> for step in range(1, 31):
    ...     _ = monitor.after_step(step, model=step / 30)
    >>> embspace.Trajectory.from_json(folder).steps
    [10, 20, 30]
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from embspace.errors import InputError
from embspace.io.atomic import atomic_write_text, resolve_folder
from embspace.report import Report, parse_json
from embspace.trajectory import FILE_NAME, SCHEMA, Trajectory

__all__ = ["DEFAULT_METRICS", "EmbeddingMonitor", "current_rank"]

DEFAULT_METRICS = "gap,alignment,uniformity,cone,rmg,retrieval,spectrum,histograms"
"""Families measured by default: the curves' and the page's."""
MIN_PAIRS = 64
"""Fewest pairs a subsampled point may have; below it the step is skipped."""

Embed = Callable[[Any], Mapping[str, Any]]


def current_rank() -> int:
    """The global rank: the initialised process group's, else torchrun's ``RANK``, else 0."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank()
    try:
        return int(os.environ.get("RANK", "0") or 0)
    except ValueError:
        return 0


def check_unit(unit: str) -> None:
    """A training library's callback counts ``step``s or ``epoch``s; anything else is refused in one line."""
    if unit not in ("step", "epoch"):
        raise InputError("unit", f"choose step or epoch, got {unit!r}")


class EmbeddingMonitor:
    """Measure ``embed(model)`` every ``every`` steps (or epochs) within a time budget; write the trajectory.

    Args:
        embed: the evaluation set as the model sees it: ``embed(model)`` returns the paired embeddings of the SAME
            rows every time (``{"image": (N, D), "text": (N, D)}``, arrays or tensors). See
            :func:`embspace.callbacks.clip_embedder`.
        out: folder of the trajectory (created; a trajectory already there is continued).
        every: measure at the steps that are multiples of it.
        unit: what a step counts (``"step"`` or ``"epoch"``): file names and the curves' x-axis.
        metrics: families to measure (:func:`embspace.measure`'s ``metrics``).
        budget: largest share of training time spent measuring, summed over the run (0 < budget; 1 = as long as
            training itself). ``None`` disables the budget: every due step is measured in full.
        min_pairs: fewest pairs of a subsampled point.
        name: the run's name (legends).
        rank: this process's global rank (default: :func:`current_rank`); only rank 0 measures and writes.
        seed: seed of the subsample's permutation.
        clock: the time source (seconds), for tests.
        **options: passed to :func:`embspace.measure` (``t``, ``device``, ``recall_ks``, …).
    """

    def __init__(self, embed: Embed, out: str | os.PathLike[str], *, every: int = 1, unit: str = "step",
                 metrics: str = DEFAULT_METRICS, budget: float | None = 0.05, min_pairs: int = MIN_PAIRS,
                 name: str = "", rank: int | None = None, seed: int = 0,
                 clock: Callable[[], float] = time.perf_counter, **options: Any) -> None:
        if not isinstance(every, int) or isinstance(every, bool) or every < 1:
            raise InputError("every", f"must be a whole number of steps ≥ 1, got {every!r}")
        if budget is not None and not (isinstance(budget, int | float) and math.isfinite(budget) and budget > 0):
            raise InputError("budget", f"must be a share of training time > 0 (0.05 = 5 %) or None, got {budget!r}")
        if min_pairs < 2:
            raise InputError("min_pairs", f"needs at least 2 pairs, got {min_pairs}")
        self.embed, self.every, self.unit, self.metrics = embed, every, unit, metrics
        self.budget, self.min_pairs, self.name, self.seed = budget, min_pairs, name, seed
        self.options, self.clock = options, clock
        self.rank = current_rank() if rank is None else rank
        self.folder = Path(out)
        self.points: list[dict[str, Any]] = []  # {"step", "label", "report" (file name)} in step order
        self.reports: dict[str, Report] = {}  # file name → report
        self.skipped: list[dict[str, Any]] = []
        self.train_seconds = 0.0
        self.spent_seconds = 0.0
        self.last_cost: dict[str, float] | None = None  # {"embed", "metrics", "pairs"} of the last measurement
        self._mark: float | None = None
        self._permutation: np.ndarray | None = None
        if self.is_writer:
            resolve_folder(self.folder, writes=[FILE_NAME, f"{unit}*.json"])
            self._resume()

    # ---- state -----------------------------------------------------------------------------------------
    @property
    def is_writer(self) -> bool:
        """True on the process that measures and writes (rank 0)."""
        return self.rank == 0

    @property
    def path(self) -> Path:
        """The trajectory file."""
        return self.folder / FILE_NAME

    @property
    def trajectory(self) -> Trajectory | None:
        """The run so far (None before the first point)."""
        if not self.points:
            return None
        return Trajectory([p["step"] for p in self.points], [self.reports[p["report"]] for p in self.points],
                          [p["label"] for p in self.points], [str(self.folder / p["report"]) for p in self.points],
                          name=self.name, unit=self.unit)

    def _resume(self) -> None:
        """Continue the trajectory of a killed run, if the folder has one."""
        if not self.path.exists():
            return
        data = parse_json(self.path.read_text(), str(self.path))
        if not isinstance(data, dict) or data.get("schema") != SCHEMA:
            raise InputError(str(self.path), "is not an embspace trajectory; give the monitor another folder")
        for point in data.get("points", []):
            ref = point["report"]
            where = self.folder / ref  # read as the monitor's own output (not noted as an input: it is replaced)
            self.reports[ref] = Report.from_dict(parse_json(where.read_text(), str(where)), str(where))
            self.points.append({"step": point["step"], "label": point["label"], "report": ref})
        state = data.get("monitor", {})
        self.skipped = list(state.get("skipped", []))
        self.train_seconds = float(state.get("train_seconds", 0.0))
        self.spent_seconds = float(state.get("spent_seconds", 0.0))
        self.last_cost = state.get("last_cost")
        self.name = self.name or str(data.get("name", ""))

    # ---- the hook --------------------------------------------------------------------------------------
    def due(self, step: int) -> bool:
        """Whether ``step`` is one to measure."""
        return step % self.every == 0

    def after_step(self, step: int, model: Any = None, *, step_seconds: float | None = None) -> Report | None:
        """Call once at the end of every training step (or epoch); measures when the step is due.

        ``step_seconds``: the step's training time, when the caller knows it; by default the wall time since the
        previous call (less the monitor's own time). Returns the new report, or None (not due, skipped, not rank 0).
        """
        if not self.is_writer:
            return None
        now = self.clock()
        if step_seconds is not None:
            self.train_seconds += float(step_seconds)
        elif self._mark is not None:
            self.train_seconds += max(0.0, now - self._mark)
        self._mark = now
        if not self.due(step):
            return None
        report = self.measure(step, model)
        self._mark = self.clock()
        return report

    def start(self) -> None:
        """Start the clock of training time (the callbacks call it when training begins)."""
        self._mark = self.clock()

    def measure(self, step: int, model: Any = None) -> Report | None:
        """Measure now at ``step`` (within the budget) and write the point, or record why it was skipped."""
        if not self.is_writer:
            return None
        from embspace.distributed.group import alone
        from embspace.measure import measure

        allowance = self.allowance()
        plan = self.plan(allowance)
        if plan is None:
            self._skip(step, f"predicted cost {self.predicted_cost():.3g} s exceeds the allowance "
                             f"{allowance:.3g} s (budget {self.budget:g} of {self.train_seconds:.3g} s trained, "
                             f"{self.spent_seconds:.3g} s spent)")
            return None
        begin = self.clock()
        data = {name: _array(value) for name, value in self.embed(model).items()}
        embedded = self.clock()
        n = min(len(v) for v in data.values())
        pairs = n if plan >= n else plan
        if pairs < n:
            rows = np.sort(self._rows(n)[:pairs])
            data = {name: value[rows] for name, value in data.items()}
        with alone():
            report = measure(data, metrics=self.metrics, seed=self.seed, **self.options)
        end = self.clock()
        cost = {"embed": embedded - begin, "metrics": end - embedded, "pairs": pairs}
        self.last_cost = cost
        self.spent_seconds += end - begin
        report.settings["monitor"] = {
            "step": step, "unit": self.unit, "mode": "full" if pairs == n else "subsampled", "pairs": pairs,
            "of": n, "seconds": end - begin, "embed_seconds": cost["embed"],
            "allowance_seconds": None if math.isinf(allowance) else allowance, "budget": self.budget}
        self._write(step, report)
        return report

    # ---- the budget ------------------------------------------------------------------------------------
    def allowance(self) -> float:
        """Seconds the next measurement may take: budget × training time − time spent so far (∞ without a
        budget, or before the first measurement)."""
        if self.budget is None or self.last_cost is None:
            return math.inf
        return self.budget * self.train_seconds - self.spent_seconds

    def predicted_cost(self, pairs: int | None = None) -> float:
        """The last measurement's embedding time plus its metric time scaled by (pairs / its pairs)²."""
        if self.last_cost is None:
            return 0.0
        last = self.last_cost
        scale = 1.0 if pairs is None else (pairs / max(1, last["pairs"])) ** 2
        return last["embed"] + last["metrics"] * scale

    def plan(self, allowance: float) -> int | None:
        """How many pairs fit in ``allowance`` (a huge number: all of them), or None (skip)."""
        if math.isinf(allowance) or self.last_cost is None:
            return 2**62
        room = allowance - self.last_cost["embed"]
        if room <= 0:
            return None
        per_pair2 = self.last_cost["metrics"] / max(1, self.last_cost["pairs"]) ** 2
        fit = int(math.sqrt(room / per_pair2)) if per_pair2 > 0 else 2**62
        return fit if fit >= self.min_pairs else None

    def _rows(self, n: int) -> np.ndarray:
        if self._permutation is None or len(self._permutation) != n:
            self._permutation = np.random.default_rng(self.seed).permutation(n)
        return self._permutation

    # ---- writing ---------------------------------------------------------------------------------------
    def _forget_from(self, step: int) -> None:
        """Drop the points and skips at ``step`` and after it (a resumed run measures them again)."""
        self.points = [p for p in self.points if p["step"] < step]
        self.skipped = [s for s in self.skipped if s["step"] < step]
        kept = {p["report"] for p in self.points}
        self.reports = {k: v for k, v in self.reports.items() if k in kept}

    def _skip(self, step: int, reason: str) -> None:
        self._forget_from(step)
        self.skipped.append({"step": step, "reason": reason})
        self._write_trajectory()

    def _write(self, step: int, report: Report) -> None:
        self._forget_from(step)
        label = f"{self.unit}{step}"
        name = f"{label}.json"
        report.to_json(self.folder / name)  # the report first: the trajectory never names a missing file
        self.reports[name] = report
        self.points.append({"step": step, "label": label, "report": name})
        self._write_trajectory()

    def _write_trajectory(self) -> None:
        trajectory = self.trajectory
        if trajectory is not None:
            data = trajectory.to_dict(embed=False, base=self.folder)
        else:
            data = Trajectory([0], [Report({}, {}, {})], name=self.name, unit=self.unit).to_dict(embed=True)
            data["points"] = []
        data["monitor"] = {"every": self.every, "budget": self.budget, "metrics": self.metrics,
                           "train_seconds": self.train_seconds, "spent_seconds": self.spent_seconds,
                           "last_cost": self.last_cost, "skipped": self.skipped}
        atomic_write_text(self.path, json.dumps(data, indent=2, allow_nan=False) + "\n")


def _array(value: Any) -> np.ndarray:
    """A detached float32 NumPy copy of an array or tensor (the training keeps its own)."""
    if hasattr(value, "detach"):
        value = value.detach().float().cpu().numpy()
    return np.asarray(value, dtype=np.float32)
