"""Evaluation figures built as matplotlib ``Figure`` objects; nothing here writes files.

Figures use ``matplotlib.figure.Figure`` with an Agg canvas, never ``pyplot``: no global state, safe
headless and in worker threads, and accepted by TensorBoard's ``add_figure``. Inputs are numpy arrays:
``probs`` (N, L) in [0, 1], ``targets`` (N, L) 0/1 and ``labels`` (L names). Per-label figures use a grid
of 3.2-inch panels, 4 per row, with fonts of at least 9 pt, so 14 labels read without zooming. A label
without positives (or negatives) still gets its panel, with a note saying why its curve is undefined.
"""

from __future__ import annotations

import io
import math
from collections.abc import Callable, Sequence

import numpy as np
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from medclf.metrics.curves import (
    average_precision,
    calibration_bins,
    check_probs_targets,
    class_counts,
    confusion_counts,
    curve_auroc,
    expected_calibration_error,
    pr_curve_points,
    roc_curve_points,
)

PANEL_INCHES = 3.2
COLUMNS = 4
FONT = 9
TITLE_FONT = 10


# ---------------------------------------------------------------------------------------------------------
# Figures


def figure_png(fig: Figure, dpi: int = 110) -> bytes:
    """Render a figure to PNG bytes in memory."""
    if not isinstance(fig.canvas, FigureCanvasAgg):
        FigureCanvasAgg(fig)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi, bbox_inches="tight")
    return buffer.getvalue()


def roc_figure(probs: np.ndarray, targets: np.ndarray, labels: Sequence[str]) -> Figure:
    """Per-label ROC curves with AUROC in the legend and the chance diagonal."""

    def draw(ax: Axes, p: np.ndarray, t: np.ndarray, positives: int, negatives: int) -> bool:
        ax.plot([0, 1], [0, 1], linestyle="--", color="0.6", linewidth=1, label="chance")
        points = roc_curve_points(p, t)
        if points is not None:
            fpr, tpr, _ = points
            ax.plot(fpr, tpr, color="C0", linewidth=1.8, label=f"AUROC {curve_auroc(p, t):.3f}")
        return points is not None

    axis_names = ("false positive rate", "true positive rate")
    return _curve_panels(probs, targets, labels, "ROC curves", axis_names, draw, legend=("lower right", True))


def pr_figure(probs: np.ndarray, targets: np.ndarray, labels: Sequence[str]) -> Figure:
    """Per-label precision-recall curves with average precision in the legend and a prevalence line."""

    def draw(ax: Axes, p: np.ndarray, t: np.ndarray, positives: int, negatives: int) -> bool:
        points = pr_curve_points(p, t)
        if points is not None:
            recall, precision, _ = points
            ap = average_precision(p, t)
            ax.plot(recall, precision, color="C1", linewidth=1.8, drawstyle="steps-pre", label=f"AP {ap:.3f}")
            prevalence = positives / (positives + negatives)
            ax.axhline(prevalence, linestyle="--", color="0.6", linewidth=1, label=f"prevalence {prevalence:.3f}")
            if negatives == 0:
                _note(ax, "no negatives:\nprecision is always 1")
        return points is not None

    axis_names = ("recall", "precision")
    return _curve_panels(probs, targets, labels, "Precision-recall curves", axis_names, draw, legend=("best", False))


def _curve_panels(
    probs: np.ndarray,
    targets: np.ndarray,
    labels: Sequence[str],
    title: str,
    axis_names: tuple[str, str],
    draw: Callable[[Axes, np.ndarray, np.ndarray, int, int], bool],
    legend: tuple[str, bool],
) -> Figure:
    """One panel per label; ``draw`` plots a label's curve and says whether it is defined.

    ``legend`` is (location, whether to show it on panels whose curve is undefined).
    """
    probs, targets = check_probs_targets(probs, targets, labels)
    fig, axes = _panel_grid(len(labels), title)
    for j, (ax, name) in enumerate(zip(axes, labels, strict=True)):
        positives, negatives = class_counts(targets[:, j])
        defined = draw(ax, probs[:, j], targets[:, j], positives, negatives)
        if not defined:
            _note(ax, _undefined(positives, negatives))
        _style_unit_axes(ax, _panel_title(name, positives, negatives), *axis_names)
        if defined or legend[1]:
            ax.legend(loc=legend[0], fontsize=FONT, frameon=True)
    return fig


def confusion_figure(
    probs: np.ndarray, targets: np.ndarray, labels: Sequence[str], thresholds: Sequence[float]
) -> Figure:
    """Per-label 2x2 confusion matrices at per-label thresholds (positive when prob >= threshold).

    Each cell shows the count and its percentage of the label's N images.
    """
    probs, targets = check_probs_targets(probs, targets, labels)
    counts = confusion_counts(probs, targets, thresholds)
    fig, axes = _panel_grid(len(labels), "Confusion matrices (prediction positive when prob >= threshold)")
    for j, (ax, name) in enumerate(zip(axes, labels, strict=True)):
        matrix = counts[j]
        labelled = matrix.sum()
        share = matrix / labelled if labelled else np.zeros((2, 2))
        ax.imshow(share, cmap="Blues", vmin=0.0, vmax=1.0)
        for t in range(2):
            for p in range(2):
                colour = "white" if share[t, p] > 0.55 else "black"
                ax.text(
                    p,
                    t,
                    f"{matrix[t, p]}\n{100.0 * share[t, p]:.1f}%",
                    ha="center",
                    va="center",
                    fontsize=TITLE_FONT,
                    color=colour,
                )
        ax.set_xticks([0, 1], ["neg", "pos"], fontsize=FONT)
        ax.set_yticks([0, 1], ["neg", "pos"], fontsize=FONT)
        ax.set_xlabel("predicted", fontsize=FONT)
        ax.set_ylabel("true", fontsize=FONT)
        positives, negatives = int(matrix[1].sum()), int(matrix[0].sum())
        title = f"{name}\nthreshold {float(thresholds[j]):.3f}"
        if positives == 0 or negatives == 0:
            title += "\n(" + ("no positives" if positives == 0 else "no negatives") + ")"
        ax.set_title(title, fontsize=TITLE_FONT)
    return fig


