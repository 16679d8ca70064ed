"""Per-label curves and scores (numpy): ROC, precision-recall, average precision, confusion counts,
calibration bins, normalised confusion, operating points and errors by kind. Pure functions; no I/O.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def _as_1d(probs_1d: np.ndarray, targets_1d: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    scores = np.asarray(probs_1d, dtype=np.float64).reshape(-1)
    truth = np.asarray(targets_1d).reshape(-1)
    if scores.shape != truth.shape:
        raise ValueError(f"scores and targets differ in length: {scores.size} vs {truth.size}")
    if not np.all(np.isfinite(scores)):
        raise ValueError("probabilities must be finite")
    known = ~np.isnan(truth.astype(np.float64))  # unknown (NaN) targets take no part
    return scores[known], (truth[known] > 0).astype(np.float64)


def _cumulative_counts(probs_1d: np.ndarray, targets_1d: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """True and false positives when cutting at each distinct score, highest score first.

    Equal scores form one group: an image is positive when its score is >= the cut, so a run of ties is
    counted all at once (the last position of the run).

    Returns:
        ``(thresholds, tp, fp)``, each of length = number of distinct scores, thresholds descending.
    """
    scores, truth = _as_1d(probs_1d, targets_1d)
    order = np.argsort(-scores, kind="mergesort")
    scores, truth = scores[order], truth[order]
    last_of_run = np.r_[scores[1:] != scores[:-1], True] if scores.size else np.zeros(0, dtype=bool)
    tp = np.cumsum(truth)[last_of_run]
    fp = np.cumsum(1.0 - truth)[last_of_run]
    return scores[last_of_run], tp, fp


def class_counts(targets_1d: np.ndarray) -> tuple[int, int]:
    """``(positives, negatives)`` of one label's 0/1 targets."""
    truth = np.asarray(targets_1d, dtype=np.float64).reshape(-1)
    return int((truth > 0).sum()), int((truth <= 0).sum())  # NaN (unknown) is neither


