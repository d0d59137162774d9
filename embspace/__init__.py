"""embspace: what does my embedding space look like, and did my fine-tuning fix it?

>>> import embspace
>>> report = embspace.measure(image=image_embeddings, text=text_embeddings)   # doctest: +SKIP
>>> report["gap"], report["uniformity.mean"]                                  # doctest: +SKIP
"""

from __future__ import annotations

__version__ = "0.1.0"

from embspace.compare import Comparison, compare
from embspace.embeddings import Embeddings
from embspace.errors import InputError
from embspace.measure import measure
from embspace.report import Report
from embspace.trajectory import Trajectory, measure_trajectory


def load(*specs: str, names: tuple[str, ...] | None = None) -> dict[str, Embeddings]:
    """Open dumps lazily by CLI-style spec: ``load("image=coco.npz:img", "text=coco.npz:txt")``,
    ``load("pairs=features_clip.npy")``."""
    from embspace.io import load as load_specs

    return load_specs(list(specs), names)


def load_sample(step: int | None = None) -> dict[str, Embeddings]:
    """The bundled real sample's joint-space embeddings (final training step unless ``step`` is given)."""
    from embspace.data import load_sample as load_arrays

    arrays = load_arrays()
    suffix = "" if step is None else f"_step{step}"
    if f"image{suffix}" not in arrays:
        raise InputError("sample", f"no training step {step}; steps are {arrays['steps'].tolist()}")
    return {name: Embeddings.from_array(arrays[f"{name}{suffix}"], f"sample:{name}{suffix}")
            for name in ("image", "text")}


__all__ = ["Comparison", "Embeddings", "InputError", "Report", "Trajectory", "__version__", "compare", "load",
           "load_sample", "measure", "measure_trajectory", "plot"]


def __getattr__(name: str):
    """``embspace.plot`` is imported on first use (it pulls in matplotlib)."""
    if name == "plot":
        import importlib

        return importlib.import_module("embspace.plot")
    raise AttributeError(f"module 'embspace' has no attribute {name!r}")
