"""Zero-shot accuracy and calibration (:mod:`embspace.metrics.zeroshot`, :mod:`embspace.metrics.calibration`).

For each labelled modality whose dimension is the prompts' (usually the image modality; a text modality scored
against class prompts works the same way): top-1 and top-5 accuracy of the class whose prompt is most
cosine-similar; the top-label L1 ECE in 15 equal-width bins (torchmetrics' ``MulticlassCalibrationError``) of
softmax(logit_scale · cosine) on all rows (``ece``), and, after fitting a temperature T on a seeded half of the rows
(``calibration.fit_split``), on the other half both at the given scale (``ece_held_out``) and at scale / T
(``ece_temperature_scaled``). ``report.vectors["reliability.<modality>"]`` holds the reliability tables of the given
and the temperature-scaled logits on the evaluation half (for :func:`embspace.plot.reliability`).

Under pair weights w (``compare``'s bootstrap): top-k = Σ w_i [rank_i < k] / Σ w, and the ECE of the given scale
Σ_b |Σ_{i∈b} w_i (a_i − p_i)| / Σ w, the bins fixed by each row's confidence; the temperature-scaled ECE needs a
refit per resample and is not bootstrapped.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np
import torch

from embspace.families.base import Context, Family, Found, Need, Statistics, Weighted
from embspace.families.labelled import label_set, labelled_rows, rows_need, rows_settings
from embspace.metrics import calibration
from embspace.metrics.zeroshot import TOP_KS, class_scores, top_k_accuracy, true_class_ranks


def scored(context: Context) -> list[str]:
    """The modalities zero-shot scores: the labelled ones of the prompts' dimension."""
    if label_set(context) is None:
        return []
    return list(context.settings["labels"]["zero_shot_on"])


class ZeroShot(Family):
    name = "zeroshot"
    aliases = ("zero_shot", "ece", "calibration")
    paired_only = False
    needs_labels = "labels= and prompts="
    table_position = 60.0
    resampled = "pairs"
    not_resampled = "ece_temperature_scaled (a refit per resample)"
    conventions: ClassVar[dict[str, str]] = {
        "zero_shot@1": "share of rows whose class prompt is the most cosine-similar (ties to the lower class index; "
                       "Radford et al. 2021)",
        "zero_shot@5": "share of rows whose class prompt is among the 5 most cosine-similar",
        "ece": "top-label L1 expected calibration error of softmax(logit_scale·cosine), 15 equal-width bins "
               "(torchmetrics MulticlassCalibrationError), all rows",
        "ece_held_out": "the same ECE on the evaluation half of a seeded 50/50 split (default_rng(seed))",
        "ece_temperature_scaled": "ECE on the evaluation half at logit_scale/T, T fitted by NLL on the other half "
                                  "(Guo et al. 2017)",
        "temperature": "the fitted T (logits divided by it)",
    }

    def needs(self, context: Context) -> list[Need]:
        return [rows_need(context, m) for m in scored(context)]

    def finish(self, context: Context, stats: Statistics) -> Found:
        labels = label_set(context)
        found = Found(settings={"zeroshot": {**rows_settings(context), "bins": calibration.BINS,
                                             "logit_scale": labels.logit_scale if labels else None,
                                             "split": "seeded half: default_rng(seed).permutation(N), first "
                                                      "floor(N/2) rows fit T, the rest evaluate",
                                             "modalities": scored(context)}})
        if labels is None:
            return found
        prompts = torch.from_numpy(labels.prompts)
        fit_rows, eval_rows = None, None
        for m in scored(context):
            _, x, y = labelled_rows(context, stats, m)
            scores = class_scores(torch.from_numpy(x), prompts)  # (n, C) float64
            truth = torch.from_numpy(y)
            ranks = true_class_ranks(scores, truth)
            for k in TOP_KS:
                if k <= scores.shape[1]:
                    found.metrics.setdefault(f"zero_shot@{k}", {})[m] = top_k_accuracy(ranks, k)
            logits = labels.logit_scale * scores
            found.metrics.setdefault("ece", {})[m] = calibration.expected_calibration_error(logits, truth)
            if fit_rows is None:
                split = calibration.fit_split(len(y), context.settings["seed"])
                fit_rows, eval_rows = (torch.from_numpy(r) for r in split)
            if len(fit_rows) < 1 or len(eval_rows) < 1:
                continue
            temperature = calibration.fit_temperature(logits[fit_rows], truth[fit_rows])
            given = calibration.reliability(*calibration.top_label(logits[eval_rows], truth[eval_rows]))
            tuned = calibration.reliability(*calibration.top_label(logits[eval_rows] / temperature,
                                                                   truth[eval_rows]))
            found.metrics.setdefault("ece_held_out", {})[m] = given.ece
            found.metrics.setdefault("ece_temperature_scaled", {})[m] = tuned.ece
            found.metrics.setdefault("temperature", {})[m] = temperature
            found.vectors[f"reliability.{m}"] = {"at_scale": given.to_dict(), "temperature_scaled": tuned.to_dict(),
                                                 "logit_scale": labels.logit_scale, "temperature": temperature}
        return found

    # --- compare's paired bootstrap: view.settings["labels"] holds the LabelSet of the rows --------------------
    def resample_paths(self, names, settings) -> list[str]:
        labels = settings.get("labels")
        if labels is None:
            return []
        on = [m for m in names if m in labels.labels and labels.prompts is not None]
        ks = [k for k in TOP_KS if labels.prompts is not None and k <= labels.prompts.shape[0]]
        return [f"zero_shot@{k}.{m}" for k in ks for m in on] + [f"ece.{m}" for m in on]

    def resample(self, view: Weighted) -> dict[str, np.ndarray]:
        labels = view.settings.get("labels")
        if labels is None:
            return {}
        paths = self.resample_paths(view.names, view.settings)
        out: dict[str, np.ndarray] = {}
        w = view.w.double()  # (b, N)
        n = w.sum(1)
        for m in [p.split(".", 1)[1] for p in paths if p.startswith("ece.")]:
            def terms(m=m) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
                rows = view.x if m == view.names[0] else view.y
                table = torch.from_numpy(labels.prompts)
                scores = class_scores(rows.double(), table)
                truth = torch.from_numpy(np.asarray(labels.labels[m])[view.settings["rows"]])
                confidence, correct = calibration.top_label(labels.logit_scale * scores, truth)
                edges = torch.linspace(0, 1, calibration.BINS + 1, dtype=torch.float64)
                index = torch.bucketize(confidence, edges, right=True) - 1
                bins = torch.nn.functional.one_hot(index, calibration.BINS + 1).double()  # (N, bins + 1)
                return true_class_ranks(scores, truth), bins * (correct - confidence)[:, None], bins
            ranks, gaps, _ = view.static(f"zeroshot.{m}", terms)
            for k in TOP_KS:
                if f"zero_shot@{k}.{m}" in paths:
                    out[f"zero_shot@{k}.{m}"] = ((w @ (ranks < k).double()) / n).numpy()
            out[f"ece.{m}"] = ((w @ gaps).abs().sum(1) / n).numpy()
        return out
