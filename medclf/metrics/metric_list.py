"""The evaluation metrics, each defined once: its key, how it is computed, whether it has a bootstrap
interval, how it is shown and in which tables. Pure; no I/O.

``metrics.json`` and ``metrics.csv`` (rows and column order), the console table
(:func:`medclf.reporting.tables.metrics_table`) and report.html's per-label table
(:mod:`medclf.reporting.evaluation_page`) are all built from :data:`METRICS`, in its order, so a new
metric is one entry here.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch


@dataclass(frozen=True)
class Facts:
    """What one label's metrics (or the pooled ones) are computed from.

    The 2x2 counts are numbers for a point estimate, or (B, L) tensors of bootstrap resamples; ``ratio``
    divides them accordingly (None or NaN for 0/0). The other fields exist only for a point estimate.
    """

    tp: Any
    fp: Any
    tn: Any
    fn: Any
    ratio: Callable[[Any, Any], Any]
    auroc: float | None = None
    average_precision: float | None = None
    positives: int = 0
    negatives: int = 0
    threshold: float = math.nan


@dataclass(frozen=True)
class Metric:
    """One evaluation metric.

    Attributes:
        key: Its key in the ``per_label``/``macro``/``micro`` rows and its metrics.csv column; an
            interval adds ``<key>_ci_low`` and ``<key>_ci_high`` right after it.
        value: Computes it from a :class:`Facts`.
        count: An integer count (shown as is) rather than a number shown with fixed decimals.
        interval: Has a percentile bootstrap interval. AUROC's comes from the resampled rank AUROC; any
            other metric with an interval must be a function of the 2x2 counts alone (its ``value`` is
            then applied to the resampled counts).
        averaged: Has a macro (mean over labels where defined) and a micro (pooled) value.
        page: Column heading in report.html's per-label table (None: not shown there); an interval adds
            `` [95% CI]``.
        console: ``(heading, width)`` of its column in the console table (None: not shown there).
    """

    key: str
    value: Callable[[Facts], Any]
    count: bool = False
    interval: bool = False
    averaged: bool = False
    page: str | None = None
    console: tuple[str, int] | None = None


METRICS: tuple[Metric, ...] = (
    Metric("auroc", lambda f: f.auroc, interval=True, averaged=True, page="AUROC", console=("AUROC", 7)),
    Metric("average_precision", lambda f: f.average_precision, averaged=True, page="AP"),
    Metric("positives", lambda f: f.positives, count=True, page="positives", console=("pos", 6)),
    Metric("negatives", lambda f: f.negatives, count=True, page="negatives", console=("neg", 6)),
    Metric("labelled", lambda f: f.positives + f.negatives, count=True),
    Metric("threshold", lambda f: f.threshold, page="threshold"),
    Metric("tp", lambda f: f.tp, count=True),
    Metric("fp", lambda f: f.fp, count=True),
    Metric("tn", lambda f: f.tn, count=True),
    Metric("fn", lambda f: f.fn, count=True),
    Metric("sensitivity", lambda f: f.ratio(f.tp, f.tp + f.fn), interval=True, averaged=True, page="sensitivity"),
    Metric("specificity", lambda f: f.ratio(f.tn, f.tn + f.fp), interval=True, averaged=True, page="specificity"),
    Metric("ppv", lambda f: f.ratio(f.tp, f.tp + f.fp), interval=True, averaged=True, page="PPV"),
    Metric("npv", lambda f: f.ratio(f.tn, f.tn + f.fn), interval=True, averaged=True, page="NPV"),
    Metric("f1", lambda f: f.ratio(2 * f.tp, 2 * f.tp + f.fp + f.fn), averaged=True, page="F1"),
    Metric("accuracy", lambda f: f.ratio(f.tp + f.tn, f.tp + f.fp + f.tn + f.fn), averaged=True, page="accuracy"),
)
"""Every evaluation metric, in the order of the JSON rows, metrics.csv's columns and the tables."""


def averaged() -> tuple[str, ...]:
    """The metrics of the macro and micro rows."""
    return tuple(m.key for m in METRICS if m.averaged)


def count_intervals() -> tuple[str, ...]:
    """The metrics whose bootstrap interval comes from the resampled 2x2 counts (all but AUROC's)."""
    return tuple(m.key for m in METRICS if m.interval and m.key != "auroc")


def ratio(a: float, b: float) -> float | None:
    """``a / b``; None for 0/0 (a rate with nothing to count)."""
    return a / b if b else None


def _tensor_ratio(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return torch.where(b > 0, a / b.clamp(min=1), torch.full_like(a, math.nan))  # counts: b > 0 means b >= 1


def label_row(facts: Facts) -> dict[str, Any]:
    """Every metric of one label (or the pooled micro row), keyed and ordered as :data:`METRICS`."""
    return {m.key: m.value(facts) for m in METRICS}


def count_samples(confusion: torch.Tensor) -> dict[str, torch.Tensor]:
    """Per-resample values of the metrics of :func:`count_intervals` from (B, 4, L) ``[TP, FP, TN, FN]`` counts.

    Returns:
        ``{key: (B, L) float64 tensor}``, NaN where the metric is 0/0 in a resample.
    """
    tp, fp, tn, fn = confusion.double().unbind(1)
    facts = Facts(tp, fp, tn, fn, _tensor_ratio)
    keys = count_intervals()
    return {m.key: m.value(facts) for m in METRICS if m.key in keys}
