"""The bundled real sample: 500 emoji + 500 openclipart pairs through a mini-CLIP (see ``README.md`` here).

>>> sample = load_sample()
>>> sample["image"].shape, sample["text"].shape
((1000, 256), (1000, 256))
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import numpy as np

__all__ = ["SAMPLE_PATH", "load_sample", "sample_steps"]

SAMPLE_PATH: Path = Path(str(resources.files(__name__).joinpath("sample.npz")))
"""The bundled ``sample.npz``."""


def load_sample() -> dict[str, np.ndarray]:
    """Every array of the bundled sample, keyed as in the file (no pickled objects)."""
    with np.load(SAMPLE_PATH, allow_pickle=False) as npz:
        return {key: npz[key] for key in npz.files}


def sample_steps() -> list[int]:
    """The training steps of the snapshots ``image_step{s}`` / ``text_step{s}``, ascending; the last is final."""
    with np.load(SAMPLE_PATH, allow_pickle=False) as npz:
        return [int(step) for step in npz["steps"]]
