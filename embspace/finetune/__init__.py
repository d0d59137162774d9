"""Fine-tuning losses and training-free shifts for CLIP-like models.

Losses (pure functions and open_clip-style modules; see :mod:`embspace.finetune.losses`):
CLIP InfoNCE, m²-mix / V-, L-, VL-mix / m³-mix (Oh et al. 2023), CUA / CUAXU (Fahim et al. 2024), and the latent
structure losses of Jiang et al. (2023). Mixing helpers: :func:`slerp` (λ on the first argument),
:func:`sample_beta`. Baselines: :func:`shift_gap` (Liang et al. 2022), :func:`center_modalities`.
"""

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
from embspace.finetune.shift import center_modalities, shift_gap

__all__ = [
    "CUALoss",
    "CUAXULoss",
    "ClipLoss",
    "LatentStructureLoss",
    "M2MixLoss",
    "M3MixLoss",
    "bridge_target",
    "brownian_bridge_loss",
    "center_modalities",
    "clip_loss",
    "cua_loss",
    "cuaxu_loss",
    "feature_separation_loss",
    "flip_targets",
    "geometric_consistency_loss",
    "independent_uniformity_loss",
    "inmodal_infonce_loss",
    "lmix_loss",
    "m2mix_logits",
    "m2mix_loss",
    "m3mix_loss",
    "mix_with_reversed",
    "sample_beta",
    "shift_gap",
    "slerp",
    "soft_cross_entropy",
    "vlmix_loss",
    "vmix_loss",
]
