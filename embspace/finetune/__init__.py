"""Fine-tuning losses and training-free shifts for CLIP-like models.

Losses (pure functions and open_clip-style modules; see :mod:`embspace.finetune.losses`):
CLIP InfoNCE, m²-mix / V-, L-, VL-mix / m³-mix (Oh et al. 2023), CUA / CUAXU (Fahim et al. 2024), and the latent
structure losses of Jiang et al. (2023). Mixing helpers: :func:`slerp` (λ on the first argument),
:func:`sample_beta`. Baselines: :func:`shift_gap` (Liang et al. 2022), :func:`center_modalities` (on whole dumps:
:func:`shift_dump`). Training on cached features: :func:`fit` with a :class:`FitConfig` (projection heads or
residual adapters, :mod:`.heads`; the loop, checkpoints and exact resumption, :mod:`.train`); drop-in use of the
losses in open_clip / Hugging Face training steps: :mod:`.integration`.
"""

from embspace.finetune.config import LOSSES, FitConfig
from embspace.finetune.data import Pairs, sample_pairs, split_pairs
from embspace.finetune.dumps import shift_dump
from embspace.finetune.fitting import FitResult, fit
from embspace.finetune.heads import Projection, ResidualAdapter, TwoTower, build_model
from embspace.finetune.losses import ClipLoss, clip_loss, soft_cross_entropy
from embspace.finetune.losses_gap import CUALoss, CUAXULoss, cua_loss, cuaxu_loss
from embspace.finetune.losses_mix import (
    M2MixLoss,
    M3MixLoss,
    lmix_loss,
    m2mix_logits,
    m2mix_loss,
    m3mix_loss,
    vlmix_loss,
    vmix_loss,
)
from embspace.finetune.losses_structure import (
    LatentStructureLoss,
    bridge_target,
    brownian_bridge_loss,
    feature_separation_loss,
    geometric_consistency_loss,
    independent_uniformity_loss,
    inmodal_infonce_loss,
)
from embspace.finetune.mixup import flip_targets, mix_with_reversed, sample_beta, slerp
from embspace.finetune.objectives import make_loss
from embspace.finetune.shift import center_modalities, shift_gap

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