def calibration_figure(
    probs: np.ndarray,
    targets: np.ndarray,
    labels: Sequence[str],
    n_bins: int = 10,
    raw_probs: np.ndarray | None = None,
) -> Figure:
    """Reliability diagram: pooled curve (bold, ECE in the legend), thin per-label curves, the diagonal,
    and a histogram of the predicted probabilities underneath. With ``raw_probs`` (the outputs before
    temperature scaling) their pooled curve is drawn dashed for comparison."""
    probs, targets = check_probs_targets(probs, targets, labels)
    fig = _new_figure((10.5, 7.5))
    grid = fig.add_gridspec(2, 1, height_ratios=[3, 1])
    top: Axes = fig.add_subplot(grid[0])
    bottom: Axes = fig.add_subplot(grid[1], sharex=top)
    top.plot([0, 1], [0, 1], linestyle="--", color="0.5", linewidth=1, label="perfect calibration")
    colours = _label_colours(len(labels))
    for j, name in enumerate(labels):
        mean_pred, frac_pos, _ = calibration_bins(probs[:, j], targets[:, j], n_bins)
        used = ~np.isnan(mean_pred)
        top.plot(mean_pred[used], frac_pos[used], linewidth=0.9, alpha=0.75, color=colours[j], label=name)
    pooled_probs, pooled_targets = probs.reshape(-1), targets.reshape(-1)
    mean_pred, frac_pos, _ = calibration_bins(pooled_probs, pooled_targets, n_bins)
    used = ~np.isnan(mean_pred)
    ece = expected_calibration_error(pooled_probs, pooled_targets, n_bins)
    if ece is None:
        _note(top, "no predictions")
    else:
        top.plot(
            mean_pred[used],
            frac_pos[used],
            color="black",
            linewidth=2.8,
            marker="o",
            markersize=5,
            label=f"all labels pooled{', calibrated' if raw_probs is not None else ''} (ECE {ece:.3f})",
            zorder=5,
        )
    if raw_probs is not None:
        _raw_curve(top, check_probs_targets(raw_probs, targets, labels)[0].reshape(-1), pooled_targets, n_bins)
    top.set_xlim(0, 1)
    top.set_ylim(-0.02, 1.02)
    top.set_ylabel("fraction positive", fontsize=FONT)
    top.set_title(f"Calibration ({n_bins} equal-width bins)", fontsize=TITLE_FONT + 1)
    top.tick_params(labelsize=FONT, labelbottom=False)
    top.grid(alpha=0.3)
    top.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=FONT, frameon=False)
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    bottom.hist(np.clip(pooled_probs, 0.0, 1.0), bins=edges, color="0.45", edgecolor="white")
    if pooled_probs.size:
        bottom.set_yscale("log")
    bottom.set_xlabel("predicted probability", fontsize=FONT)
    bottom.set_ylabel("count (log)" if pooled_probs.size else "count", fontsize=FONT)
    bottom.tick_params(labelsize=FONT)
    bottom.grid(alpha=0.3)
    return fig


def _raw_curve(ax: Axes, raw: np.ndarray, targets: np.ndarray, n_bins: int) -> None:
    mean_pred, frac_pos, _ = calibration_bins(raw, targets, n_bins)
    used = ~np.isnan(mean_pred)
    ece = expected_calibration_error(raw, targets, n_bins)
    if ece is not None:
        ax.plot(mean_pred[used], frac_pos[used], color="0.35", linewidth=2.0, linestyle="--", marker="s",
                markersize=4, label=f"before temperature scaling (ECE {ece:.3f})", zorder=4)  # fmt: skip


def image_grid_figure(images: Sequence[np.ndarray], captions: Sequence[str], title: str) -> Figure:
    """A grid of grayscale (H, W) images in [0, 1], each with a (multi-line) caption under it."""
    if len(images) != len(captions):
        raise ValueError(f"{len(images)} images but {len(captions)} captions")
    if not images:
        fig = _new_figure((PANEL_INCHES * 2, PANEL_INCHES))
        ax = fig.add_subplot()
        ax.set_axis_off()
        _note(ax, "no images")
        fig.suptitle(title, fontsize=TITLE_FONT + 2)
        return fig
    lines = max(str(c).count("\n") + 1 for c in captions)
    fig, axes = _panel_grid(len(images), title, extra_height=0.18 * lines)
    for ax, image, caption in zip(axes, images, captions, strict=True):
        pixels = np.asarray(image, dtype=np.float64)
        if pixels.ndim == 3 and pixels.shape[-1] == 1:
            pixels = pixels[..., 0]
        if pixels.ndim != 2:
            raise ValueError(f"images must be (H, W) arrays, got shape {pixels.shape}")
        ax.imshow(pixels, cmap="gray", vmin=0.0, vmax=1.0, interpolation="nearest")
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_xlabel(str(caption), fontsize=FONT, linespacing=1.3)
    return fig


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
    ax.set_aspect("equal")
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


def _label_colours(n: int) -> list[tuple[float, float, float, float]]:
    from matplotlib import colormaps

    cmap = colormaps["tab20"]
    return [cmap(i % cmap.N) for i in range(n)]


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
