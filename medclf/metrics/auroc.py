"""Per-epoch metrics on the training device: MONAI AUROC per label, macro mean over defined labels,
torchmetrics accuracy and Youden thresholds. Pure functions; no I/O.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Sequence
from typing import Any

import torch
from monai.metrics import compute_roc_auc
from torchmetrics.functional.classification import binary_accuracy, multilabel_accuracy


def class_totals(targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-label (positives, negatives) of (N, L) 0/1 targets; NaN (unknown) entries count as neither."""
    return (targets == 1).sum(dim=0), (targets == 0).sum(dim=0)


def defined_labels(targets: torch.Tensor) -> torch.Tensor:
    """Boolean (L,) mask of labels with at least one positive and one negative labelled image."""
    positives, negatives = class_totals(targets)
    return (positives > 0) & (negatives > 0)


def roc_auc(probs: torch.Tensor, targets: torch.Tensor) -> list[float | None]:
    """Per-label AUROC with ``monai.metrics.compute_roc_auc``, over the images where the label is known.

    Returns:
        One value per label; ``None`` where the label has only one class among its labelled images.
    """
    mask = defined_labels(targets)
    out: list[float | None] = [None] * targets.shape[1]
    columns = torch.nonzero(mask).flatten().tolist()
    if not columns:
        return out
    known = ~torch.isnan(targets)
    # Fully labelled: one MONAI call over every image; otherwise one per label over its labelled images.
    groups = [(columns, slice(None))] if bool(known.all()) else [([j], known[:, j]) for j in columns]
    for group, rows in groups:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            # float64: MONAI accumulates in the input's precision, and float32 drifts ~1e-8 from sklearn.
            values = compute_roc_auc(probs[rows][:, group].double(), targets[rows][:, group].double(), average="none")
        if not isinstance(values, list | tuple):  # a single column comes back as a float
            values = [values]
        for column, value in zip(group, values, strict=True):
            out[column] = float(value)
    return out


def mean_defined(values: Sequence[float | None]) -> float | None:
    """Mean of the values that are not None/NaN; None when there are none."""
    kept = [v for v in values if v is not None and not math.isnan(v)]
    return sum(kept) / len(kept) if kept else None


def accuracy(probs: torch.Tensor, targets: torch.Tensor, threshold: float = 0.5) -> float | None:
    """Fraction of correct labelled image x label decisions at ``threshold`` (torchmetrics, multilabel)."""
    known = ~torch.isnan(targets)
    if not bool(known.any()):
        return None
    coded = torch.where(known, targets, torch.full_like(targets, -1)).int()  # -1: ignored by torchmetrics
    ignore = None if bool(known.all()) else -1
    if targets.shape[1] == 1:  # torchmetrics' multilabel task needs two labels or more
        return float(binary_accuracy(probs[:, 0], coded[:, 0], threshold=threshold, ignore_index=ignore))
    value = multilabel_accuracy(
        probs, coded, num_labels=targets.shape[1], threshold=threshold, average="micro", ignore_index=ignore
    )
    return float(value)


def classification_metrics(
    probs: torch.Tensor,
    targets: torch.Tensor,
    labels: Sequence[str],
    threshold: float = 0.5,
    auroc: Callable[[torch.Tensor, torch.Tensor], list[float | None]] = roc_auc,
) -> dict[str, Any]:
    """Macro and per-label AUROC (MONAI unless ``auroc`` is given), accuracy (torchmetrics) and label counts.

    Args:
        probs: (N, L) probabilities.
        targets: (N, L) 0/1 targets; NaN where a label is unknown (left out of every metric).
        labels: L label names.
        threshold: Decision threshold for accuracy.
        auroc: The per-label AUROC: MONAI's for the per-epoch value; evaluation passes the rank AUROC
            (:func:`medclf.metrics.bootstrap.label_aurocs`, the same floats).

    Returns:
        ``macro_auroc`` (None if no label is defined), ``labels_averaged``, ``accuracy``, and per label
        ``auroc``, ``positives``, ``negatives`` as ``{label: value}`` dicts.
    """
    if probs.shape != targets.shape or probs.shape[1] != len(labels):
        raise ValueError(
            f"shapes differ: probs {tuple(probs.shape)}, targets {tuple(targets.shape)}, {len(labels)} labels"
        )
    per_label = auroc(probs, targets)
    positives, negatives = (c.long().tolist() for c in class_totals(targets))
    n = targets.shape[0]
    return {
        "n_images": n,
        "macro_auroc": mean_defined(per_label),
        "labels_averaged": sum(v is not None for v in per_label),
        "n_labels": len(labels),
        "accuracy": accuracy(probs, targets, threshold) if n else None,
        "auroc": dict(zip(labels, per_label, strict=True)),
        "positives": dict(zip(labels, positives, strict=True)),
        "negatives": dict(zip(labels, negatives, strict=True)),
        "labelled": {name: p + q for name, p, q in zip(labels, positives, negatives, strict=True)},
    }


def youden_thresholds(probs: torch.Tensor, targets: torch.Tensor, default: float = 0.5) -> list[float]:
    """Per-label threshold maximising Youden's J = sensitivity + specificity - 1.

    An image is called positive when its probability is >= the threshold. Labels without both classes
    get ``default``.
    """
    probs, targets = probs.double(), targets.double()
    n_labels = targets.shape[1]
    if bool(torch.isnan(targets).any()):  # unknown entries: each label over its labelled images
        return [_youden_one(probs[:, j], targets[:, j], default) for j in range(n_labels)]
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


def _youden_one(probs: torch.Tensor, targets: torch.Tensor, default: float) -> float:
    known = ~torch.isnan(targets)
    if not bool(known.any()):
        return default
    return youden_thresholds(probs[known].unsqueeze(1), targets[known].unsqueeze(1), default)[0]
