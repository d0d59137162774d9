"""`Report`: the measured numbers with their settings, conventions, uncertainty and provenance.

The JSON form is the contract scripts and plots rely on (schema ``embspace.report/1``)::

    {"schema": "embspace.report/1", "embspace_version": "…", "created": "…",
     "inputs": {"image": {"source": "coco.npz:img", "n": 5000, "dim": 512, "dtype": "float16", "dropped": 0}, …},
     "settings": {"t": 2.0, "alpha": 2.0, "device": "cpu", "precision": "fp32", "normalize": true, …},
     "metrics": {"gap": 0.82, "uniformity": {"image": -1.79, "text": -1.84, "mean": …, "joint": …, "cross": …},
                 "recall@1": {"image->text": 0.55, "text->image": 0.51}, …},
     "uncertainty": {"uniformity.image": {"method": "exact"}, …},
     "conventions": {"uniformity": "…", …},
     "timings": {"uniformity": 0.02, …},
     "vectors": {"gap_direction": […]},
     "spectra": {"image": {"singular_values": […], "singular_values_centered": […]}},
     "histograms": {"edges": [-1.0, -0.99, …, 1.0], "matched": [counts…], "unmatched": [counts…],
                    "within": {"image": [counts…], "text": [counts…]}},
     "environment": {"python": "3.11.7", "torch": "2.13.0+cpu", "numpy": "2.4.6", "platform": "Linux-…",
                     "machine": "x86_64", "threads": 2, "device_name": "cpu"}}

Provenance: each input carries ``content_hash``, ``"blake2b-256:<hex>"`` of its dtype, shape and row bytes as
stored (:mod:`embspace.io.digest`: the same rows give the same hash from any file format or array), and
``environment`` records the versions and the machine that produced the numbers; with ``settings`` (device,
precision, seeds, …) that is what :func:`embspace.compare` checks before it trusts a difference. Metrics that are
undefined for the input (the α-ReQ slope of a rank-1 matrix, say) are written as ``null``: JSON has no NaN.

``histograms`` (absent from reports written before it existed) holds int counts of cosine similarities per bin:
matched pairs (i = j), unmatched cross pairs (i ≠ j) and within-modality pairs (i < j) per modality.

Metric values are floats, or one level of dicts keyed by modality name (``"image"``), direction
(``"image->text"``) or variant (``"mean"``). Dotted paths (``"uniformity.image"``) name single numbers.
"""

from __future__ import annotations

import itertools
import json
import math
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from embspace.errors import InputError
from embspace.formatting import format_value, interval_text
from embspace.io.atomic import atomic_write_text, note_input

SCHEMA = "embspace.report/1"


def flatten(metrics: dict[str, Any]) -> dict[str, float]:
    """{"uniformity": {"image": -1.8}} → {"uniformity.image": -1.8}, in insertion order."""
    out: dict[str, float] = {}
    for name, value in metrics.items():
        if isinstance(value, dict):
            for key, inner in value.items():
                out[f"{name}.{key}"] = inner
        else:
            out[name] = value
    return out


