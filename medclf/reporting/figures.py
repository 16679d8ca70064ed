"""Evaluation figures built as matplotlib ``Figure`` objects; nothing here writes files.

Figures use ``matplotlib.figure.Figure`` with an Agg canvas, never ``pyplot``: no global state, safe
headless and in worker threads, and accepted by TensorBoard's ``add_figure``. Inputs are numpy arrays:
``probs`` (N, L) in [0, 1], ``targets`` (N, L) 0/1 and ``labels`` (L names). Per-label figures use a grid
of 3.2-inch panels, 4 per row, with fonts of at least 9 pt, so 14 labels read without zooming. A label
without positives (or negatives) still gets its panel, with a note saying why its curve is undefined.
The calibration figure is in :mod:`medclf.reporting.figures_calibration`, the most-confident-errors
figure in :mod:`medclf.reporting.figures_errors`.
"""

from __future__ import annotations

import io
import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from medclf.metrics.bootstrap import auroc_1d
from medclf.metrics.curves import (
    average_precision,
    check_probs_targets,
    class_counts,
    normalised_confusion,
    operating_point_xy,
    pr_curve_points,
    roc_curve_points,
)

PANEL_INCHES = 3.2
COLUMNS = 4
FONT = 9
TITLE_FONT = 10
_POINT_NOTE = " (red dot: operating point at the label's threshold t)"


# ---------------------------------------------------------------------------------------------------------
# Figures


def figure_png(fig: Figure, dpi: int = 110) -> bytes:
    """Render a figure to PNG bytes in memory."""
    if not isinstance(fig.canvas, FigureCanvasAgg):
        FigureCanvasAgg(fig)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi, bbox_inches="tight")
    return buffer.getvalue()


def roc_figure(
    probs: np.ndarray,
    targets: np.ndarray,
    labels: Sequence[str],
    thresholds: Sequence[float] | None = None,
    intervals: Sequence[tuple[float | None, float | None]] | None = None,
    shown_thresholds: Sequence[float] | None = None,
) -> Figure:
    """Per-label ROC curves with AUROC in the legend and the chance diagonal.

    Args:
        probs, targets, labels: As in the module docstring.
        thresholds: Per-label operating thresholds on the scale of ``probs``; each label's point (FPR, TPR)
            is marked, labelled with its threshold, and its coordinates are added to the panel title.
        intervals: Per-label AUROC interval ``(low, high)`` written after the AUROC (None parts: omitted).
        shown_thresholds: The threshold values written on the plot (default ``thresholds``), e.g. the
            calibrated ones when the curves are drawn on the raw outputs.
    """
    cuts, shown = _thresholds(thresholds, shown_thresholds, labels)
    bounds = _per_label(intervals, labels, "intervals")

    def draw(ax: Axes, j: int, p: np.ndarray, t: np.ndarray, positives: int, negatives: int) -> str | None:
        ax.plot([0, 1], [0, 1], linestyle="--", color="0.6", linewidth=1, label="chance")
        points = roc_curve_points(p, t)
        if points is None:
            return None
        fpr, tpr, _ = points
        text = f"AUROC {auroc_1d(p, t):.3f}" + (_interval_text(*bounds[j]) if bounds else "")
        ax.plot(fpr, tpr, color="C0", linewidth=1.8, label=text)
        if cuts is None:
            return ""
        x, y, _, _ = operating_point_xy(p, t, cuts[j])
        return _mark(ax, x, y, shown[j], f"TPR {y:.2f}, FPR {x:.2f}" if x is not None and y is not None else "")

    axis_names = ("false positive rate", "true positive rate")
    title = "ROC curves" + (_POINT_NOTE if cuts is not None else "")
    return _curve_panels(probs, targets, labels, title, axis_names, draw, legend=("lower right", True))


def pr_figure(
    probs: np.ndarray,
    targets: np.ndarray,
    labels: Sequence[str],
    thresholds: Sequence[float] | None = None,
    shown_thresholds: Sequence[float] | None = None,
) -> Figure:
    """Per-label precision-recall curves with average precision in the legend and a prevalence line.

    ``thresholds`` (on the scale of ``probs``) mark each label's operating point (recall, precision),
    labelled with ``shown_thresholds`` (default ``thresholds``), as in :func:`roc_figure`.
    """
    cuts, shown = _thresholds(thresholds, shown_thresholds, labels)

    def draw(ax: Axes, j: int, p: np.ndarray, t: np.ndarray, positives: int, negatives: int) -> str | None:
        points = pr_curve_points(p, t)
        if points is None:
            return None
        recall, precision, _ = points
        ap = average_precision(p, t)
        ax.plot(recall, precision, color="C1", linewidth=1.8, drawstyle="steps-pre", label=f"AP {ap:.3f}")
        prevalence = positives / (positives + negatives)
        ax.axhline(prevalence, linestyle="--", color="0.6", linewidth=1, label=f"prevalence {prevalence:.3f}")
        if negatives == 0:
            _note(ax, "no negatives:\nprecision is always 1")
        if cuts is None:
            return ""
        _, _, y, x = operating_point_xy(p, t, cuts[j])
        return _mark(ax, x, y, shown[j], "no positive calls" if y is None else f"recall {x:.2f}, precision {y:.2f}")

    axis_names = ("recall", "precision")
    title = "Precision-recall curves" + (_POINT_NOTE if cuts is not None else "")
    return _curve_panels(probs, targets, labels, title, axis_names, draw, legend=("best", False))


