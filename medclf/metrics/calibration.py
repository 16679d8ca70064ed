"""Temperature scaling per label (Guo et al., 2017) and the calibration scores it is judged by.

A label's calibrated probability is ``sigmoid(logit / T)`` with ``T > 0`` fitted on VALIDATION by
minimising the binary cross-entropy over the labelled images. Dividing by a positive constant keeps the
ranking of the images, so AUROC (and any decision made at a threshold mapped the same way) is unchanged;
only how far the probabilities can be trusted as risks changes. Pure functions; no I/O.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch

from medclf.metrics.curves import check_probs_targets, expected_calibration_error

# 1/T is searched in [_A_MIN, _A_MAX]: a model that separates VALIDATION perfectly would otherwise
# send T to 0 (probabilities of exactly 0 and 1), which no test set deserves.
_A_MIN, _A_MAX = 1e-2, 1e2

#: A label's temperature is fitted only when its labelled images hold at least this many positives and
#: as many negatives; below that one image moves ``T`` a long way, so the label keeps ``T = 1``.
MIN_PER_CLASS = 5
#: Fewer labelled images than this in the calibration set draw a warning (the fit is noisy).
MIN_IMAGES = 50


def fit_temperatures(
    logits: np.ndarray, targets: np.ndarray, max_iter: int = 100, min_per_class: int = MIN_PER_CLASS
) -> list[float]:
    """One temperature per label, minimising the masked binary cross-entropy of ``sigmoid(logit / T)``.

    The loss is convex in ``a = 1/T``, so a safeguarded Newton search finds the minimum. A label with
    fewer than ``min_per_class`` positives or negatives among its labelled images keeps ``T = 1`` (too
    little to fit; see :func:`too_few_to_fit`).

    Args:
        logits: (N, L) raw network outputs.
        targets: (N, L) 1, 0, or NaN where the truth is unknown.
        max_iter: Newton steps per label.
        min_per_class: Positives and negatives a label needs for its temperature to be fitted (at least 1).

    Returns:
        ``L`` temperatures, each in [0.01, 100].
    """
    logits = np.asarray(logits, dtype=np.float64)
    _, truth = check_probs_targets(logits, targets)
    out = []
    for j in range(logits.shape[1]):
        known = ~np.isnan(truth[:, j])
        z, y = logits[known, j], truth[known, j]
        if min(int(np.sum(y == 1)), int(np.sum(y == 0))) < max(min_per_class, 1):
            out.append(1.0)
            continue
        out.append(1.0 / _fit_inverse_temperature(z, y, max_iter))
    return out


def too_few_to_fit(
    targets: np.ndarray, labels: Sequence[str], min_per_class: int = MIN_PER_CLASS
) -> dict[str, tuple[int, int]]:
    """The labels :func:`fit_temperatures` leaves at ``T = 1``, each with its (positives, negatives)."""
    truth = np.asarray(targets, dtype=np.float64)
    positives, negatives = (truth == 1).sum(axis=0), (truth == 0).sum(axis=0)
    return {
        name: (int(positives[j]), int(negatives[j]))
        for j, name in enumerate(labels)
        if min(positives[j], negatives[j]) < max(min_per_class, 1)
    }


def small_set_warnings(targets: np.ndarray, labels: Sequence[str]) -> list[str]:
    """What to warn about a calibration set: fewer than :data:`MIN_IMAGES` labelled images, and the labels
    kept at ``T = 1`` (:func:`too_few_to_fit`) with their counts. Empty when there is nothing to say."""
    truth = np.asarray(targets, dtype=np.float64)
    n_labelled = int((~np.isnan(truth)).any(axis=1).sum())
    out = []
    if n_labelled < MIN_IMAGES:
        out.append(f"{n_labelled} labelled image(s), fewer than {MIN_IMAGES}: the fitted temperatures are uncertain")
    few = too_few_to_fit(truth, labels)
    if few:
        counts = ", ".join(f"{name} ({p} pos / {n} neg)" for name, (p, n) in few.items())
        out.append(
            f"{len(few)} of {len(labels)} label(s) have fewer than {MIN_PER_CLASS} positives or {MIN_PER_CLASS} "
            f"negatives, so their temperature is kept at 1.0 (raw outputs): {counts}"
        )
    return out


def _fit_inverse_temperature(z: np.ndarray, y: np.ndarray, max_iter: int) -> float:
    """Newton's method on ``a`` inside a shrinking bracket [lo, hi] where the gradient changes sign."""
    lo, hi, a = _A_MIN, _A_MAX, 1.0
    for _ in range(max_iter):
        p = _sigmoid(a * z)
        grad = float(np.mean((p - y) * z))
        hess = float(np.mean(p * (1 - p) * z * z))
        newton = grad / hess if hess > 1e-12 else math.inf
        if abs(newton) <= 1e-12 * a or hi - lo <= 1e-12 * hi:
            break
        if grad > 0:
            hi = a
        else:
            lo = a
        step = a - newton
        a = step if lo < step < hi else 0.5 * (lo + hi)
    return float(min(max(a, _A_MIN), _A_MAX))


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * x))  # no overflow warnings for large |x|


