"""Comparing two models' predictions on the same images: per-label and macro AUROC differences with
paired bootstrap intervals and DeLong's test. Pure functions on arrays; no I/O.

The difference is always ``auroc_b - auroc_a``: positive when model B is better.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from medclf.errors import ComparisonError
from medclf.metrics.bootstrap import bootstrap_auroc, percentile_interval
from medclf.metrics.delong import delong_test

EXAMPLES = 5


@dataclass
class PredictionTable:
    """One model's predictions: per image, a probability and a truth (NaN: unknown) per label.

    Attributes:
        source: Where the table was read from (for messages).
        images: (N,) image identifiers; an image may appear more than once.
        labels: (L,) label names.
        probs: (N, L) probabilities.
        truth: (N, L) 0/1 truths, NaN where unknown.
        skipped: Rows left out when reading (e.g. unreadable images, which have no probabilities).
    """

    source: str
    images: list[str]
    labels: list[str]
    probs: np.ndarray
    truth: np.ndarray
    skipped: int = 0


@dataclass
class AlignedPredictions:
    """Two models' predictions on the same images in the same order, for their common labels.

    ``truth`` is NaN where either table leaves the truth unknown.
    """

    images: list[str]
    labels: list[str]
    probs_a: np.ndarray
    probs_b: np.ndarray
    truth: np.ndarray
    labels_only_a: list[str] = field(default_factory=list)
    labels_only_b: list[str] = field(default_factory=list)


def _examples(items: Sequence[Any], limit: int = EXAMPLES) -> str:
    shown = ", ".join(str(i) for i in list(items)[:limit])
    return shown + (", ..." if len(items) > limit else "")


def _keys(images: Sequence[str]) -> list[tuple[str, int]]:
    """``(image, occurrence)`` per row, so that an image listed twice pairs with its second listing."""
    seen: Counter[str] = Counter()
    keys = []
    for image in images:
        keys.append((image, seen[image]))
        seen[image] += 1
    return keys


def _row_order(a: PredictionTable, b: PredictionTable) -> np.ndarray:
    """Indices that put B's rows in A's image order; raises when the image sets differ."""
    keys_a, keys_b = _keys(a.images), _keys(b.images)
    where_b = {key: i for i, key in enumerate(keys_b)}
    only_a = [k for k in keys_a if k not in where_b]
    only_b = sorted(set(keys_b) - set(keys_a), key=where_b.__getitem__)
    if only_a or only_b:

        def shown(keys: list[tuple[str, int]]) -> str:
            return _examples([image if n == 0 else f"{image} (listing {n + 1})" for image, n in keys])

        parts = [f"{len(only_a)} image(s) only in A ({a.source})" + (f": {shown(only_a)}" if only_a else "")]
        parts.append(f"{len(only_b)} only in B ({b.source})" + (f": {shown(only_b)}" if only_b else ""))
        raise ComparisonError(
            f"A and B are not predictions on the same images ({len(keys_a)} vs {len(keys_b)} rows): " + "; ".join(parts)
        )
    return np.array([where_b[k] for k in keys_a], dtype=np.int64)


def _common_truth(a: PredictionTable, b: PredictionTable, labels: list[str], rows_b: np.ndarray) -> np.ndarray:
    """Truths known in both tables (NaN elsewhere); raises when a known truth differs."""
    truth_a = a.truth[:, [a.labels.index(n) for n in labels]]
    truth_b = b.truth[rows_b][:, [b.labels.index(n) for n in labels]]
    known = ~np.isnan(truth_a) & ~np.isnan(truth_b)
    conflicts = np.argwhere(known & (truth_a != truth_b))
    if conflicts.size:
        shown = [f"{a.images[i]} / {labels[j]} (A {truth_a[i, j]:g}, B {truth_b[i, j]:g})" for i, j in conflicts]
        raise ComparisonError(
            f"A ({a.source}) and B ({b.source}) disagree on {len(conflicts)} known truth value(s), "
            f"e.g. {_examples(shown, 3)}: they must be predictions on the same labelled data"
        )
    return np.where(known, truth_a, np.nan)


def align_predictions(a: PredictionTable, b: PredictionTable) -> AlignedPredictions:
    """Pair two prediction tables image by image, keeping the labels common to both (in A's order).

    Raises:
        ComparisonError: when the image sets differ (with counts and examples), when no label is common,
            or when a truth known in both tables differs.
    """
    rows_b = _row_order(a, b)
    labels = [n for n in a.labels if n in b.labels]
    only_a = [n for n in a.labels if n not in b.labels]
    only_b = [n for n in b.labels if n not in a.labels]
    if not labels:
        raise ComparisonError(
            f"A ({a.source}) and B ({b.source}) have no label in common: "
            f"A has {_examples(a.labels, 20)}; B has {_examples(b.labels, 20)}"
        )
    return AlignedPredictions(
        images=list(a.images),
        labels=labels,
        probs_a=a.probs[:, [a.labels.index(n) for n in labels]].astype(np.float64),
        probs_b=b.probs[rows_b][:, [b.labels.index(n) for n in labels]].astype(np.float64),
        truth=_common_truth(a, b, labels, rows_b),
        labels_only_a=only_a,
        labels_only_b=only_b,
    )


def bootstrap_p_value(samples: np.ndarray) -> float | None:
    """Two-sided p-value that a difference is 0, from its paired bootstrap samples (NaN ignored).

    ``2 * min(#(d <= 0) + 1, #(d >= 0) + 1) / (B + 1)``, capped at 1: the smallest level at which the
    percentile interval would exclude 0, so the p-value and the reported interval agree. The ``+ 1``
    keeps it above 0 with a finite number of resamples. None without finite samples.
    """
    samples = np.asarray(samples, dtype=np.float64)
    samples = samples[np.isfinite(samples)]
    if samples.size == 0:
        return None
    tail = min(int((samples <= 0).sum()), int((samples >= 0).sum())) + 1
    return min(1.0, 2.0 * tail / (samples.size + 1))


def _none(value: float | None) -> float | None:
    return None if value is None or not math.isfinite(value) else float(value)


def _label_row(scores_a: np.ndarray, scores_b: np.ndarray, truth: np.ndarray) -> dict[str, Any]:
    """Point estimates and DeLong's test of one label on its images of known truth."""
    known = ~np.isnan(truth)
    positives = int((truth[known] == 1).sum())
    row: dict[str, Any] = {"n": int(known.sum()), "positives": positives, "negatives": int(known.sum()) - positives}
    if positives == 0 or row["negatives"] == 0:
        return row | dict.fromkeys(("auroc_a", "auroc_b", "difference", "se_delong", "z_delong", "p_delong"))
    test = delong_test(scores_a[known], scores_b[known], truth[known])
    return row | {
        "auroc_a": test.auroc_a,
        "auroc_b": test.auroc_b,
        "difference": test.difference,
        "se_delong": _none(test.se),
        "z_delong": _none(test.z),
        "p_delong": _none(test.p_value),
    }


def _bootstrap_samples(
    aligned: AlignedPredictions, scores: tuple[np.ndarray, np.ndarray], n: int, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """(n, L) bootstrap AUROCs of A and of B, each resample drawing the same images for both models."""
    n_labels = len(aligned.labels)
    # One call over A's and B's columns side by side: bootstrap_auroc gives every column the same resamples.
    probs = torch.from_numpy(np.concatenate(scores, axis=1)).float()
    targets = torch.from_numpy(np.concatenate([aligned.truth, aligned.truth], axis=1)).float()
    samples = bootstrap_auroc(probs, targets, n_resamples=n, seed=seed).double().numpy()
    return samples[:, :n_labels], samples[:, n_labels:]


def _interval(samples: np.ndarray, level: float) -> tuple[list[float | None], list[float | None]]:
    """Per-column percentile interval; all-None without samples."""
    if samples.shape[0] == 0:
        return [None] * samples.shape[1], [None] * samples.shape[1]
    return percentile_interval(torch.from_numpy(samples), level)


def compare_predictions(
    aligned: AlignedPredictions, n_bootstrap: int = 2000, seed: int = 0, level: float = 0.95
) -> dict[str, Any]:
    """Per-label and macro AUROC of A and B, ``difference = auroc_b - auroc_a``, intervals and p-values.

    Per label only images of known truth take part; a label whose AUROC is undefined (one class) has
    None values and is left out of the macro average. Scores are compared as float32, as model outputs are.

    Args:
        aligned: From :func:`align_predictions`.
        n_bootstrap: Paired bootstrap resamples of the images (0: no intervals, no macro p-value).
        seed: Seed of the bootstrap.
        level: Confidence level of the percentile intervals.

    Returns:
        ``{"difference", "n_images", "labels", "labels_only_a", "labels_only_b", "per_label", "macro",
        "bootstrap"}``: ``per_label`` rows hold ``label, n, positives, negatives, auroc_a, auroc_b,
        difference, ci_low, ci_high, p_delong`` (and ``se_delong``, ``z_delong``, per-model intervals,
        ``p_bootstrap``); ``macro`` holds the same for the mean over defined labels with ``p_bootstrap``.
    """
    scores = tuple(p.astype(np.float32).astype(np.float64) for p in (aligned.probs_a, aligned.probs_b))
    rows = [
        {"label": name, **_label_row(scores[0][:, j], scores[1][:, j], aligned.truth[:, j])}
        for j, name in enumerate(aligned.labels)
    ]
    defined = [j for j, row in enumerate(rows) if row["auroc_a"] is not None]
    boot_a, boot_b = _bootstrap_samples(aligned, scores, n_bootstrap, seed)
    difference = boot_b - boot_a
    intervals = {name: _interval(s, level) for name, s in (("a", boot_a), ("b", boot_b), ("d", difference))}
    for j, row in enumerate(rows):
        defined_here = row["auroc_a"] is not None
        row["ci_low"], row["ci_high"] = (intervals["d"][0][j], intervals["d"][1][j]) if defined_here else (None, None)
        row["auroc_a_ci"] = [intervals["a"][0][j], intervals["a"][1][j]] if defined_here else None
        row["auroc_b_ci"] = [intervals["b"][0][j], intervals["b"][1][j]] if defined_here else None
        row["p_bootstrap"] = bootstrap_p_value(difference[:, j]) if defined_here else None
    return {
        "difference": "auroc_b - auroc_a",
        "n_images": len(aligned.images),
        "labels": list(aligned.labels),
        "labels_only_a": list(aligned.labels_only_a),
        "labels_only_b": list(aligned.labels_only_b),
        "per_label": rows,
        "macro": _macro(rows, defined, boot_a, boot_b, len(aligned.images), level),
        "bootstrap": {"resamples": n_bootstrap, "seed": seed, "level": level, "method": "paired percentile"},
    }


def _macro(
    rows: list[dict[str, Any]], defined: list[int], boot_a: np.ndarray, boot_b: np.ndarray, n_images: int, level: float
) -> dict[str, Any]:
    """The macro row: means over the labels with a defined AUROC, bootstrapped with the same resamples."""
    macro: dict[str, Any] = {"label": "macro", "n": n_images, "labels_used": [rows[j]["label"] for j in defined]}
    keys = ("auroc_a", "auroc_b", "difference", "ci_low", "ci_high", "p_delong", "p_bootstrap")
    if not defined:
        return macro | dict.fromkeys(keys) | {"auroc_a_ci": None, "auroc_b_ci": None}
    macro["auroc_a"] = float(np.mean([rows[j]["auroc_a"] for j in defined]))
    macro["auroc_b"] = float(np.mean([rows[j]["auroc_b"] for j in defined]))
    macro["difference"] = macro["auroc_b"] - macro["auroc_a"]
    # A resample that lacks a class of some label averages over the labels it has (NaN-aware mean).
    means = np.stack([_nan_mean(s[:, defined]) for s in (boot_a, boot_b)], axis=1)
    means = np.column_stack([means, means[:, 1] - means[:, 0]])
    low, high = _interval(means, level)
    macro["auroc_a_ci"], macro["auroc_b_ci"] = [low[0], high[0]], [low[1], high[1]]
    macro["ci_low"], macro["ci_high"] = low[2], high[2]
    macro["p_delong"] = None  # DeLong's test is per label; the macro p-value comes from the bootstrap
    macro["p_bootstrap"] = bootstrap_p_value(means[:, 2])
    return macro


def _nan_mean(samples: np.ndarray) -> np.ndarray:
    """Row means over the finite entries; NaN for a row without any (no warning, unlike ``np.nanmean``)."""
    finite = np.isfinite(samples)
    count = finite.sum(axis=1)
    total = np.where(finite, samples, 0.0).sum(axis=1)
    return np.where(count > 0, total / np.maximum(count, 1), math.nan)
