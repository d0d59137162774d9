"""Towers trained on cached features: projection heads and residual adapters, one per modality.

* projection head (CLIP's ``visual.proj`` / ``text_projection``): z = W·f, W ∈ ℝ^{d×D_in}, no bias — the linear
  default; ``"mlp"`` is W₂·GELU(W₁·f + b₁) + b₂;
* residual adapter (CLIP-Adapter, Gao et al. 2021, without its mixing ratio): z = e + g(e) with the last layer of
  g initialised to zero, so the adapter starts as the identity and "before" is the input embedding itself.

The input dimensions may differ per modality (1280-d image and 384-d text features into one 256-d space); adapters
keep their input dimension, so both modalities must share it. :class:`TwoTower` also holds the learnable
logit scale log(1/τ) (CLIP: initialised to log(1/0.07), 1/τ clamped at 100) and, for the latent-structure loss of
Jiang et al. (2023), the extra "independent feature" heads of its deep feature separation term.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from embspace.finetune.config import DEFAULT_DIM, FitConfig


def _tower(d_in: int, d_out: int, head: str, hidden: int, *, zero_last: bool = False) -> nn.Module:
    """A linear map (no bias) or a two-layer MLP; ``zero_last`` zeroes the last layer (identity adapter)."""
    if head == "linear":
        layer = nn.Linear(d_in, d_out, bias=False)
        last = layer
        module: nn.Module = layer
    else:
        last = nn.Linear(hidden, d_out)
        module = nn.Sequential(nn.Linear(d_in, hidden), nn.GELU(), last)
    if zero_last:
        nn.init.zeros_(last.weight)
        if last.bias is not None:
            nn.init.zeros_(last.bias)
    return module


class Projection(nn.Module):
    """z = head(f): a projection of cached features into the joint space. f: (N, D_in) → z: (N, d)."""

    def __init__(self, d_in: int, d_out: int, head: str = "linear", hidden: int = 512) -> None:
        super().__init__()
        self.net = _tower(d_in, d_out, head, hidden)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.net(features)


class ResidualAdapter(nn.Module):
    """z = e + g(e), g's last layer zero at init (z = e before training). e: (N, D) → z: (N, D)."""

    def __init__(self, dim: int, head: str = "linear", hidden: int = 512) -> None:
        super().__init__()
        self.net = _tower(dim, dim, head, hidden, zero_last=True)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return features + self.net(features)


class TwoTower(nn.Module):
    """One tower per modality, the logit scale, and optional independent-feature heads.

    ``forward(image_features, text_features)`` → (image embeddings, text embeddings), not normalised (every loss and
    metric normalises rows itself). ``scale()`` is 1/τ = exp(log_scale) clamped at ``max_scale``.
    """

    def __init__(
        self,
        image: nn.Module,
        text: nn.Module,
        *,
        init_scale: float = 1 / 0.07,
        max_scale: float = 100.0,
        learn_scale: bool = True,
        independent: tuple[nn.Module, nn.Module] | None = None,
    ) -> None:
        super().__init__()
        self.image = image
        self.text = text
        self.log_scale = nn.Parameter(torch.tensor(math.log(init_scale)), requires_grad=learn_scale)
        self.max_scale = max_scale
        self.independent = nn.ModuleList(independent) if independent is not None else None

    def forward(self, image_features: torch.Tensor, text_features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.image(image_features), self.text(text_features)

    def scale(self) -> torch.Tensor:
        return self.log_scale.exp().clamp(max=self.max_scale)

    def tower_parameters(self) -> list[nn.Parameter]:
        """Every trainable parameter except the logit scale (the ones weight decay applies to)."""
        return [p for name, p in self.named_parameters() if name != "log_scale" and p.requires_grad]


def build_model(image_dim: int, text_dim: int, config: FitConfig) -> TwoTower:
    """The towers for ``config``, initialised from ``config.seed`` without touching the global RNG.

    Projection heads map both modalities to ``config.dim`` (default 256). Adapters need ``image_dim == text_dim``.
    The "latent" loss adds one independent-feature head per modality (same type as the towers, output ``dim``).
    """
    if config.adapter and image_dim != text_dim:
        raise ValueError(f"adapters keep their input dimension, so both modalities need the same one; got "
                         f"{image_dim} and {text_dim} (use projection heads instead)")
    if config.adapter and config.dim not in (None, image_dim):
        raise ValueError(f"adapters keep their input dimension {image_dim}; dim={config.dim} cannot apply")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        if config.adapter:
            image: nn.Module = ResidualAdapter(image_dim, config.head, config.hidden)
            text: nn.Module = ResidualAdapter(text_dim, config.head, config.hidden)
            dim = image_dim
        else:
            dim = config.dim or DEFAULT_DIM
            image = Projection(image_dim, dim, config.head, config.hidden)
            text = Projection(text_dim, dim, config.head, config.hidden)
        independent = None
        if config.loss == "latent":
            independent = (Projection(image_dim, dim, config.head, config.hidden),
                           Projection(text_dim, dim, config.head, config.hidden))
    return TwoTower(image, text, init_scale=config.init_logit_scale, max_scale=config.max_logit_scale,
                    learn_scale=config.learn_logit_scale, independent=independent)