@dataclass
class Report:
    """Everything `embspace.measure` found, as a Python object (``to_json`` / ``from_json`` round-trip)."""

    inputs: dict[str, dict[str, Any]]
    settings: dict[str, Any]
    metrics: dict[str, Any]
    uncertainty: dict[str, dict[str, Any]] = field(default_factory=dict)
    conventions: dict[str, str] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)
    vectors: dict[str, list[float]] = field(default_factory=dict)
    spectra: dict[str, dict[str, list[float]]] = field(default_factory=dict)
    histograms: dict[str, Any] = field(default_factory=dict)
    environment: dict[str, Any] = field(default_factory=dict)
    embspace_version: str = ""
    created: str = ""
    schema: str = SCHEMA

    # ---- access -------------------------------------------------------------------------------------------
    @property
    def modalities(self) -> list[str]:
        return list(self.inputs)

    def flat(self) -> dict[str, float]:
        """Every number by dotted path."""
        return flatten(self.metrics)

    def __getitem__(self, path: str) -> Any:
        """``report["gap"]``, ``report["uniformity.image"]`` or ``report["uniformity"]`` (the dict)."""
        if path in self.metrics:
            return self.metrics[path]
        flat = self.flat()
        if path in flat:
            return flat[path]
        raise KeyError(f"no metric {path!r}; available: {', '.join(flat)}")

    def flags(self) -> dict[str, str]:
        """Warnings on numbers that are not what they seem, by dotted path, for the printed tables.

        ``linear_separability`` below chance by more than its noise: a probe that scores 0.5 − 2σ or less, where
        σ = √(0.25 / m) is the standard deviation of the accuracy of a coin on the m held-out rows (2 per test
        pair, ``settings["separability"]["test_pairs"]``; 0.4 as the bound when a report does not say), has
        learnt something backwards — too few pairs for it to learn, or rows of the two modalities that do not
        belong together — and is not a measure of how separable the modalities are.
        """
        out: dict[str, str] = {}
        value = self.metrics.get("linear_separability")
        if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
            info = self.settings.get("separability")
            test_pairs = info.get("test_pairs") if isinstance(info, dict) else None
            if isinstance(test_pairs, int) and not isinstance(test_pairs, bool) and test_pairs > 0:
                bound = 0.5 - 2 * math.sqrt(0.25 / (2 * test_pairs))
            else:
                bound = 0.4
            if value < bound:
                out["linear_separability"] = (f"BELOW CHANCE: a probe that guesses scores 0.5; below {bound:.3f} it "
                                              "learnt something backwards (too few pairs, or mismatched rows) "
                                              "and does not measure separability")
        return out

    def rows(self) -> Iterator[tuple[str, str, float, str]]:
        """(metric, key, value, how obtained) for every number, in report order."""
        for path, value in self.flat().items():
            metric, _, key = path.partition(".")
            method = self.uncertainty.get(path, self.uncertainty.get(metric, {})).get("method", "exact")
            yield metric, key, value, method

    # ---- JSON ---------------------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return {
            "schema": self.schema, "embspace_version": self.embspace_version, "created": self.created,
            "inputs": self.inputs, "settings": self.settings, "metrics": self.metrics,
            "uncertainty": self.uncertainty, "conventions": self.conventions, "timings": self.timings,
            "vectors": self.vectors, "spectra": self.spectra, "histograms": self.histograms,
            "environment": self.environment,
        }

    def to_json(self, path: str | os.PathLike[str] | None = None, *, indent: int = 2) -> str:
        """The JSON text; written atomically to ``path`` when given."""
        text = json.dumps(_json_safe(self.to_dict()), indent=indent, allow_nan=False) + "\n"
        if path is not None:
            atomic_write_text(path, text)
        return text

    @classmethod
    def from_dict(cls, data: dict[str, Any], where: str = "<dict>") -> Report:
        if not isinstance(data, dict) or data.get("schema") != SCHEMA:
            found = data.get("schema") if isinstance(data, dict) else type(data).__name__
            raise InputError(where, f"not an embspace report (schema {found!r}, expected {SCHEMA!r})")
        for key in ("inputs", "settings", "metrics"):
            if not isinstance(data.get(key), dict):
                raise InputError(where, f"report has no {key!r} object")
        for key in _SECTIONS:
            if key in data and not isinstance(data[key], dict):
                raise InputError(where, f"report's {key!r} is {_kind(data[key])}, not an object")
        _check_inputs(data["inputs"], where)
        for section in ("uncertainty", "spectra"):
            for name, entry in data.get(section, {}).items():
                if not isinstance(entry, dict):
                    raise InputError(where, f"{section}.{name} is {_kind(entry)}, not an object")
        for name, value in data.get("timings", {}).items():
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise InputError(where, f"timings.{name} is {_kind(value)}, not a number")
        for name in ("t", "alpha"):
            if name in data["settings"] and not _finite(data["settings"][name]):
                raise InputError(where, f"settings.{name} is {_short(data['settings'][name])}, not a finite number")
        _check_spectra(data.get("spectra", {}), where)
        _check_histograms(data.get("histograms", {}), data["inputs"], where)
        for path, value in _metric_values(data["metrics"], where):
            if value is not None and (isinstance(value, bool) or not isinstance(value, int | float)
                                      or not math.isfinite(value)):
                raise InputError(where, f"metric {path!r} is {value!r}, not a finite number (or null)")
        known = {name: data[name] for name in cls.__dataclass_fields__ if name in data}
        return cls(**known)

    @classmethod
    def from_json(cls, source: str | os.PathLike[str]) -> Report:
        """Read a report from a path, or from JSON text."""
        text, where = str(source), "<json>"
        if not text.lstrip().startswith("{"):
            where = text
            text = read_json_text(Path(source))
        return cls.from_dict(parse_json(text, where), where)

    # ---- views --------------------------------------------------------------------------------------------
    def to_frame(self):  # -> pandas.DataFrame
        """One row per number: metric, key, value, method (pandas)."""
        import pandas as pd

        return pd.DataFrame(list(self.rows()), columns=["metric", "key", "value", "method"])

    def table(self) -> str:
        """A plain-text table, one line per number."""
        lines = [f"{self._title()}", ""]
        rows = list(self.rows())
        width = max((len(m) + len(k) + 3 for m, k, _, _ in rows), default=10)
        flags = self.flags()
        for metric, key, value, method in rows:
            label = f"{metric} [{key}]" if key else metric
            note = "" if method == "exact" else f"  ({method})"
            if method == "sampled":
                found = self.uncertainty.get(f"{metric}.{key}" if key else metric, self.uncertainty.get(metric, {}))
                note = f"  {found.get('confidence', 0.95) * 100:g} % {interval_text(found)}{note}"
            if (f"{metric}.{key}" if key else metric) in flags:
                note += f"  {flags[f'{metric}.{key}' if key else metric]}"
            lines.append(f"  {label:<{width}} {format_value(value):>10}{note}")
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.table()

    def _title(self) -> str:
        parts = [f"{name}: {info.get('source', '?')} ({info.get('n')}×{info.get('dim')}, {info.get('dtype')})"
                 for name, info in self.inputs.items()]
        return "; ".join(parts)

    def to_html(self, path: str | os.PathLike[str] | None = None, **options: Any) -> str:
        """The self-contained HTML page of this report (:func:`embspace.page.render.render_page`: table, plane,
        spectra, histograms; ``map_data=`` adds the map); written atomically to ``path`` when given."""
        from embspace.page.render import render_page

        page = render_page(self, **options)
        if path is not None:
            atomic_write_text(path, page)
        return page

    def _repr_html_(self) -> str:
        """Jupyter shows what :meth:`to_html` writes (the same sections, as a fragment)."""
        return self.to_html(fragment=True)

