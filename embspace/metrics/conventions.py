"""The convention behind every reported metric, written into each report beside the numbers."""

from __future__ import annotations

CONVENTIONS: dict[str, str] = {
    "gap": "‖mean(x̂) − mean(ŷ)‖₂, rows L2-normalised, means not renormalised (Liang et al. 2022)",
    "centroid_cosine": "cos(mean x̂, mean ŷ) (Fahim et al. 2024)",
    "alignment": "mean_i ‖x̂_i − ŷ_i‖^α, α from settings (Wang & Isola 2020)",
    "matched_cosine": "mean_i x̂_i·ŷ_i over the true pairs",
    "rmg": "relative modality gap d_m/(d_m + (d_A + d_B)/2), d_m = max(1 − (matched+1)/2, 1e-3), "
           "d_A = 1 − (cone_A+1)/2 (Schrodi et al. 2024)",
    "cone": "mean over i≠j of x̂_i·x̂_j within each modality (Liang et al. 2022, cone effect)",
    "uniformity": "per modality: log mean_{i<j} exp(−t‖x̂_i − x̂_j‖²) (Wang & Isola 2020); mean: (U_A + U_B)/2; "
                  "joint: U over the union of both modalities, 2N points (Oh et al. 2023); "
                  "cross: log mean_{i≠j} exp(−t‖x̂_i − ŷ_j‖²) (Fahim et al. 2024); t from settings",
    "rankme": "exp(entropy of p_k = σ_k/Σσ + 1e-7), σ = singular values of the uncentred matrix "
              "(Garrido et al. 2023)",
    "effective_rank": "exp(entropy of p_k = σ_k/Σσ), uncentred matrix, no ε (Roy & Vetterli 2007)",
    "effective_rank_centered": "exp(entropy of p_k = σ_k/Σσ), mean-centred matrix, no ε (Roy & Vetterli 2007)",
    "participation_ratio": "(Σλ)²/Σλ², λ = eigenvalues of the covariance (centred)",
    "alpha_req": "−slope of log λ_k vs log k over settings.alpha_req_range, λ = covariance eigenvalues "
                 "(Agrawal et al. 2022)",
    "linear_separability": "held-out accuracy of an L2 logistic regression (C = 1) telling the modalities apart, "
                           "80/20 split by pair (Fahim et al. 2024)",
    "hubness": "skewness (population) of the k-occurrence of the target modality in the queries' top-k, "
               "k = settings.hubness_k (Radovanović et al. 2010)",
}


def convention(name: str) -> str | None:
    """The convention text of a metric name (``recall@k`` for any k)."""
    if name.startswith("recall@"):
        k = name.removeprefix("recall@")
        return (f"fraction of queries whose partner is among the {k} most cosine-similar items of the other "
                "modality; ties count for the partner")
    return CONVENTIONS.get(name)
