"""Operating points and the full evaluation summary behind ``validate``'s report. Pure functions."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from medclf.metrics.auroc import classification_metrics, defined_labels, mean_defined
from medclf.metrics.bootstrap import bootstrap_auroc, percentile_interval, rank_auroc
from medclf.metrics.curves import average_precision, confusion_counts


def operating_point(tp: float, fp: float, tn: float, fn: float) -> dict[str, float | None]:
    """Sensitivity, specificity, PPV, NPV, F1 and accuracy of one 2x2 table (None for 0/0)."""

    def ratio(a: float, b: float) -> float | None:
        return a / b if b else None

    return {
        "sensitivity": ratio(tp, tp + fn),
        "specificity": ratio(tn, tn + fp),
        "ppv": ratio(tp, tp + fp),
        "npv": ratio(tn, tn + fn),
        "f1": ratio(2 * tp, 2 * tp + fp + fn),
        "accuracy": ratio(tp + tn, tp + fp + tn + fn),
    }


def evaluation_report(
    probs: torch.Tensor,
    targets: torch.Tensor,
    labels: Sequence[str],
    thresholds: Sequence[float],
    *,
    n_bootstrap: int = 1000,
    seed: int = 0,
    level: float = 0.95,
) -> dict[str, Any]:
    """Everything a results table needs, per label and averaged.

    Per label: AUROC (MONAI) with a percentile bootstrap interval (images resampled, seeded), average
    precision, positives/negatives/labelled images (NaN targets are unknown and left out), and at the
    label's threshold the 2x2 counts, sensitivity, specificity,
    PPV, NPV, F1 and accuracy. ``macro`` averages each quantity over the labels where it is defined (the
    macro AUROC interval is the interval of the per-resample macro mean); ``micro`` pools every
    image x label decision.

    Returns:
        ``classification_metrics`` keys plus ``per_label`` (list of dicts), ``macro``, ``micro`` and
        ``bootstrap`` (settings and the number of usable resamples).
    """
    base = classification_metrics(probs, targets, labels)
    probs_np = probs.detach().double().cpu().numpy()
    targets_np = targets.detach().cpu().numpy()
    counts = confusion_counts(probs_np, targets_np, thresholds)
    low = high = [None] * len(labels)
    macro_low = macro_high = None
    valid = 0
    if n_bootstrap > 0:
        samples = bootstrap_auroc(probs, targets, n_bootstrap, seed)
        defined = defined_labels(targets)
        low, high = percentile_interval(samples, level)
        macro_samples = samples[:, defined].nanmean(dim=1, keepdim=True) if bool(defined.any()) else samples[:, :1]
        (macro_low,), (macro_high,) = percentile_interval(macro_samples, level)
        valid = int((~samples[:, defined].isnan()).all(dim=1).sum())
    per_label = []
    for j, name in enumerate(labels):
        tn, fp, fn, tp = (int(v) for v in counts[j].reshape(-1))
        per_label.append({
            "label": name,
            "auroc": base["auroc"][name],
            "auroc_ci_low": low[j] if base["auroc"][name] is not None else None,
            "auroc_ci_high": high[j] if base["auroc"][name] is not None else None,
            "average_precision": average_precision(probs_np[:, j], targets_np[:, j]),
            "positives": base["positives"][name],
            "negatives": base["negatives"][name],
            "labelled": base["labelled"][name],
            "threshold": float(thresholds[j]),
            "tp": tp, "fp": fp, "tn": tn, "fn": fn,
            **operating_point(tp, fp, tn, fn),
        })  # fmt: skip
    keys = ["auroc", "average_precision", "sensitivity", "specificity", "ppv", "npv", "f1", "accuracy"]
    macro = {k: mean_defined([row[k] for row in per_label]) for k in keys}
    macro.update(auroc_ci_low=macro_low, auroc_ci_high=macro_high)
    micro = micro_average(probs, targets, thresholds)
    bootstrap = {"resamples": n_bootstrap, "usable_resamples": valid, "seed": seed, "level": level,
                 "method": "percentile; images resampled with replacement"}  # fmt: skip
    return {**base, "per_label": per_label, "macro": macro, "micro": micro, "bootstrap": bootstrap}


def micro_average(probs: torch.Tensor, targets: torch.Tensor, thresholds: Sequence[float]) -> dict[str, Any]:
    """AUROC, average precision and the operating point pooled over every labelled image x label entry.

    Pooling mixes labels, so unlike the per-label numbers it depends on how comparable the labels'
    probabilities are (calibrated ones pool better than raw outputs).
    """
    probs_np = probs.detach().double().cpu().numpy()
    targets_np = targets.detach().cpu().numpy()
    pooled = confusion_counts(probs_np, targets_np, thresholds).sum(axis=0)
    known = ~torch.isnan(targets.reshape(-1))
    auroc = float(rank_auroc(probs.reshape(-1, 1)[known], targets.reshape(-1, 1)[known])[0])
    return {
        "auroc": None if math.isnan(auroc) else auroc,
        "average_precision": average_precision(probs_np.reshape(-1), targets_np.reshape(-1)),
        **operating_point(float(pooled[1, 1]), float(pooled[0, 1]), float(pooled[0, 0]), float(pooled[1, 0])),
    }


def most_confident_errors(probs_1d: np.ndarray, targets_1d: np.ndarray, threshold: float, count: int) -> list[int]:
    """Indices of the ``count`` wrong calls made with the most confidence, most confident first.

    A call is wrong when ``prob >= threshold`` disagrees with the target; confidence is how far the
    probability sits from the truth (``|prob - target|``).
    """
    probs = np.asarray(probs_1d, dtype=np.float64)
    targets = np.asarray(targets_1d, dtype=np.float64)
    truth = targets > 0
    wrong = np.flatnonzero(((probs >= threshold) != truth) & ~np.isnan(targets))  # unknown truth: never wrong
    distance = np.abs(probs[wrong] - truth[wrong])
    return [int(i) for i in wrong[np.argsort(-distance, kind="stable")][:count]]
