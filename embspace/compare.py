"""`compare(before, after)`: each metric's change between two reports, with a warning when settings differ."""

from __future__ import annotations

import html
import math
from dataclasses import dataclass, field

from embspace.report import Report, format_value

SETTINGS_THAT_CHANGE_VALUES = ("t", "alpha", "normalize", "precision", "recall_ks", "hubness_k", "seed")


@dataclass
class Change:
    """One number before and after (None where a report lacks it)."""

    path: str
    before: float | None
    after: float | None

    @property
    def delta(self) -> float | None:
        if self.before is None or self.after is None:
            return None
        return self.after - self.before

    @property
    def relative(self) -> float | None:
        delta = self.delta
        if delta is None or self.before == 0:
            return None
        return delta / abs(self.before)


@dataclass
class Comparison:
    """The changes between two reports and the reasons they may not be comparable."""

    before: Report
    after: Report
    changes: list[Change] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def table(self) -> str:
        width = max((len(c.path) for c in self.changes), default=10)
        lines = [f"  {'metric':<{width}} {'before':>10} {'after':>10} {'change':>10}"]
        for c in self.changes:
            delta = "—" if c.delta is None else f"{c.delta:+.4f}"
            lines.append(f"  {c.path:<{width}} {format_value(c.before):>10} {format_value(c.after):>10} {delta:>10}")
        return "\n".join([*(f"warning: {w}" for w in self.warnings), *lines])

    def __str__(self) -> str:
        return self.table()

    def to_frame(self):  # -> pandas.DataFrame
        import pandas as pd

        return pd.DataFrame([(c.path, c.before, c.after, c.delta) for c in self.changes],
                            columns=["metric", "before", "after", "change"])

    def to_dict(self) -> dict[str, object]:
        return {"warnings": self.warnings,
                "changes": [{"metric": c.path, "before": c.before, "after": c.after, "change": c.delta}
                            for c in self.changes]}

    def _repr_html_(self) -> str:
        rows = "".join(f"<tr><td>{html.escape(c.path)}</td><td>{format_value(c.before)}</td>"
                       f"<td>{format_value(c.after)}</td><td>{'—' if c.delta is None else f'{c.delta:+.4f}'}</td></tr>"
                       for c in self.changes)
        notes = "".join(f"<p>⚠ {html.escape(w)}</p>" for w in self.warnings)
        return (f"<div>{notes}<table><thead><tr><th>metric</th><th>before</th><th>after</th><th>change</th></tr>"
                f"</thead><tbody>{rows}</tbody></table></div>")


def compare(before: Report | str, after: Report | str) -> Comparison:
    """Pair every number of two reports (reports or paths to their JSON) and flag differing settings."""
    before = before if isinstance(before, Report) else Report.from_json(before)
    after = after if isinstance(after, Report) else Report.from_json(after)
    old, new = before.flat(), after.flat()
    paths = list(old) + [p for p in new if p not in old]
    changes = [Change(p, _number(old.get(p)), _number(new.get(p))) for p in paths]
    warnings = [f"setting {key!r} differs: {before.settings.get(key)!r} before, {after.settings.get(key)!r} after"
                for key in SETTINGS_THAT_CHANGE_VALUES if before.settings.get(key) != after.settings.get(key)]
    if before.modalities != after.modalities:
        warnings.append(f"modalities differ: {before.modalities} before, {after.modalities} after")
    return Comparison(before, after, changes, warnings)


def _number(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return None if math.isnan(value) else float(value)
