"""Classification metrics as pure functions of probabilities and 0/1 targets.

Torch functions work on (N, L) tensors on any device (the per-epoch metrics, computed on the training
device); numpy functions give per-label curves, confusion counts and calibration bins for reports and
figures.

No I/O here. Inputs are (N, L) tensors on any device; results are plain Python values. A label whose
split has no positive (or no negative) image has no AUROC: it is reported as ``None`` and left out of the
macro mean, never turned into a NaN macro.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from monai.metrics import compute_roc_auc
from torchmetrics.functional.classification import binary_accuracy, multilabel_accuracy


def defined_labels(targets: torch.Tensor) -> torch.Tensor:
    """Boolean (L,) mask of labels with at least one positive and one negative image."""
    positives = targets.sum(dim=0)
    return (positives > 0) & (positives < targets.shape[0])


def roc_auc(probs: torch.Tensor, targets: torch.Tensor) -> list[float | None]:
    """Per-label AUROC with ``monai.metrics.compute_roc_auc``, on the tensors' device.

    Returns:
        One value per label; ``None`` where the label has only one class in ``targets``.
    """
    mask = defined_labels(targets)
    out: list[float | None] = [None] * targets.shape[1]
    columns = torch.nonzero(mask).flatten().tolist()
    if not columns:
        return out
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        # float64: MONAI accumulates in the input's precision, and float32 drifts ~1e-8 from sklearn.
        values = compute_roc_auc(probs[:, columns].double(), targets[:, columns].double(), average="none")
    if not isinstance(values, list | tuple):  # a single column comes back as a float
        values = [values]
    for column, value in zip(columns, values, strict=True):
        out[column] = float(value)
    return out


def mean_defined(values: Sequence[float | None]) -> float | None:
    """Mean of the values that are not None/NaN; None when there are none."""
    kept = [v for v in values if v is not None and not math.isnan(v)]
    return sum(kept) / len(kept) if kept else None


def accuracy(probs: torch.Tensor, targets: torch.Tensor, threshold: float = 0.5) -> float:
    """Fraction of correct image x label decisions at ``threshold`` (torchmetrics, multilabel)."""
    if targets.shape[1] == 1:  # torchmetrics' multilabel task needs two labels or more
        return float(binary_accuracy(probs[:, 0], targets[:, 0].int(), threshold=threshold))
    value = multilabel_accuracy(probs, targets.int(), num_labels=targets.shape[1], threshold=threshold, average="micro")
    return float(value)


def classification_metrics(
    probs: torch.Tensor, targets: torch.Tensor, labels: Sequence[str], threshold: float = 0.5
) -> dict[str, Any]:
    """Macro and per-label AUROC (MONAI), accuracy (torchmetrics) and label counts.

    Args:
        probs: (N, L) probabilities.
        targets: (N, L) 0/1 targets.
        labels: L label names.
        threshold: Decision threshold for accuracy.

    Returns:
        ``macro_auroc`` (None if no label is defined), ``labels_averaged``, ``accuracy``, and per label
        ``auroc``, ``positives``, ``negatives`` as ``{label: value}`` dicts.
    """
    if probs.shape != targets.shape or probs.shape[1] != len(labels):
        raise ValueError(
            f"shapes differ: probs {tuple(probs.shape)}, targets {tuple(targets.shape)}, {len(labels)} labels"
        )
    per_label = roc_auc(probs, targets)
    positives = targets.sum(dim=0).long().tolist()
    n = targets.shape[0]
    return {
        "n_images": n,
        "macro_auroc": mean_defined(per_label),
        "labels_averaged": sum(v is not None for v in per_label),
        "n_labels": len(labels),
        "accuracy": accuracy(probs, targets, threshold) if n else None,
        "auroc": dict(zip(labels, per_label, strict=True)),
        "positives": dict(zip(labels, positives, strict=True)),
        "negatives": {name: n - p for name, p in zip(labels, positives, strict=True)},
    }


def youden_thresholds(probs: torch.Tensor, targets: torch.Tensor, default: float = 0.5) -> list[float]:
    """Per-label threshold maximising Youden's J = sensitivity + specificity - 1.

    An image is called positive when its probability is >= the threshold. Labels without both classes
    get ``default``.
    """
    probs, targets = probs.double(), targets.double()
    n_labels = targets.shape[1]
    values, order = probs.sort(dim=0, descending=True)
    hits = targets.gather(0, order)
    tp = hits.cumsum(0)
    fp = (1 - hits).cumsum(0)
    pos, neg = tp[-1], fp[-1]
    j = tp / pos.clamp(min=1) - fp / neg.clamp(min=1)
    # Only the last position of a run of equal probabilities is a reachable cut.
    last_of_run = torch.ones_like(values, dtype=torch.bool)
    last_of_run[:-1] = values[:-1] != values[1:]
    j = torch.where(last_of_run, j, torch.full_like(j, -math.inf))
    best = j.argmax(dim=0)
    chosen = values.gather(0, best.unsqueeze(0)).squeeze(0)
    defined = defined_labels(targets)
    return [float(chosen[i]) if defined[i] else default for i in range(n_labels)]


# ---------------------------------------------------------------------------------------------------------
# Curves and scores per label (numpy): ROC, precision-recall, confusion counts, calibration


def _as_1d(probs_1d: np.ndarray, targets_1d: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    scores = np.asarray(probs_1d, dtype=np.float64).reshape(-1)
    truth = np.asarray(targets_1d).reshape(-1)
    if scores.shape != truth.shape:
        raise ValueError(f"scores and targets differ in length: {scores.size} vs {truth.size}")
    if not np.all(np.isfinite(scores)):
        raise ValueError("probabilities must be finite")
    return scores, (truth > 0).astype(np.float64)


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
    truth = np.asarray(targets_1d).reshape(-1) > 0
    positives = int(truth.sum())
    return positives, int(truth.size - positives)


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


def curve_auroc(probs_1d: np.ndarray, targets_1d: np.ndarray) -> float | None:
    """Area under the tie-grouped ROC curve (trapezoids); ``None`` without both classes."""
    points = roc_curve_points(probs_1d, targets_1d)
    if points is None:
        return None
    fpr, tpr, _ = points
    return float(np.sum(np.diff(fpr) * (tpr[1:] + tpr[:-1]) / 2.0))


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


def confusion_counts(probs: np.ndarray, targets: np.ndarray, thresholds: Sequence[float]) -> np.ndarray:
    """Per-label 2x2 confusion matrices; an image is predicted positive when prob >= threshold.

    Returns:
        (L, 2, 2) int array indexed ``[label, true, predicted]``: ``[[TN, FP], [FN, TP]]``; each label's
        counts sum to N.
    """
    probs, targets = check_probs_targets(probs, targets)
    cuts = np.asarray(thresholds, dtype=np.float64).reshape(-1)
    if cuts.size != probs.shape[1]:
        raise ValueError(f"{cuts.size} thresholds for {probs.shape[1]} labels")
    predicted = probs >= cuts[None, :]
    truth = targets > 0
    out = np.empty((probs.shape[1], 2, 2), dtype=np.int64)
    out[:, 0, 0] = np.sum(~truth & ~predicted, axis=0)
    out[:, 0, 1] = np.sum(~truth & predicted, axis=0)
    out[:, 1, 0] = np.sum(truth & ~predicted, axis=0)
    out[:, 1, 1] = np.sum(truth & predicted, axis=0)
    return out


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
    return probs, (targets > 0).astype(np.int64)


# ---------------------------------------------------------------------------------------------------------
# Rank-based AUROC for many labels and resamples at once (torch, any device)


def _sorted_scores(probs: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Sort each label's images by score with one integer sort, ties negatives-first.

    Each (score, target, image) is packed into one int64 key: the float32 score's order-preserving
    integer, then the target bit, then the image index. Sorting the keys (numpy's vectorised sort on the
    CPU, torch on a GPU) replaces an argsort and two gathers.

    Returns:
        ``values`` (L, N) int64 order-preserving score codes, ``targets`` (L, N) 0/1 int64 and ``order``
        (L, N) image indices, all in ascending score order.
    """
    n = probs.shape[0]
    index_bits = max(1, (n - 1).bit_length())
    if index_bits > 30:
        raise ValueError(f"too many images for one sort key: {n}")
    bits = probs.detach().float().t().contiguous().view(torch.int32).to(torch.int64)
    codes = torch.where(bits >= 0, bits, -(bits & 0x7FFFFFFF)) + (1 << 31)  # IEEE order -> 0 .. 2**32
    keys = (codes << (index_bits + 1)) | (targets.detach().t().to(torch.int64) << index_bits)
    keys = keys | torch.arange(n, device=probs.device)
    on_cpu = keys.device.type == "cpu"  # numpy's AVX-512 sort is several times faster than torch's there
    keys = torch.from_numpy(np.sort(keys.numpy(), axis=1)) if on_cpu else keys.sort(dim=1).values
    return keys >> (index_bits + 1), (keys >> index_bits) & 1, keys & ((1 << index_bits) - 1)