def _curve_panels(
    probs: np.ndarray,
    targets: np.ndarray,
    labels: Sequence[str],
    title: str,
    axis_names: tuple[str, str],
    draw: Callable[[Axes, int, np.ndarray, np.ndarray, int, int], str | None],
    legend: tuple[str, bool],
) -> Figure:
    """One panel per label; ``draw`` plots label ``j``'s curve and returns a line to add to the panel
    title ("" for none), or None when the curve is undefined.

    ``legend`` is (location, whether to show it on panels whose curve is undefined).
    """
    probs, targets = check_probs_targets(probs, targets, labels)
    fig, axes = _panel_grid(len(labels), title)
    for j, (ax, name) in enumerate(zip(axes, labels, strict=True)):
        positives, negatives = class_counts(targets[:, j])
        extra = draw(ax, j, probs[:, j], targets[:, j], positives, negatives)
        defined = extra is not None
        if not defined:
            _note(ax, _undefined(positives, negatives))
        title_text = _panel_title(name, positives, negatives) + (f"\n{extra}" if extra else "")
        _style_unit_axes(ax, title_text, *axis_names)
        if defined or legend[1]:
            ax.legend(loc=legend[0], fontsize=FONT, frameon=True)
    return fig


def _thresholds(
    thresholds: Sequence[float] | None, shown: Sequence[float] | None, labels: Sequence[str]
) -> tuple[list[float] | None, list[float] | None]:
    """Checked per-label thresholds and the values to write for them (default: the thresholds)."""
    cuts = _per_label(thresholds, labels, "thresholds")
    written = _per_label(shown, labels, "shown_thresholds")
    return cuts, written if written is not None else cuts


def _per_label(values: Sequence[Any] | None, labels: Sequence[str], what: str) -> list[Any] | None:
    if values is None:
        return None
    if len(values) != len(labels):
        raise ValueError(f"{len(values)} {what} for {len(labels)} labels")
    return list(values)


def _interval_text(low: float | None, high: float | None) -> str:
    return "" if low is None or high is None else f" [{low:.3f}, {high:.3f}]"


def _mark(ax: Axes, x: float | None, y: float | None, threshold: float, detail: str) -> str:
    """Mark the operating point with a red dot labelled with its threshold; return the title line
    ``"at t <threshold>: <detail>"`` (``detail``: its coordinates, or why it is undefined)."""
    line = f"at t {threshold:.3f}: {detail or 'undefined'}"
    if x is None or y is None:
        return line
    ax.plot(x, y, marker="o", markersize=7, color="C3", markeredgecolor="white", linestyle="none", zorder=6)
    right = x > 0.6
    offset = (-8 if right else 8, -12 if y > 0.2 else 8)
    box = {"boxstyle": "round,pad=0.15", "facecolor": "white", "edgecolor": "none", "alpha": 0.8}
    ax.annotate(f"t {threshold:.3f}", (x, y), xytext=offset, textcoords="offset points",
                ha="right" if right else "left", fontsize=FONT, color="C3", bbox=box)  # fmt: skip
    return line


