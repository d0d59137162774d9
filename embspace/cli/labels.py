"""The label specs of ``embspace measure``: ``labels=PATH[:KEY]`` (every modality), ``labels.NAME=PATH[:KEY]``
(one modality) and ``prompts=PATH[:KEY]`` (one embedding per class), taken out of the modality specs."""

from __future__ import annotations

from typing import Any

LABELS, PROMPTS = "labels", "prompts"


def is_label_spec(spec: str) -> bool:
    name = spec.partition("=")[0]
    return "=" in spec and (name in (LABELS, PROMPTS) or name.startswith(f"{LABELS}."))


def split_label_specs(specs: list[str]) -> tuple[list[str], Any, Any]:
    """(modality specs, labels (a LabelArray, a mapping name → LabelArray, or None), prompts (Embeddings or None)).
    A bad file is an InputError naming it."""
    import embspace
    from embspace.errors import InputError
    from embspace.labels import read_labels

    rest, labels, per_modality, prompts = [], None, {}, None
    for spec in specs:
        if not is_label_spec(spec):
            rest.append(spec)
            continue
        name, _, target = spec.partition("=")
        if name == PROMPTS:
            if prompts is not None:
                raise InputError(spec, "prompts= is given twice")
            prompts = embspace.load(f"prompts={target}")["prompts"]
        elif name == LABELS:
            if labels is not None:
                raise InputError(spec, "labels= is given twice; labels.NAME= labels one modality")
            labels = read_labels(target)
        else:
            per_modality[name.removeprefix(f"{LABELS}.")] = read_labels(target)
    if labels is not None and per_modality:
        raise InputError("labels", "give labels= (every modality) or labels.NAME= (per modality), not both")
    return rest, per_modality or labels, prompts
