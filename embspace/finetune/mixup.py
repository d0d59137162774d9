r"""Spherical interpolation and the mixing helpers of geodesic multimodal mixup (Oh et al., NeurIPS 2023).

Shapes: ``a``, ``b``, ``x`` are (N, D) (any leading shape works for :func:`slerp`); a mixing coefficient λ is a
Python float, a 0-d tensor, or one value per row ((N,) or (N, 1)).

Convention used throughout embspace: **λ weights the first argument**,

.. math::

    \mathrm{slerp}(a, b, λ) = \frac{\sin(λθ)}{\sin θ}\,a + \frac{\sin((1-λ)θ)}{\sin θ}\,b,
    \qquad θ = \arccos(a·b),

so ``slerp(a, b, 1) = a`` and ``slerp(a, b, 0) = b`` (the authors' ``sph_inter(a, b, s)`` uses the same order).
"""

from __future__ import annotations

import math

import torch

from embspace.kernels.dense import normalize

__all__ = [
    "flip_targets",
    "mix_with_reversed",
    "sample_beta",
    "slerp",
]


def _work_dtype(*tensors: torch.Tensor) -> torch.dtype:
    """float64 if any input is float64, else float32 (fp16/bf16 are always upcast)."""
    return torch.float64 if any(t.dtype == torch.float64 for t in tensors) else torch.float32


def slerp(
    a: torch.Tensor,
    b: torch.Tensor,
    lam: float | torch.Tensor,
    *,
    normalized: bool = False,
    eps: float | None = None,
) -> torch.Tensor:
    r"""Spherical linear interpolation, row by row, with weight λ on the FIRST argument.

    .. math::

        \mathrm{slerp}(a, b, λ) = \frac{\sin(λθ)}{\sin θ}\,â + \frac{\sin((1-λ)θ)}{\sin θ}\,b̂,
        \qquad θ = \arccos(\mathrm{clamp}(â·b̂, -1+ε, 1-ε))

    Source: Shoemake (1985); used for the hard negatives of m²-mix, Oh et al. NeurIPS 2023 (``sph_inter``).

    Numerics (the authors' ``sph_inter`` has none of these guards and gives NaN in fp16):

    * computed in float32 (float64 if an input is float64) and returned in ``a``'s dtype;
    * the cosine is clamped to [−1+ε, 1−ε], ε = 16·(machine epsilon of the working dtype) unless given, so
      sin θ ≥ √ε > 0 and every gradient is finite;
    * rows with â·b̂ > 1−ε (θ → 0, identical inputs) use the normalised linear mix normalise(λâ + (1−λ)b̂),
      which agrees with slerp to O(θ²);
    * the result is renormalised, so it is a unit vector up to rounding. Exactly antipodal rows have no
      unique geodesic: the result is then finite (zero at λ = ½) and meaningless.

    Args:
        a, b: (..., D) tensors of the same shape; normalised inside unless ``normalized=True``.
        lam: the weight on ``a``: a float, a 0-d tensor, or one value per row ((N,) or (N, 1)).
        normalized: skip the row normalisation of the inputs.
        eps: the clamp margin on the cosine.

    Returns:
        (..., D) unit rows, dtype of ``a``.

    Example:
        >>> a, b = torch.tensor([[1.0, 0.0]]), torch.tensor([[0.0, 1.0]])
        >>> slerp(a, b, 0.5)
        tensor([[0.7071, 0.7071]])
    """
    if a.shape != b.shape:
        raise ValueError(f"slerp: shapes differ: {tuple(a.shape)} vs {tuple(b.shape)}")
    out_dtype = a.dtype
    work = _work_dtype(a, b)
    a = a.to(work)
    b = b.to(work)
    if not normalized:
        a, b = normalize(a), normalize(b)
    if eps is None:
        eps = 16 * torch.finfo(work).eps
    lam_t = torch.as_tensor(lam, dtype=work, device=a.device)
    if lam_t.ndim == 1:
        lam_t = lam_t.unsqueeze(-1)  # (N,) -> (N, 1), one λ per row
    cos_raw = (a * b).sum(-1, keepdim=True)  # (..., 1)
    near = cos_raw > 1 - eps  # θ → 0: fall back to the linear mix
    theta = torch.acos(cos_raw.clamp(-1 + eps, 1 - eps))  # (..., 1), in [√(2ε), π − √(2ε)]
    sin_theta = torch.sin(theta)
    geodesic = (torch.sin(lam_t * theta) * a + torch.sin((1 - lam_t) * theta) * b) / sin_theta  # (..., D)
    linear = lam_t * a + (1 - lam_t) * b  # (..., D)
    return normalize(torch.where(near, linear, geodesic)).to(out_dtype)


