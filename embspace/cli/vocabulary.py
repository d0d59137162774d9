"""One metric vocabulary for every ``--metrics``: a family (``retrieval``), an alias (``rankme``) or any key of a
report (``recall@1``, ``uniformity.mean``, ``cone.image``), with "did you mean" for a typo."""

from __future__ import annotations

import difflib
from collections.abc import Iterable

from embspace.errors import InputError


def did_you_mean(name: str, choices: Iterable[str]) -> str:
    """``"; did you mean 'uniformity'?"`` for the closest choice (difflib), or nothing when none is close."""
    close = difflib.get_close_matches(name, sorted(set(choices)), n=1, cutoff=0.6)
    return f"; did you mean {close[0]!r}?" if close else ""


def family_of(name: str) -> str | None:
    """The family that computes a metric name: itself, an alias, or a report key (``recall@5.image->text`` →
    ``retrieval``, ``uniformity.mean`` → ``uniformity``); None for an unknown name."""
    from embspace.families import ALIASES, FAMILIES

    head = name.partition(".")[0]
    if head.startswith("recall@") and head.removeprefix("recall@").isdigit():
        return "retrieval"
    if head in FAMILIES:
        return head
    if head == "effective_rank_centered":
        return "spectrum"
    return ALIASES.get(head)


def measure_families(metrics: str) -> str:
    """``--metrics`` of ``embspace measure`` (comma-separated names in the vocabulary above, or ``all``) → the
    families to compute, comma-separated, as :func:`embspace.measure` takes them. An unknown name is refused in one
    line with the closest known one."""
    from embspace.families import ALIASES, FAMILIES
    from embspace.metrics.retrieval import RECALL_KS

    names = [m.strip() for m in metrics.split(",") if m.strip()]
    if names == ["all"]:
        return "all"
    families: list[str] = []
    for name in names:
        family = family_of(name)
        if family is None:
            known = [*FAMILIES, *ALIASES, *(f"recall@{k}" for k in RECALL_KS), "effective_rank_centered", "all"]
            raise InputError("metrics", f"unknown metric {name!r}{did_you_mean(name, known)} (families: "
                                        f"{', '.join(FAMILIES)}; or a report key such as recall@1, uniformity.mean)")
        if family not in families:
            families.append(family)
    return ",".join(families)


def skipped_families(requested: str, measured: Iterable[str], modalities: Iterable[str]) -> list[str]:
    """The families asked for by ``requested`` (families, comma-separated) that a measurement of one modality
    left out: they need two paired modalities."""
    done = set(measured)
    if requested == "all" or len(list(modalities)) != 1:
        return []
    return [family for family in requested.split(",") if family and family not in done]