def confusion_figure(counts: np.ndarray, labels: Sequence[str], thresholds: Sequence[float]) -> Figure:
    """Per-label 2x2 confusion matrices of given counts (:func:`medclf.metrics.curves.confusion_from_calls`),
    each titled with the label's threshold.

    Rows are normalised per true class and coloured by that fraction, so the diagonal reads specificity
    (top left) and sensitivity (bottom right); each cell also shows its count. A class without images
    has an empty (grey) row.
    """
    from matplotlib import colormaps

    counts = np.asarray(counts, dtype=np.int64)
    if counts.shape != (len(labels), 2, 2):
        raise ValueError(f"confusion counts of shape {counts.shape} for {len(labels)} labels")
    shares = normalised_confusion(counts)
    cmap = colormaps["Blues"].with_extremes(bad="0.9")
    names = (("specificity", "FPR"), ("FNR", "sensitivity"))
    title = "Confusion matrices: rows normalised per true class (prediction positive when prob >= threshold)"
    fig, axes = _panel_grid(len(labels), title)
    for j, (ax, name) in enumerate(zip(axes, labels, strict=True)):
        ax.imshow(np.ma.masked_invalid(shares[j]), cmap=cmap, vmin=0.0, vmax=1.0)
        for t in range(2):
            for p in range(2):
                share = shares[j, t, p]
                value = "n/a" if np.isnan(share) else f"{share:.2f}"
                ax.text(p, t, f"{names[t][p]}\n{value}\n({counts[j, t, p]})", ha="center", va="center",
                        fontsize=FONT, color="white" if share > 0.55 else "black")  # fmt: skip
        ax.set_xticks([0, 1], ["neg", "pos"], fontsize=FONT)
        ax.set_yticks([0, 1], ["neg", "pos"], fontsize=FONT)
        ax.set_xlabel("predicted", fontsize=FONT)
        ax.set_ylabel("true", fontsize=FONT)
        positives, negatives = int(counts[j, 1].sum()), int(counts[j, 0].sum())
        ax.set_title(f"{_panel_title(name, positives, negatives)}\nthreshold {float(thresholds[j]):.3f}",
                     fontsize=TITLE_FONT)  # fmt: skip
    return fig


def _show_image(ax: Axes, image: np.ndarray, caption: str) -> None:
    """A grayscale (H, W) or (H, W, 1) image in [0, 1] without ticks, ``caption`` under it."""
    pixels = np.asarray(image, dtype=np.float64)
    if pixels.ndim == 3 and pixels.shape[-1] == 1:
        pixels = pixels[..., 0]
    if pixels.ndim != 2:
        raise ValueError(f"images must be (H, W) arrays, got shape {pixels.shape}")
    ax.imshow(pixels, cmap="gray", vmin=0.0, vmax=1.0, interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_xlabel(str(caption), fontsize=FONT, linespacing=1.3)


# ---------------------------------------------------------------------------------------------------------
# Layout helpers


def _new_figure(size: tuple[float, float]) -> Figure:
    fig = Figure(figsize=size, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _panel_grid(n_panels: int, title: str, extra_height: float = 0.0) -> tuple[Figure, list[Axes]]:
    """Figure with ``n_panels`` square-ish panels, up to COLUMNS per row; unused cells are removed."""
    n_panels = max(n_panels, 1)
    columns = min(COLUMNS, n_panels)
    rows = math.ceil(n_panels / columns)
    size = (PANEL_INCHES * columns, (PANEL_INCHES + extra_height) * rows + 0.4)
    fig = _new_figure(size)
    grid = fig.subplots(rows, columns, squeeze=False)
    axes = list(grid.flat)
    for ax in axes[n_panels:]:
        fig.delaxes(ax)
    fig.suptitle(title, fontsize=TITLE_FONT + 2)
    return fig, axes[:n_panels]


def _style_unit_axes(ax: Axes, title: str, xlabel: str, ylabel: str) -> None:
    ax.set_xlim(-0.01, 1.01)
    ax.set_ylim(-0.01, 1.01)
    ax.set_box_aspect(1)  # square panels; unlike set_aspect, also works with a twin axis
    ax.set_title(title, fontsize=TITLE_FONT)
    ax.set_xlabel(xlabel, fontsize=FONT)
    ax.set_ylabel(ylabel, fontsize=FONT)
    ax.tick_params(labelsize=FONT)
    ax.grid(alpha=0.3)


def _panel_title(name: str, positives: int, negatives: int) -> str:
    return f"{name}\n{positives} pos / {negatives} neg"


def _undefined(positives: int, negatives: int) -> str:
    if positives == 0 and negatives == 0:
        return "undefined: no images"
    return "undefined: no positives" if positives == 0 else "undefined: no negatives"


def _note(ax: Axes, text: str) -> None:
    ax.text(
        0.5,
        0.5,
        text,
        transform=ax.transAxes,
        ha="center",
        va="center",
        fontsize=TITLE_FONT,
        color="darkred",
        bbox={"boxstyle": "round", "facecolor": "white", "edgecolor": "darkred", "alpha": 0.9},
    )


def overlay_figure(image: np.ndarray, heatmap: np.ndarray, title: str, alpha: float = 0.45) -> Figure:
    """The image in gray with the heatmap over it (``jet``, semi-transparent) and a colorbar."""
    fig = _new_figure((5.0, 4.3))
    ax = fig.add_subplot()
    ax.imshow(np.asarray(image, dtype=np.float32), cmap="gray", vmin=0.0, vmax=1.0)
    shown = ax.imshow(np.asarray(heatmap, dtype=np.float32), cmap="jet", alpha=alpha, vmin=0.0, vmax=1.0)
    fig.colorbar(shown, ax=ax, fraction=0.046, pad=0.04, label="Grad-CAM (relative)")
    ax.set_title(title)
    ax.set_axis_off()
    return fig