def mix_with_reversed(x: torch.Tensor, lam: float | torch.Tensor, *, normalized: bool = False) -> torch.Tensor:
    """Mix each row with the batch in reverse order: row i ↦ slerp(x̂_i, x̂_{N−1−i}, λ).

    This is the uni-modal mixup of Oh et al. 2023 (V-mix / L-mix / VL-mix in the authors' ``main.py``:
    ``sph_inter(f, torch.flip(f, dims=[0]), lamb)``). With odd N the middle row is mixed with itself and
    stays unchanged.
    """
    return slerp(x, x.flip(0), lam, normalized=normalized)


def flip_targets(
    n: int,
    lam: float | torch.Tensor,
    *,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """Soft targets of V-mix / L-mix: T = λI + (1−λ)·flip(I), an (n, n) matrix.

    flip(I) is the anti-diagonal (row i has its 1 in column n−1−i), matching ``torch.flip(I, dims=[0])`` in
    the authors' ``calc_mix_loss``. Each row sums to 1; with odd n the middle row is a one-hot on the diagonal.
    """
    eye = torch.eye(n, device=device, dtype=dtype)  # (n, n)
    lam_t = torch.as_tensor(lam, dtype=dtype, device=eye.device)
    return lam_t * eye + (1 - lam_t) * eye.flip(0)


def _log_gamma_sample(alpha: float, n: int, generator: torch.Generator | None) -> torch.Tensor:
    """log of n Gamma(α, 1) draws (float64): Marsaglia & Tsang (2000), boosted by U^{1/α} for α < 1.

    Working in log space keeps tiny α (e.g. 0.2, whose draws underflow float64) exact enough for a ratio.
    """
    device = generator.device if generator is not None else torch.device("cpu")
    opts = {"generator": generator, "dtype": torch.float64, "device": device}
    a = alpha + 1.0 if alpha < 1 else alpha
    d = a - 1.0 / 3.0
    c = 1.0 / math.sqrt(9.0 * d)
    out = torch.empty(n, dtype=torch.float64, device=device)
    todo = torch.arange(n, device=device)
    while todo.numel():
        z = torch.randn(todo.numel(), **opts)
        u = 1.0 - torch.rand(todo.numel(), **opts)  # (0, 1]
        v = (1.0 + c * z) ** 3
        logv = torch.log(v.clamp_min(1e-300))
        ok = (v > 0) & (torch.log(u) < 0.5 * z * z + d - d * v + d * logv)
        out[todo[ok]] = math.log(d) + logv[ok]
        todo = todo[~ok]
    if alpha < 1:
        out = out + torch.log(1.0 - torch.rand(n, **opts)) / alpha
    return out


def sample_beta(
    alpha: float,
    size: int | None = None,
    *,
    generator: torch.Generator | None = None,
) -> float | torch.Tensor:
    """Draw λ ~ Beta(α, α) from a (seedable) ``torch.Generator``.

    λ = G₁ / (G₁ + G₂) with G₁, G₂ ~ Gamma(α, 1), computed as sigmoid(log G₁ − log G₂).
    ``torch.distributions.Beta`` cannot take a generator, hence this sampler. The authors draw with
    ``random.betavariate(α, α)``, one λ per batch.

    Returns:
        a float if ``size`` is None, else a float64 tensor of shape (size,).
    """
    if not alpha > 0:
        raise ValueError(f"sample_beta: alpha must be > 0, got {alpha}")
    n = 1 if size is None else int(size)
    lam = torch.sigmoid(_log_gamma_sample(alpha, n, generator) - _log_gamma_sample(alpha, n, generator))
    return float(lam[0]) if size is None else lam
