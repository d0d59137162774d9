"""embspace: what does my embedding space look like, and did my fine-tuning fix it?

>>> import embspace
>>> report = embspace.measure(image=image_embeddings, text=text_embeddings)   # doctest: +SKIP
>>> report["gap"], report["uniformity.mean"]                                  # doctest: +SKIP

The names below are imported on first use, so that ``import embspace`` (and every ``embspace … --help``) does not
pay for torch, scipy or matplotlib until a measurement needs them. ``embspace.measure`` and ``embspace.compare`` are
the functions, also after their modules of the same name have been imported.
"""

from __future__ import annotations

import sys
import types
from importlib import import_module
from typing import TYPE_CHECKING, Any

from embspace.errors import InputError
from embspace.version import __version__

if TYPE_CHECKING:  # what the lazy names are, for type checkers and readers
    from embspace.compare import Comparison, compare
    from embspace.data import sample_embeddings as load_sample
    from embspace.embeddings import Embeddings
    from embspace.page import html_report
    from embspace.report import Report
    from embspace.spaces.compare import SpaceComparison, compare_spaces
    from embspace.trajectory import Trajectory, measure_trajectory

_LAZY = {  # name: (module, its name there)
    "Comparison": ("embspace.compare", "Comparison"), "compare": ("embspace.compare", "compare"),
    "Embeddings": ("embspace.embeddings", "Embeddings"), "Report": ("embspace.report", "Report"),
    "Trajectory": ("embspace.trajectory", "Trajectory"),
    "compare_spaces": ("embspace.spaces.compare", "compare_spaces"),
    "SpaceComparison": ("embspace.spaces.compare", "SpaceComparison"),
    "measure_trajectory": ("embspace.trajectory", "measure_trajectory"),
    "load_sample": ("embspace.data", "sample_embeddings"),  # the joint-space Embeddings; embspace.data's are arrays
    "gap_matrix": ("embspace.anatomy", "gap_matrix"),
    "html_report": ("embspace.page", "html_report"),
}
_FUNCTIONS = ("measure", "compare")  # functions named as their modules: the module must not replace the function


def load(*specs: str, names: tuple[str, ...] | None = None) -> dict[str, Embeddings]:
    """Open dumps lazily by CLI-style spec: ``load("image=coco.npz:img", "text=coco.npz:txt")``,
    ``load("pairs=features_clip.npy")``."""
    from embspace.io import load as load_specs

    return load_specs(list(specs), names)


def _measure_accepting_a_stack() -> Any:
    """:func:`embspace.measure.measure`, which also takes a (2, N, D) stack positionally as one pair
    (``measure(np.stack([X, Y]))`` measures ``image=X, text=Y``) and refuses any other array in that place in one
    line (a mapping of name to array, or keyword arrays, is what it takes)."""
    import functools

    from embspace.measure import measure as measure_modalities

    @functools.wraps(measure_modalities)
    def measure(modalities: Any = None, /, **options: Any) -> Any:
        shape = getattr(modalities, "shape", None)
        if shape is not None and not hasattr(modalities, "keys"):
            if len(shape) == 3 and shape[0] == 2:
                modalities = {"image": modalities[0], "text": modalities[1]}
            else:
                raise InputError("modalities", f"got an array of shape {tuple(shape)}; give a (2, N, D) stack of "
                                               "pairs, a mapping {name: N×D array} or keyword arrays "
                                               "(measure(image=X, text=Y))")
        return measure_modalities(modalities, **options)

    return measure


def __getattr__(name: str) -> Any:
    """Import a public name or a submodule on first use (``embspace.plot`` pulls in matplotlib, the rest torch)."""
    if name == "measure":
        value = _measure_accepting_a_stack()
    elif name == "plot":
        value = import_module("embspace.plot")
    elif name in _LAZY:
        module, attribute = _LAZY[name]
        value = getattr(import_module(module), attribute)
    else:  # a subpackage or module not imported yet (embspace.io, embspace.kernels)
        try:
            value = import_module(f"{__name__}.{name}")
        except ModuleNotFoundError:
            raise AttributeError(f"module {__name__!r} has no attribute {name!r}") from None
    globals()[name] = value
    return value


class _Package(types.ModuleType):
    """The package module: importing ``embspace.measure`` or ``embspace.compare`` (the modules) leaves the
    attributes of those names the functions (Python sets a package's attribute to each submodule it imports)."""

    def __setattr__(self, name: str, value: Any) -> None:
        if name in _FUNCTIONS and isinstance(value, types.ModuleType):
            return
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package

__all__ = ["Comparison", "Embeddings", "InputError", "Report", "SpaceComparison", "Trajectory", "__version__",
           "compare", "compare_spaces", "gap_matrix", "html_report", "load", "load_sample", "measure",
           "measure_trajectory", "plot"]


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
