"""The singular-value spectrum of each modality and the ranks built on it (Garrido et al. 2023; Roy & Vetterli
2007; Agrawal et al. 2022), from the D×D Gram matrix streamed in float64 (:mod:`embspace.metrics.spectrum`).

The singular values themselves go into ``report.spectra`` (uncentred and centred); the α-ReQ fit range used into
``settings["alpha_req_range"]``. Not bootstrapped: every resample would need its own eigendecomposition.
"""

from __future__ import annotations

from typing import ClassVar

from embspace.families.base import Context, Family, Found, Need, RowStat, Statistics
from embspace.metrics.spectrum import spectrum_metrics

SPECTRUM_KEYS = ("rankme", "effective_rank", "effective_rank_centered", "participation_ratio", "alpha_req")


class Spectrum(Family):
    name = "spectrum"
    aliases = ("rankme", "effective_rank", "participation_ratio", "alpha_req")
    table_position = 20.0
    conventions: ClassVar[dict[str, str]] = {
        "rankme": "exp(entropy of p_k = σ_k/Σσ + 1e-7), σ = singular values of the uncentred matrix "
                  "(Garrido et al. 2023)",
        "effective_rank": "exp(entropy of p_k = σ_k/Σσ), uncentred matrix, no ε (Roy & Vetterli 2007)",
        "effective_rank_centered": "exp(entropy of p_k = σ_k/Σσ), mean-centred matrix, no ε (Roy & Vetterli 2007)",
        "participation_ratio": "(Σλ)²/Σλ², λ = eigenvalues of the covariance (centred)",
        "alpha_req": "−slope of log λ_k vs log k over settings.alpha_req_range, λ = covariance eigenvalues "
                     "(Agrawal et al. 2022)",
    }
    not_resampled = "spectrum (rankme, effective_rank, …)"

    def needs(self, context: Context) -> list[Need]:
        return [RowStat("gram", name, label="spectrum") for name in context.names]

    def finish(self, context: Context, stats: Statistics) -> Found:
        fit_range = context.options.get("alpha_req_range")
        results = {n: spectrum_metrics(stats.row("gram", n), fit_range) for n in context.names}
        return Found(
            metrics={key: {n: r[key] for n, r in results.items()} for key in SPECTRUM_KEYS},
            spectra={n: {"singular_values": r["singular_values"].tolist(),
                         "singular_values_centered": r["singular_values_centered"].tolist()}
                     for n, r in results.items()},
            settings={"alpha_req_range": {n: list(r["alpha_req_range"]) for n, r in results.items()}})
