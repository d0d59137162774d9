"""Paired training / evaluation features for fine-tuning: from arrays, dumps or the bundled sample.

A :class:`Pairs` is two float32 CPU tensors whose row i forms pair i; the two modalities may have different
dimensions (raw encoder features, e.g. 1280-d image and 384-d text) or the same one (a joint space).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from embspace.defaults import PAIR_NAMES as DEFAULT_NAMES
from embspace.embeddings import Embeddings
from embspace.errors import InputError
from embspace.finetune.config import EVAL_FRACTION

ArrayLike = np.ndarray | torch.Tensor | Embeddings


@dataclass(frozen=True)
class Pairs:
    """Paired features of two modalities: ``image`` (N, D_a) and ``text`` (N, D_b), named by ``names``."""

    image: torch.Tensor
    text: torch.Tensor
    names: tuple[str, str] = DEFAULT_NAMES
    source: str = "<arrays>"
    categories: np.ndarray | None = None  # (N,) class labels where known (the bundled sample has them)

    @property
    def n(self) -> int:
        return int(self.image.shape[0])

    @property
    def dims(self) -> tuple[int, int]:
        return int(self.image.shape[1]), int(self.text.shape[1])

    def take(self, rows: np.ndarray, source: str | None = None) -> Pairs:
        index = torch.from_numpy(np.asarray(rows, dtype=np.int64))
        categories = None if self.categories is None else self.categories[np.asarray(rows)]
        return Pairs(self.image[index], self.text[index], self.names, source or self.source, categories)


def as_pairs(data: Pairs | Mapping[str, ArrayLike] | Sequence[ArrayLike], where: str = "data",
             names: Sequence[str] | None = None) -> Pairs:
    """Accept a :class:`Pairs`, a mapping of two named modalities, or an (image, text) sequence.

    Rows must pair (same N ≥ 2), be finite and not all zero; the result is float32 on the CPU.
    """
    from embspace.io.validate import validate

    if isinstance(data, Pairs):
        return data
    if isinstance(data, Mapping):
        items = list(data.items())
    else:
        if isinstance(data, np.ndarray | torch.Tensor) and data.ndim == 3 and data.shape[0] == 2:
            data = [data[0], data[1]]
        items = list(zip(names or DEFAULT_NAMES, data, strict=False)) if len(data) == 2 else list(data)
    if len(items) != 2:
        raise InputError(where, f"needs two paired modalities, got {len(items)}")
    (a, x), (b, y) = items
    if names is not None:
        a, b = names
    embeddings = {a: _embeddings(x, f"{where}:{a}"), b: _embeddings(y, f"{where}:{b}")}
    checked = validate(embeddings, paired=True)
    image, text = (checked[k].to_tensor(torch.float32) for k in (a, b))
    sources = {e.source for e in embeddings.values()}
    return Pairs(image, text, (a, b), " + ".join(sorted(sources)))


def _embeddings(x: ArrayLike, source: str) -> Embeddings:
    return x if isinstance(x, Embeddings) else Embeddings.from_array(x, source)


def split_pairs(pairs: Pairs, eval_fraction: float = EVAL_FRACTION, seed: int = 0) -> tuple[Pairs, Pairs]:
    """A seeded random split by pair: ``round(eval_fraction · N)`` pairs for evaluation, the rest for training."""
    if not 0 < eval_fraction < 1:
        raise InputError("eval_fraction", f"must be between 0 and 1, got {eval_fraction}")
    n_eval = round(eval_fraction * pairs.n)
    if n_eval < 2 or pairs.n - n_eval < 2:
        raise InputError(pairs.source, f"{pairs.n} pairs cannot be split {1 - eval_fraction:.0%}/{eval_fraction:.0%}"
                                       " with at least 2 pairs on each side")
    order = np.random.default_rng(seed).permutation(pairs.n)
    evaluation, training = np.sort(order[:n_eval]), np.sort(order[n_eval:])
    return (pairs.take(training, f"{pairs.source} (train {len(training)})"),
            pairs.take(evaluation, f"{pairs.source} (eval {len(evaluation)})"))


def sample_pairs(arrays: Mapping[str, np.ndarray] | None = None) -> tuple[Pairs, Pairs]:
    """The bundled sample's raw encoder features: its ``train`` split and its ``test`` split.

    Image: EfficientNet-Lite0 pooled features (1280-d); text: all-MiniLM-L6-v2 sentence embeddings (384-d); both
    fp16 in the file, float32 here; ``categories`` attached. ``arrays`` defaults to ``embspace.data.load_sample()``.
    """
    if arrays is None:
        try:
            from embspace.data import load_sample
        except ImportError:
            raise InputError("sample", "the bundled sample is not available in this installation") from None
        arrays = load_sample()
    missing = [k for k in ("image_features", "text_features", "split") if k not in arrays]
    if missing:
        raise InputError("sample", f"has no {', '.join(missing)}")
    split = np.asarray(arrays["split"]).astype(str)
    categories = np.asarray(arrays["categories"]).astype(str) if "categories" in arrays else None
    whole = Pairs(torch.from_numpy(np.asarray(arrays["image_features"], dtype=np.float32)),
                  torch.from_numpy(np.asarray(arrays["text_features"], dtype=np.float32)),
                  DEFAULT_NAMES, "sample", categories)
    train, test = np.flatnonzero(split == "train"), np.flatnonzero(split == "test")
    return whole.take(train, "sample:train"), whole.take(test, "sample:test")


def pairs_from_specs(specs: Sequence[str], names: Sequence[str] | None = None) -> list[Pairs]:
    """Group command-line specs into paired dumps, in order.

    A spec that holds both modalities (``pairs=train.npy``, a (2, N, D) stack, a clip-retrieval folder; a bare
    path is read as ``pairs=PATH``) is one dump; single-modality specs (``image=a.npz:img``) are taken two at a
    time. ``train.npy eval.npy``, ``pairs=a.npy pairs=b.npy`` and
    ``image=a.npz:img text=a.npz:txt image=b.npz:img text=b.npz:txt`` all give two dumps.
    """
    dumps: list[Pairs] = []
    pending: dict[str, Embeddings] = {}
    for spec in specs:
        for name, embeddings in _load_dump(spec, names).items():
            if name in pending:
                raise InputError(spec, f"a second '{name}' before the dump's other modality; give each dump as "
                                       "pairs=STACK or as two NAME=PATH specs")
            pending[name] = embeddings
            if len(pending) == 2:
                dumps.append(as_pairs(pending, " + ".join(e.source for e in pending.values())))
                pending = {}
    if pending:
        only = next(iter(pending.values()))
        raise InputError(only.source, "has no partner modality; a dump needs two paired modalities")
    return dumps


def _load_dump(spec: str, names: Sequence[str] | None) -> dict[str, Embeddings]:
    """The modalities of one spec; a bare path is read as ``pairs=PATH`` (a stack or a clip-retrieval folder)."""
    from embspace.io import load

    if "=" in spec:
        return load([spec], tuple(names) if names else None)
    try:
        return load([f"pairs={spec}"], tuple(names) if names else None)
    except InputError as exc:
        raise InputError(exc.where, f"{exc.problem} (a bare path is read as pairs=PATH; one modality is given as "
                                    "NAME=PATH[:KEY], e.g. image=a.npz:img)") from None


def train_eval_pairs(specs: Sequence[str], names: Sequence[str] | None = None, *,
                     eval_fraction: float = EVAL_FRACTION, seed: int = 0) -> tuple[Pairs, Pairs]:
    """The training and the evaluation pairs of a run from its dump specs (:func:`pairs_from_specs`): a TRAIN and
    an EVAL dump, or one dump split by :func:`split_pairs` (``eval_fraction`` of it held out, by ``seed``)."""
    if not specs:
        raise InputError("specs", "nothing to train on: give a TRAIN and an EVAL dump (train.npy eval.npy), or one "
                                  "dump to split")
    dumps = pairs_from_specs(specs, names)
    if len(dumps) == 1:
        return split_pairs(dumps[0], eval_fraction, seed)
    if len(dumps) != 2:
        raise InputError("specs", f"expected a TRAIN and an EVAL dump (or one to split), got {len(dumps)} dumps")
    return dumps[0], dumps[1]