def roc_curve_points(probs_1d: np.ndarray, targets_1d: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """ROC curve with one point per distinct score, starting at (0, 0).

    Matches ``sklearn.metrics.roc_curve(..., drop_intermediate=False)``.

    Returns:
        ``(fpr, tpr, thresholds)`` with thresholds descending and ``inf`` for the first point; ``None`` when
        the label has no positives or no negatives.
    """
    positives, negatives = class_counts(targets_1d)
    if positives == 0 or negatives == 0:
        return None
    thresholds, tp, fp = _cumulative_counts(probs_1d, targets_1d)
    fpr = np.r_[0.0, fp / negatives]
    tpr = np.r_[0.0, tp / positives]
    return fpr, tpr, np.r_[np.inf, thresholds]


def pr_curve_points(probs_1d: np.ndarray, targets_1d: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """Precision-recall curve with one point per distinct score, starting at recall 0, precision 1.

    Points run from the highest threshold down, i.e. ``sklearn.metrics.precision_recall_curve`` reversed.

    Returns:
        ``(recall, precision, thresholds)`` with ``inf`` as the first threshold; ``None`` when the label has
        no positives.
    """
    positives, _ = class_counts(targets_1d)
    if positives == 0:
        return None
    thresholds, tp, fp = _cumulative_counts(probs_1d, targets_1d)
    recall = np.r_[0.0, tp / positives]
    precision = np.r_[1.0, tp / (tp + fp)]
    return recall, precision, np.r_[np.inf, thresholds]


def average_precision(probs_1d: np.ndarray, targets_1d: np.ndarray) -> float | None:
    """Average precision, sum over thresholds of (R_n - R_{n-1}) P_n, as sklearn defines it.

    Returns:
        The AP, or ``None`` when the label has no positives.
    """
    points = pr_curve_points(probs_1d, targets_1d)
    if points is None:
        return None
    recall, precision, _ = points
    return float(np.sum(np.diff(recall) * precision[1:]))


def decisions(probs: np.ndarray, thresholds: Sequence[float]) -> np.ndarray:
    """The calls: True where ``prob >= threshold`` of the label, compared in float64.

    This is the one comparison behind every count, rate, figure and ``pred_`` column of an evaluation:
    make the calls once, on one scale, and hand them on (the probabilities as given are widened exactly,
    so a float32 threshold that equals a float32 probability calls that image positive).

    Returns:
        (N, L) bool array.
    """
    probs = np.asarray(probs, dtype=np.float64)
    cuts = np.asarray(thresholds, dtype=np.float64).reshape(-1)
    if probs.ndim != 2 or cuts.size != probs.shape[1]:
        raise ValueError(f"{cuts.size} thresholds for probabilities of shape {probs.shape}")
    return probs >= cuts[None, :]


def confusion_from_calls(calls: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """Per-label 2x2 confusion matrices of given calls (see :func:`decisions`).

    Returns:
        (L, 2, 2) int array indexed ``[label, true, predicted]``: ``[[TN, FP], [FN, TP]]``; each label's
        counts sum to its number of labelled images (NaN targets are left out).
    """
    predicted = np.asarray(calls, dtype=bool)
    targets = np.asarray(targets, dtype=np.float64)
    if predicted.shape != targets.shape:
        raise ValueError(f"calls and targets differ in shape: {predicted.shape} vs {targets.shape}")
    known = ~np.isnan(targets)
    truth = known & (targets > 0)
    out = np.empty((targets.shape[1], 2, 2), dtype=np.int64)
    out[:, 0, 0] = np.sum(known & ~truth & ~predicted, axis=0)
    out[:, 0, 1] = np.sum(known & ~truth & predicted, axis=0)
    out[:, 1, 0] = np.sum(truth & ~predicted, axis=0)
    out[:, 1, 1] = np.sum(truth & predicted, axis=0)
    return out


def confusion_counts(probs: np.ndarray, targets: np.ndarray, thresholds: Sequence[float]) -> np.ndarray:
    """Per-label 2x2 confusion matrices at ``thresholds``: :func:`confusion_from_calls` of :func:`decisions`."""
    probs, targets = check_probs_targets(probs, targets)
    return confusion_from_calls(decisions(probs, thresholds), targets)


def calibration_bins(
    probs_1d: np.ndarray, targets_1d: np.ndarray, n_bins: int = 10
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Equal-width reliability bins over [0, 1] (the last bin includes 1.0).

    Returns:
        ``(mean_predicted, fraction_positive, counts)`` per bin; the first two are NaN in empty bins.
    """
    if n_bins < 1:
        raise ValueError(f"n_bins must be >= 1, got {n_bins}")
    scores, truth = _as_1d(probs_1d, targets_1d)
    index = np.clip(np.floor(scores * n_bins).astype(np.int64), 0, n_bins - 1)
    counts = np.bincount(index, minlength=n_bins)
    sum_pred = np.bincount(index, weights=scores, minlength=n_bins)
    sum_true = np.bincount(index, weights=truth, minlength=n_bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_pred = np.where(counts > 0, sum_pred / counts, np.nan)
        frac_pos = np.where(counts > 0, sum_true / counts, np.nan)
    return mean_pred, frac_pos, counts


def expected_calibration_error(probs_1d: np.ndarray, targets_1d: np.ndarray, n_bins: int = 10) -> float | None:
    """ECE: count-weighted mean of |fraction positive - mean predicted| over the bins; ``None`` if empty."""
    mean_pred, frac_pos, counts = calibration_bins(probs_1d, targets_1d, n_bins)
    total = counts.sum()
    if total == 0:
        return None
    used = counts > 0
    return float(np.sum(counts[used] * np.abs(frac_pos[used] - mean_pred[used])) / total)


def check_probs_targets(
    probs: np.ndarray, targets: np.ndarray, labels: Sequence[str] | None = None
) -> tuple[np.ndarray, np.ndarray]:
    probs = np.asarray(probs, dtype=np.float64)
    targets = np.asarray(targets)
    if probs.ndim != 2 or probs.shape != targets.shape:
        raise ValueError(f"probs and targets must be the same (N, L) shape, got {probs.shape} and {targets.shape}")
    if labels is not None and len(labels) != probs.shape[1]:
        raise ValueError(f"{len(labels)} label names for {probs.shape[1]} columns")
    targets = np.asarray(targets, dtype=np.float64)
    return probs, np.where(np.isnan(targets), np.nan, targets > 0)


def normalised_confusion(counts: np.ndarray) -> np.ndarray:
    """2x2 confusion counts divided by their row sums (per true class).

    Args:
        counts: ``(..., 2, 2)`` counts indexed ``[true, predicted]``, as :func:`confusion_counts` gives.

    Returns:
        Float array of the same shape whose rows sum to 1: ``[[specificity, FPR], [FNR, sensitivity]]``;
        a row without images (no negatives or no positives) is NaN.
    """
    counts = np.asarray(counts, dtype=np.float64)
    if counts.shape[-2:] != (2, 2):
        raise ValueError(f"confusion counts must end in (2, 2), got shape {counts.shape}")
    rows = counts.sum(axis=-1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(rows > 0, counts / np.where(rows > 0, rows, 1.0), np.nan)


def operating_point_xy(
    probs_1d: np.ndarray, targets_1d: np.ndarray, threshold: float
) -> tuple[float | None, float | None, float | None, float | None]:
    """Where a threshold sits on the ROC and PR curves (positive when prob >= threshold).

    Returns:
        ``(fpr, tpr, precision, recall)``; each ``None`` when 0/0 (no negatives, no positives, or no
        positive calls). Unknown (NaN) targets are left out.
    """
    scores, truth = _as_1d(probs_1d, targets_1d)
    called = scores >= threshold
    tp = float(np.sum(called & (truth > 0)))
    fp = float(np.sum(called & (truth <= 0)))
    positives, negatives = float(np.sum(truth > 0)), float(np.sum(truth <= 0))
    tpr = tp / positives if positives else None
    fpr = fp / negatives if negatives else None
    precision = tp / (tp + fp) if tp + fp else None
    return fpr, tpr, precision, tpr


def confident_errors_by_kind(
    probs_1d: np.ndarray, targets_1d: np.ndarray, calls_1d: np.ndarray, count: int
) -> tuple[list[int], list[int]]:
    """The most confident false positives and false negatives of one label, separately.

    A false positive is a negative called positive (``calls_1d``, see :func:`decisions`), ranked by
    highest probability; a false negative a positive called negative, ranked by lowest probability. Ties
    keep index order; unknown (NaN) targets are never errors.

    Returns:
        ``(false_positives, false_negatives)``: up to ``count`` row indices each, most confident first.
    """
    probs = np.asarray(probs_1d, dtype=np.float64).reshape(-1)
    targets = np.asarray(targets_1d, dtype=np.float64).reshape(-1)
    called = np.asarray(calls_1d, dtype=bool).reshape(-1)
    if not probs.shape == targets.shape == called.shape:
        raise ValueError(f"probs, targets and calls differ in length: {probs.size}, {targets.size}, {called.size}")
    known = ~np.isnan(targets)
    false_pos = np.flatnonzero(known & (targets <= 0) & called)
    false_neg = np.flatnonzero(known & (targets > 0) & ~called)
    fp_order = false_pos[np.argsort(-probs[false_pos], kind="stable")]
    fn_order = false_neg[np.argsort(probs[false_neg], kind="stable")]
    return [int(i) for i in fp_order[: max(count, 0)]], [int(i) for i in fn_order[: max(count, 0)]]