def _tie_runs(sorted_rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Runs of equal values in rows sorted ascending.

    Returns:
        ``run`` (L, N): the run id of each position; ``first`` and ``last`` (n_runs,): the run's first
        and last index within its row.
    """
    n = sorted_rows.shape[1]
    flat = sorted_rows.reshape(-1)
    starts = torch.ones_like(flat, dtype=torch.bool)
    starts[1:] = flat[1:] != flat[:-1]
    starts[::n] = True  # every row starts a run
    run = (starts.to(torch.int32).cumsum(0) - 1).view_as(sorted_rows)
    begin = torch.nonzero(starts).squeeze(1)
    end = torch.cat([begin[1:], begin.new_tensor([flat.numel()])]) - 1
    row_start = begin - begin % n
    return run, begin - row_start, end - row_start


def _weighted_auroc(
    sorted_targets: torch.Tensor, first: torch.Tensor, last: torch.Tensor, weights: torch.Tensor
) -> torch.Tensor:
    """Mann-Whitney AUROC with ties counted half, for images weighted by ``weights`` (..., L, N).

    ``sorted_targets``, ``first`` and ``last`` are (L, N) in ascending score order; leading dimensions of
    ``weights`` are resamples. Returns (..., L), NaN where a label lacks positives or negatives.
    """
    positive = weights * sorted_targets
    negative = weights - positive
    zero = torch.zeros_like(negative.narrow(-1, 0, 1))
    negatives_up_to = torch.cat([zero, negative.cumsum(dim=-1)], dim=-1)  # [i] = negatives before i
    shape = (*weights.shape[:-2], *first.shape)
    below = negatives_up_to.gather(-1, first.expand(shape))
    tied = negatives_up_to.gather(-1, (last + 1).expand(shape)) - below
    pairs = positive.sum(dim=-1) * negative.sum(dim=-1)
    wins = (positive * (below + 0.5 * tied)).sum(dim=-1)
    return torch.where(pairs > 0, wins / pairs, torch.full_like(pairs, math.nan))


def rank_auroc(probs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Per-label AUROC of (N, L) inputs in one vectorised pass; NaN where undefined.

    The Mann-Whitney statistic with ties counted half, equal to ``monai.metrics.compute_roc_auc`` and
    ``sklearn.metrics.roc_auc_score`` (scores are compared as float32, as model outputs are) without
    their per-label loops. Within a run of equal scores negatives sort first, so a positive's count of
    negatives at or below it overcounts by half the run's negatives; that correction is computed only
    over the (usually few) tied positions.
    """
    n = probs.shape[0]
    values, hits, _ = _sorted_scores(probs, targets)
    negatives_so_far = (1 - hits).cumsum(dim=1)
    wins = (negatives_so_far * hits).sum(dim=1).double()
    tied = torch.zeros_like(values, dtype=torch.bool)
    tied[:, 1:] = values[:, 1:] == values[:, :-1]
    tied[:, :-1] |= tied[:, 1:].clone()
    if bool(tied.any()):
        where = torch.nonzero(tied.reshape(-1)).squeeze(1)
        flat = values.reshape(-1)[where]
        new_run = torch.ones_like(where, dtype=torch.bool)
        new_run[1:] = (where[1:] != where[:-1] + 1) | (flat[1:] != flat[:-1]) | (where[1:] % n == 0)
        run = new_run.cumsum(0) - 1
        positives = torch.zeros(int(run[-1]) + 1, dtype=torch.float64, device=values.device)
        positives.index_add_(0, run, hits.reshape(-1)[where].double())
        lengths = torch.bincount(run).double()
        row = (where[new_run] // n).to(torch.int64)
        pairs = positives * (lengths - positives)
        wins.index_add_(0, row, -0.5 * pairs)
    positives = hits.sum(dim=1).double()
    pairs = positives * (n - positives)
    return torch.where(pairs > 0, wins / pairs, torch.full_like(wins, math.nan))


def bootstrap_auroc(
    probs: torch.Tensor,
    targets: torch.Tensor,
    n_resamples: int = 1000,
    seed: int = 0,
    max_elements: int = 1 << 24,
) -> torch.Tensor:
    """AUROC of every label on ``n_resamples`` bootstrap resamples of the images.

    Images are sorted once; a resample is a vector of counts (how often each image was drawn), so every
    resample's AUROC is a weighted rank statistic over the same order. Resamples are processed in chunks
    of about ``max_elements`` weights on the inputs' device.

    Returns:
        (n_resamples, L) float tensor, NaN where a resample has no positive or no negative of a label.
    """
    n, n_labels = probs.shape
    device = probs.device
    values, hits, order = _sorted_scores(probs, targets)
    sorted_targets = hits.float()
    run, first, last = _tie_runs(values)
    first, last = first[run], last[run]
    generator = torch.Generator(device=device)
    generator.manual_seed(seed)
    chunk = max(1, max_elements // max(1, n * n_labels))
    out = []
    for start in range(0, n_resamples, chunk):
        size = min(chunk, n_resamples - start)
        draws = torch.randint(0, n, (size, n), generator=generator, device=device)
        counts = torch.zeros(size, n, device=device).scatter_add_(1, draws, torch.ones(size, n, device=device))
        out.append(_weighted_auroc(sorted_targets, first, last, counts[:, order]))
    return torch.cat(out) if out else torch.empty(0, n_labels, device=device)


def percentile_interval(samples: torch.Tensor, level: float = 0.95) -> tuple[list[float | None], list[float | None]]:
    """Per-column percentile interval of bootstrap samples (NaN samples ignored; None if all are NaN)."""
    alpha = (1 - level) / 2
    quantiles = torch.nanquantile(samples.double(), torch.tensor([alpha, 1 - alpha], dtype=torch.float64,
                                  device=samples.device), dim=0)  # fmt: skip
    low, high = quantiles.cpu().tolist()
    clean = [[None if math.isnan(v) else v for v in row] for row in (low, high)]
    return clean[0], clean[1]


# ---------------------------------------------------------------------------------------------------------
# Operating points and the full evaluation report


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
    precision, positives/negatives, and at the label's threshold the 2x2 counts, sensitivity, specificity,
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
            "threshold": float(thresholds[j]),
            "tp": tp, "fp": fp, "tn": tn, "fn": fn,
            **operating_point(tp, fp, tn, fn),
        })  # fmt: skip
    keys = ["auroc", "average_precision", "sensitivity", "specificity", "ppv", "npv", "f1", "accuracy"]
    macro = {k: mean_defined([row[k] for row in per_label]) for k in keys}
    macro.update(auroc_ci_low=macro_low, auroc_ci_high=macro_high)
    pooled = counts.sum(axis=0)
    micro_auroc = float(rank_auroc(probs.reshape(-1, 1), targets.reshape(-1, 1))[0])
    micro = {
        "auroc": None if math.isnan(micro_auroc) else micro_auroc,
        "average_precision": average_precision(probs_np.reshape(-1), targets_np.reshape(-1)),
        **operating_point(float(pooled[1, 1]), float(pooled[0, 1]), float(pooled[0, 0]), float(pooled[1, 0])),
    }
    bootstrap = {"resamples": n_bootstrap, "usable_resamples": valid, "seed": seed, "level": level,
                 "method": "percentile; images resampled with replacement"}  # fmt: skip
    return {**base, "per_label": per_label, "macro": macro, "micro": micro, "bootstrap": bootstrap}


def most_confident_errors(probs_1d: np.ndarray, targets_1d: np.ndarray, threshold: float, count: int) -> list[int]:
    """Indices of the ``count`` wrong calls made with the most confidence, most confident first.

    A call is wrong when ``prob >= threshold`` disagrees with the target; confidence is how far the
    probability sits from the truth (``|prob - target|``).
    """
    probs = np.asarray(probs_1d, dtype=np.float64)
    truth = np.asarray(targets_1d) > 0
    wrong = np.flatnonzero((probs >= threshold) != truth)
    distance = np.abs(probs[wrong] - truth[wrong])
    return [int(i) for i in wrong[np.argsort(-distance, kind="stable")][:count]]
