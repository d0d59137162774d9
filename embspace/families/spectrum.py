"""The singular-value spectrum of each modality and the ranks built on it (Garrido et al. 2023; Roy & Vetterli
2007; Agrawal et al. 2022), from the D×D Gram matrix streamed in float64 (:mod:`embspace.metrics.spectrum`).

Variants by name: ``rankme`` is the paper's (σ of the uncentred matrix), ``rankme_covariance`` reptrix's
(eigenvalues of the centred covariance); α-ReQ is fitted as the authors' code does (``alpha_req_fit="reptrix"``:
1/k-weighted over k = 11 … 100) or by unweighted least squares over every eigenvalue (``"ols"``).

The singular values themselves go into ``report.spectra`` (uncentred and centred); the α-ReQ fit and range used into
``settings["alpha_req_fit"]`` and ``settings["alpha_req_range"]``, and, where α-ReQ is undefined (NaN, ``null`` in
JSON), the reason into ``settings["alpha_req_undefined"]``; where the default range was shortened to a short spectrum,
a note into ``settings["alpha_req_note"]``. Not bootstrapped: every resample would need its own
eigendecomposition.
"""

from __future__ import annotations

from typing import ClassVar

from embspace.errors import InputError
from embspace.families.base import Context, Family, Found, Need, RowStat, Statistics
from embspace.metrics.spectrum import ALPHA_REQ_FITS, spectrum_metrics
from embspace.options import check_choice

SPECTRUM_KEYS = ("rankme", "rankme_covariance", "effective_rank", "effective_rank_centered", "participation_ratio",
                 "alpha_req")
DEFAULT_FIT = "reptrix"


def alpha_req_fit(context: Context) -> str:
    """The α-ReQ fit a run asked for (``reptrix`` unless ``alpha_req_fit`` says otherwise)."""
    fit = context.options.get("alpha_req_fit") or DEFAULT_FIT
    check_choice(fit, ALPHA_REQ_FITS, "alpha_req_fit", "α-ReQ fit",
                 "reptrix: the authors' 1/k-weighted fit over k = 11…100; ols: unweighted over every eigenvalue")
    return fit


class Spectrum(Family):
    name = "spectrum"
    aliases = ("rankme", "rankme_covariance", "effective_rank", "participation_ratio", "alpha_req")
    table_position = 20.0
    conventions: ClassVar[dict[str, str]] = {
        "rankme": "exp(entropy of p_k = σ_k/Σσ + 1e-7), σ = singular values of the uncentred matrix "
                  "(Garrido et al. 2023, the paper's variant)",
        "rankme_covariance": "exp(entropy of p_k = λ_k/Σλ + 1e-7), λ = eigenvalues of the centred covariance "
                             "(σ² of the centred matrix), min(N, D) of them (reptrix get_rankme)",
        "effective_rank": "exp(entropy of p_k = σ_k/Σσ), uncentred matrix, no ε (Roy & Vetterli 2007)",
        "effective_rank_centered": "exp(entropy of p_k = σ_k/Σσ), mean-centred matrix, no ε (Roy & Vetterli 2007)",
        "participation_ratio": "(Σλ)²/Σλ², λ = eigenvalues of the covariance (centred)",
        "alpha_req": "−slope of log λ_k vs log k, λ = covariance eigenvalues, over settings.alpha_req_range; "
                     "settings.alpha_req_fit: reptrix = 1/k-weighted least squares, default k = 11…100 (Agrawal et "
                     "al. 2022, reptrix get_powerlaw; a spectrum of K < 100 eigenvalues: k = 11…K, or 1…K when "
                     "K ≤ 11, see "
                     "settings.alpha_req_note); ols = unweighted, default every λ > 1e-12·λ₁",
    }
    not_resampled = "spectrum (rankme, effective_rank, …)"

    def needs(self, context: Context) -> list[Need]:
        alpha_req_fit(context)  # an unknown fit, or a range no spectrum of these rows can hold, is refused first
        fit_range = context.options.get("alpha_req_range")
        most = min(context.n - 1, context.dim)  # covariance eigenvalues that can be non-zero
        if fit_range is not None and fit_range[1] > most:
            raise InputError("alpha_req_range", f"the fit over k = {fit_range[0]}…{fit_range[1]} needs "
                                                f"{fit_range[1]} covariance eigenvalues; {context.n} rows of dimension "
                                                f"{context.dim} have at most {most}")
        return [RowStat("gram", name, label="spectrum") for name in context.names]

    def finish(self, context: Context, stats: Statistics) -> Found:
        fit_range = context.options.get("alpha_req_range")
        fit = alpha_req_fit(context)
        results = {n: spectrum_metrics(stats.row("gram", n), fit_range, fit) for n in context.names}
        undefined = {n: r["alpha_req_undefined"] for n, r in results.items() if r["alpha_req_undefined"]}
        notes = {n: r["alpha_req_note"] for n, r in results.items() if r["alpha_req_note"]}
        return Found(
            metrics={key: {n: r[key] for n, r in results.items()} for key in SPECTRUM_KEYS},
            spectra={n: {"singular_values": r["singular_values"].tolist(),
                         "singular_values_centered": r["singular_values_centered"].tolist()}
                     for n, r in results.items()},
            settings={"alpha_req_fit": fit,
                      "alpha_req_range": {n: list(r["alpha_req_range"]) for n, r in results.items()},
                      **({"alpha_req_undefined": undefined} if undefined else {}),
                      **({"alpha_req_note": notes} if notes else {})})
