"""Fine-tuning losses and training-free shifts for CLIP-like models.

Losses (pure functions and open_clip-style modules; see :mod:`embspace.finetune.losses`):
CLIP InfoNCE, m²-mix / V-, L-, VL-mix / m³-mix (Oh et al. 2023), CUA / CUAXU (Fahim et al. 2024), and the latent
structure losses of Jiang et al. (2023). Mixing helpers: :func:`slerp` (λ on the first argument),
:func:`sample_beta`. Baselines: :func:`shift_gap` (Liang et al. 2022), :func:`center_modalities` (on whole dumps:
:func:`shift_dump`). Training on cached features: :func:`fit` with a :class:`FitConfig` (projection heads or
residual adapters, :mod:`.heads`; the loop, checkpoints and exact resumption, :mod:`.train`); drop-in use of the
losses in open_clip / Hugging Face training steps: :mod:`.integration`.

The names are imported on first use (``embspace.finetune.config`` alone needs no torch).
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

_MODULES = {
    "config": ("LOSSES", "FitConfig"),
    "data": ("Pairs", "sample_pairs", "split_pairs"),
    "dumps": ("shift_dump",),
    "fitting": ("FitResult", "fit"),
    "heads": ("Projection", "ResidualAdapter", "TwoTower", "build_model"),
    "losses": ("ClipLoss", "clip_loss", "soft_cross_entropy"),
    "losses_gap": ("CUALoss", "CUAXULoss", "cua_loss", "cuaxu_loss"),
    "losses_mix": ("M2MixLoss", "M3MixLoss", "lmix_loss", "m2mix_logits", "m2mix_loss", "m3mix_loss", "vlmix_loss",
                   "vmix_loss"),
    "losses_structure": ("LatentStructureLoss", "bridge_target", "brownian_bridge_loss", "feature_separation_loss",
                         "geometric_consistency_loss", "independent_uniformity_loss", "inmodal_infonce_loss"),
    "mixup": ("flip_targets", "mix_with_reversed", "sample_beta", "slerp"),
    "objectives": ("make_loss",),
    "shift": ("center_modalities", "shift_gap"),
}
_HOME = {name: module for module, names in _MODULES.items() for name in names}


def __getattr__(name: str) -> Any:
    """A public name of a submodule (``embspace.finetune.fit``), or a submodule (``embspace.finetune.heads``)."""
    if name in _HOME:
        value = getattr(import_module(f"embspace.finetune.{_HOME[name]}"), name)
    else:
        try:
            value = import_module(f"{__name__}.{name}")
        except ModuleNotFoundError:
            raise AttributeError(f"module {__name__!r} has no attribute {name!r}") from None
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})


__all__ = [
    "LOSSES",
    "CUALoss",
    "CUAXULoss",
    "ClipLoss",
    "FitConfig",
    "FitResult",
    "LatentStructureLoss",
    "M2MixLoss",
    "M3MixLoss",
    "Pairs",
    "Projection",
    "ResidualAdapter",
    "TwoTower",
    "bridge_target",
    "brownian_bridge_loss",
    "build_model",
    "center_modalities",
    "clip_loss",
    "cua_loss",
    "cuaxu_loss",
    "feature_separation_loss",
    "fit",
    "flip_targets",
    "geometric_consistency_loss",
    "independent_uniformity_loss",
    "inmodal_infonce_loss",
    "lmix_loss",
    "m2mix_logits",
    "m2mix_loss",
    "m3mix_loss",
    "make_loss",
    "mix_with_reversed",
    "sample_beta",
    "sample_pairs",
    "shift_dump",
    "shift_gap",
    "slerp",
    "soft_cross_entropy",
    "split_pairs",
    "vlmix_loss",
    "vmix_loss",
]