def environment(device: str = "cpu") -> dict[str, Any]:
    """The versions and machine behind a report: Python, torch, numpy, platform, CPU threads and the device's name
    (``torch.cuda.get_device_name`` for CUDA, else the processor)."""
    import platform

    import numpy as np
    import torch

    if device.startswith("cuda") and torch.cuda.is_available():
        device_name = torch.cuda.get_device_name(torch.device(device))
    else:
        device_name = platform.processor() or platform.machine() or "cpu"
    return {"python": platform.python_version(), "torch": torch.__version__, "numpy": np.__version__,
            "platform": platform.platform(), "machine": platform.machine(), "threads": torch.get_num_threads(),
            "device_name": device_name}


def _json_safe(value: Any) -> Any:
    """Plain JSON values: numpy scalars / arrays and tensors as lists and numbers, and NaN / ±Inf as ``null`` — a
    metric that is undefined for the input (the α-ReQ slope of a rank-1 matrix, say), since JSON has no NaN."""
    if isinstance(value, dict):
        return {key: _json_safe(inner) for key, inner in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(inner) for inner in value]
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, str | int | bool) or value is None:
        return value
    if hasattr(value, "tolist"):
        return _json_safe(value.tolist())
    raise TypeError(f"cannot write {type(value).__name__} to JSON")


_SECTIONS = ("uncertainty", "conventions", "timings", "vectors", "spectra", "histograms", "environment")
_INPUT_FIELDS: dict[str, tuple[type, ...]] = {"source": (str,), "n": (int,), "dim": (int,), "dtype": (str,),
                                              "content_hash": (str,), "dropped": (int,),
                                              "duplicate_rows": (int,)}


def _kind(value: Any) -> str:
    """``a list``, ``a string``, ``null``: what a JSON value is, for a message."""
    if value is None:
        return "null"
    names = {bool: "a boolean", str: "a string", int: "a number", float: "a number", list: "a list",
             dict: "an object"}
    return names.get(type(value), type(value).__name__)


def _check_inputs(inputs: dict[str, Any], where: str) -> None:
    """Every ``inputs`` entry an object whose known fields have their JSON types (counts: integers ≥ 0)."""
    for name, entry in inputs.items():
        if not isinstance(entry, dict):
            raise InputError(where, f"inputs.{name} is {_kind(entry)}, not an object")
        for field_name, kinds in _INPUT_FIELDS.items():
            if field_name not in entry:
                continue
            value = entry[field_name]
            wrong = isinstance(value, bool) or not isinstance(value, kinds)
            if not wrong and kinds == (int,) and not 0 <= value < 2**63:
                wrong = True
            if wrong:
                want = "a count (an integer ≥ 0)" if kinds == (int,) else "a string"
                raise InputError(where, f"inputs.{name}.{field_name} is {_short(value)}, expected {want}")


