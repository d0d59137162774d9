"""The bundled real sample: 500 emoji + 500 openclipart pairs through a mini-CLIP (see ``README.md`` here).

>>> sample = load_sample()
>>> sample["image"].shape, sample["text"].shape
((1000, 256), (1000, 256))
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import numpy as np

__all__ = ["SAMPLE_PATH", "load_sample", "sample_embeddings", "sample_steps"]

SAMPLE_PATH: Path = Path(str(resources.files(__name__).joinpath("sample.npz")))
"""The bundled ``sample.npz``."""


def load_sample() -> dict[str, np.ndarray]:
    """Every array of the bundled sample, keyed as in the file (no pickled objects)."""
    with np.load(SAMPLE_PATH, allow_pickle=False) as npz:
        return {key: npz[key] for key in npz.files}


def sample_embeddings(step: int | None = None) -> dict:  # -> dict[str, Embeddings]
    """The sample's joint-space embeddings as ``{"image": Embeddings, "text": Embeddings}``: the final training step
    unless ``step`` is given (``embspace.load_sample``; the raw arrays are :func:`load_sample`)."""
    from embspace.embeddings import Embeddings
    from embspace.errors import InputError

    arrays = load_sample()
    suffix = "" if step is None else f"_step{step}"
    if f"image{suffix}" not in arrays:
        raise InputError("step", f"the sample has no training step {step}; steps are {arrays['steps'].tolist()}")
    return {name: Embeddings.from_array(arrays[f"{name}{suffix}"], f"sample:{name}{suffix}")
            for name in ("image", "text")}


def sample_steps() -> list[int]:
    """The training steps of the snapshots ``image_step{s}`` / ``text_step{s}``, ascending; the last is final."""
    with np.load(SAMPLE_PATH, allow_pickle=False) as npz:
        return [int(step) for step in npz["steps"]]