def apply_temperatures(logits: np.ndarray, temperatures: Sequence[float]) -> np.ndarray:
    """Calibrated probabilities ``sigmoid(logits / T)`` per label."""
    logits = np.asarray(logits, dtype=np.float64)
    return _sigmoid(logits / np.asarray(temperatures, dtype=np.float64)[None, :])


def reported_probabilities(logits: torch.Tensor, temperatures: Sequence[float] | None) -> np.ndarray:
    """The probabilities medclf reports (float64): ``sigmoid(logit / T)`` with ``temperatures``, otherwise
    exactly the float32 sigmoid the thresholds were chosen on, widened."""
    if temperatures is None:
        return torch.sigmoid(logits.detach().float()).double().cpu().numpy()
    return apply_temperatures(logits.detach().double().cpu().numpy(), temperatures)


def scale_thresholds(thresholds: Sequence[float], temperatures: Sequence[float]) -> list[float]:
    """Thresholds on raw probabilities moved to calibrated ones, so that every call stays the same."""
    out = []
    for t, temp in zip(thresholds, temperatures, strict=True):
        t = min(max(float(t), 1e-12), 1 - 1e-12)
        out.append(float(_sigmoid(np.float64(math.log(t / (1 - t)) / temp))))
    return out


def unscale_thresholds(thresholds: Sequence[float], temperatures: Sequence[float]) -> list[float]:
    """Inverse of :func:`scale_thresholds`: thresholds on calibrated probabilities moved to raw ones."""
    return scale_thresholds(thresholds, [1.0 / t for t in temperatures])


def brier_score(probs_1d: np.ndarray, targets_1d: np.ndarray) -> float | None:
    """Mean squared difference between probability and truth over the labelled images; None if none."""
    probs, truth = check_probs_targets(np.reshape(probs_1d, (-1, 1)), np.reshape(targets_1d, (-1, 1)))
    known = ~np.isnan(truth[:, 0])
    return float(np.mean((probs[known, 0] - truth[known, 0]) ** 2)) if known.any() else None


def calibration_scores(probs: np.ndarray, targets: np.ndarray, labels: Sequence[str], n_bins: int = 10) -> dict:
    """Expected calibration error and Brier score per label and their macro means.

    Returns:
        ``{"ece": {label: value, ..., "macro": value}, "brier": {...}}``; a label without labelled images
        is None and left out of the macro mean.
    """
    probs, truth = check_probs_targets(probs, targets, labels)
    out: dict[str, dict[str, float | None]] = {"ece": {}, "brier": {}}
    for j, name in enumerate(labels):
        out["ece"][name] = expected_calibration_error(probs[:, j], truth[:, j], n_bins)
        out["brier"][name] = brier_score(probs[:, j], truth[:, j])
    for kind, values in out.items():
        defined = [v for v in values.values() if v is not None]
        values["macro"] = float(np.mean(defined)) if defined else None
        out[kind] = values
    return out