def _finite(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _numbers(value: Any, where: str, path: str, *, counts: bool = False, least: int = 0) -> list:
    """``value`` as a list of finite numbers (counts: integers ≥ 0) with at least ``least`` entries, or refused."""
    if not isinstance(value, list):
        raise InputError(where, f"{path} is {_kind(value)}, not a list of numbers")
    wrong = [v for v in value if not (_finite(v) and (not counts or (isinstance(v, int) and v >= 0)))][:1]
    if wrong or len(value) < least:
        want = "counts (integers ≥ 0)" if counts else "finite numbers"
        found = f"holds {_short(wrong[0])}" if wrong else f"has {len(value)} entries"
        raise InputError(where, f"{path} {found}; expected {want}" + (f", at least {least}" if least else ""))
    return value


def _check_spectra(spectra: dict[str, Any], where: str) -> None:
    """Each modality's spectrum: an object with ``singular_values`` (and optionally the centred ones) as numbers."""
    for name, entry in spectra.items():
        if "singular_values" not in entry:
            raise InputError(where, f"spectra.{name} has no 'singular_values'")
        for key in ("singular_values", "singular_values_centered"):
            if key in entry:
                _numbers(entry[key], where, f"spectra.{name}.{key}")


def _check_histograms(histograms: dict[str, Any], inputs: dict[str, Any], where: str) -> None:
    """Edges: at least two increasing numbers; every count list as long as there are bins, of counts; the
    within-modality lists keyed by the report's modalities; matched / unmatched only with two modalities."""
    if not histograms:
        return
    if "edges" not in histograms:
        raise InputError(where, "histograms has no 'edges'")
    edges = _numbers(histograms["edges"], where, "histograms.edges", least=2)
    if any(b <= a for a, b in itertools.pairwise(edges)):
        raise InputError(where, "histograms.edges are not increasing")
    lists = {key: histograms[key] for key in ("matched", "unmatched") if key in histograms}
    if lists and len(inputs) != 2:
        raise InputError(where, f"histograms of pairs need two modalities in 'inputs', found {len(inputs)}")
    within = histograms.get("within", {})
    if not isinstance(within, dict):
        raise InputError(where, f"histograms.within is {_kind(within)}, not an object")
    for name in within:
        if name not in inputs:
            raise InputError(where, f"histograms.within.{name} names no input of the report")
    lists.update({f"within.{name}": counts for name, counts in within.items()})
    for key, counts in lists.items():
        _numbers(counts, where, f"histograms.{key}", counts=True)
        if len(counts) != len(edges) - 1:
            raise InputError(where, f"histograms.{key} has {len(counts)} bins, the edges {len(edges) - 1}")


def _short(value: Any) -> str:
    if isinstance(value, int) and abs(value) >= 10**20:
        return f"a {len(str(abs(value)))}-digit number"
    text = repr(value)
    return text if len(text) <= 40 else text[:39] + "…"


def _metric_values(metrics: dict[str, Any], where: str) -> Iterator[tuple[str, Any]]:
    """(dotted path, value) of every metric; values nested deeper than one level are refused."""
    for name, value in metrics.items():
        if isinstance(value, dict):
            for key, inner in value.items():
                if isinstance(inner, dict | list):
                    raise InputError(where, f"metric '{name}.{key}' is nested too deep (a number or null expected)")
                yield f"{name}.{key}", inner
        else:
            yield name, value


def read_json_text(path: Path) -> str:
    """The UTF-8 text of a JSON file, refusing what is not a readable regular file in one line."""
    import stat

    from embspace.io.common import stat_or_refuse

    where = str(path)
    mode = stat_or_refuse(path).st_mode
    if stat.S_ISDIR(mode):
        raise InputError(where, "is a directory, expected a JSON file")
    if not stat.S_ISREG(mode):
        raise InputError(where, "is not a regular file (a fifo, socket or device); give a JSON file")
    try:
        text = path.read_text(encoding="utf-8")
        note_input(path)  # read: no embspace writer may replace it
        return text
    except PermissionError:
        raise InputError(where, "permission denied (the file is not readable)") from None
    except UnicodeDecodeError:
        raise InputError(where, "not a JSON file (not UTF-8 text)") from None
    except OSError as exc:
        raise InputError(where, f"cannot read: {exc.strerror or exc.__class__.__name__}") from None


_MAX_DIGITS = 308
"""Digits of the longest integer a report may hold: 10³⁰⁸ is the edge of a float's range."""


def _clip(text: str) -> str:
    return text if len(text) <= 24 else text[:20] + "…"


def parse_json(text: str, where: str) -> Any:
    """``json.loads`` with every failure (syntax, nesting too deep for the parser) as one line."""
    def whole(digits: str) -> int:
        count = len(digits.lstrip("-"))
        if count > _MAX_DIGITS:
            raise InputError(where, f"invalid JSON: a number with {count} digits, more than a float holds")
        return int(digits)

    def real(text: str) -> float:
        value = float(text)
        if not math.isfinite(value):
            raise InputError(where, f"invalid JSON: the number {_clip(text)} is out of range (beyond ±1.8e308)")
        return value

    try:
        return json.loads(text, parse_int=whole, parse_float=real)
    except json.JSONDecodeError as exc:
        raise InputError(where, f"invalid JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}") from None
    except RecursionError:
        raise InputError(where, "invalid JSON: nested too deeply") from None
