"""Figures of the study commands: AUROC per fold (cross-validation) and AUROC against labelled images
(learning curve). ``matplotlib.figure.Figure`` objects only; nothing here writes files.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from medclf.reporting.figure_text import drawable_text


def _value(row: Mapping[str, Any], key: str) -> float:
    value = row.get(key)
    return np.nan if value is None or value == "" else float(value)


def folds_figure(rows: Sequence[Mapping[str, Any]], labels: Sequence[str]) -> Figure:
    """AUROC per label (and macro) for each fold as points, with the mean over the folds as a bar.

    Args:
        rows: The per-fold table (``fold``, ``macro_auroc``, ``auroc_<label>``), with ``mean`` and ``sd`` rows.
        labels: Label order.
    """
    folds = [r for r in rows if r["fold"] not in ("mean", "sd")]
    keys = ["macro_auroc", *[f"auroc_{name}" for name in labels]]
    names = ["macro", *labels]
    fig = Figure(figsize=(max(6.0, 0.55 * len(names) + 2), 4.2), layout="constrained")
    ax = fig.add_subplot()
    x = np.arange(len(names))
    means = [np.nanmean([_value(r, k) for r in folds]) if any(_value(r, k) == _value(r, k) for r in folds)
             else np.nan for k in keys]  # fmt: skip
    ax.bar(x, np.nan_to_num(means, nan=0.0), color="#c6dbef", label="mean over folds")
    for i, r in enumerate(folds):
        offset = (i - (len(folds) - 1) / 2) * 0.5 / max(len(folds), 1)
        ax.plot(x + offset, [_value(r, k) for k in keys], "o", markersize=4, label=f"fold {r['fold']}")
    ax.axhline(0.5, color="grey", linewidth=0.8, linestyle=":")
    ax.set_xticks(x, [drawable_text(n) for n in names], rotation=45, ha="right")
    ax.set_ylim(0, 1)
    ax.set_ylabel("AUROC on the held-out fold")
    ax.set_title("Cross-validation: AUROC per fold")
    ax.legend(fontsize=7, ncols=2)
    return fig


def learning_curve_figure(rows: Sequence[Mapping[str, Any]], labels: Sequence[str]) -> Figure:
    """Macro AUROC (with its interval) and per-label AUROC against the number of labelled TRAIN images.

    Args:
        rows: One per point: ``train_images``, ``train_patients``, ``macro_auroc``, ``macro_ci_low``,
            ``macro_ci_high``, ``auroc_<label>`` (means over the repeats).
        labels: Label order.
    """
    fig = Figure(figsize=(10, 4.2), layout="constrained")
    macro_ax, label_ax = fig.subplots(1, 2)
    x = np.array([_value(r, "train_images") for r in rows])
    y = np.array([_value(r, "macro_auroc") for r in rows])
    low = np.array([_value(r, "macro_ci_low") for r in rows])
    high = np.array([_value(r, "macro_ci_high") for r in rows])
    macro_ax.plot(x, y, "o-", color="#08519c", label="macro AUROC")
    macro_ax.fill_between(x, low, high, color="#6baed6", alpha=0.3, label="95% interval")
    for xi, yi, r in zip(x, y, rows, strict=True):
        macro_ax.annotate(f"{int(_value(r, 'train_patients'))} pat.", (xi, yi), fontsize=7,
                          textcoords="offset points", xytext=(0, 6), ha="center")  # fmt: skip
    for name in labels:
        label_ax.plot(x, [_value(r, f"auroc_{name}") for r in rows], ".-", linewidth=0.8, label=drawable_text(name))
    for ax, title in ((macro_ax, "Macro AUROC"), (label_ax, "AUROC per label")):
        ax.set_xlabel("labelled TRAIN images")
        ax.set_ylabel(title)
        ax.set_ylim(0, 1)
        ax.axhline(0.5, color="grey", linewidth=0.8, linestyle=":")
        ax.set_title(title + " against the number of labelled images")
    macro_ax.legend(fontsize=8)
    label_ax.legend(fontsize=6, ncols=2)
    return fig
