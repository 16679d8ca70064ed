"""The calibration figure: one reliability panel per label (small multiples); nothing here writes files.

Each panel draws the label's reliability curve over equal-width bins against the diagonal, the label's
ECE in its title and the images per bin as grey bars (right axis, log scale). With ``raw_probs`` (the
outputs before temperature scaling) the raw curve is drawn dashed and the title reads
``ECE raw <value> → calibrated <value>``. Built like :mod:`medclf.reporting.figures` (a ``Figure``, never ``pyplot``);
unknown (NaN) targets take no part.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from medclf.metrics.curves import calibration_bins, check_probs_targets, class_counts, expected_calibration_error
from medclf.reporting.figures import FONT, _note, _panel_grid, _panel_title, _style_unit_axes

CALIBRATED_STYLE = {"color": "C0", "linewidth": 1.8, "marker": "o", "markersize": 4, "zorder": 5}
RAW_STYLE = {"color": "0.3", "linewidth": 1.3, "linestyle": "--", "marker": "s", "markersize": 3, "zorder": 4}
BAR_SHARE = 0.4
"""Height of the tallest count bar as a share of the panel, so the bars stay under most curves."""


def calibration_figure(
    probs: np.ndarray,
    targets: np.ndarray,
    labels: Sequence[str],
    n_bins: int = 10,
    raw_probs: np.ndarray | None = None,
) -> Figure:
    """Reliability diagrams, one panel per label, with the per-label ECE and the images per bin.

    Args:
        probs: (N, L) reported probabilities (calibrated when temperatures are applied).
        targets: (N, L) 0/1 targets, NaN where unknown.
        labels: The L label names.
        n_bins: Equal-width bins over [0, 1], as for :func:`medclf.metrics.curves.calibration_bins`.
        raw_probs: Optional (N, L) outputs before temperature scaling, drawn dashed for comparison.

    Returns:
        The figure; the bars count the images per bin of ``probs``.
    """
    probs, targets = check_probs_targets(probs, targets, labels)
    raw = None if raw_probs is None else check_probs_targets(raw_probs, targets, labels)[0]
    title = f"Calibration per label ({n_bins} equal-width bins; grey bars: images per bin, right axis, log scale)"
    fig, axes = _panel_grid(len(labels), title)
    for j, (ax, name) in enumerate(zip(axes, labels, strict=True)):
        ax.plot([0, 1], [0, 1], linestyle="--", color="0.6", linewidth=1, label="perfect calibration")
        _, _, counts = calibration_bins(probs[:, j], targets[:, j], n_bins)
        _count_bars(ax, counts)
        label = "calibrated" if raw is not None else "observed"
        ece = _reliability(ax, probs[:, j], targets[:, j], n_bins, {**CALIBRATED_STYLE, "label": label})
        text = f"ECE {_num(ece)}"
        if raw is not None:
            style = {**RAW_STYLE, "label": "before temperature scaling"}
            text = f"ECE raw {_num(_reliability(ax, raw[:, j], targets[:, j], n_bins, style))} → calibrated {_num(ece)}"
        if ece is None:
            _note(ax, "no labelled images")
        positives, negatives = class_counts(targets[:, j])
        _style_unit_axes(ax, f"{_panel_title(name, positives, negatives)}\n{text}", "predicted probability",
                         "fraction positive")  # fmt: skip
    handles, names = axes[0].get_legend_handles_labels()
    fig.legend(handles, names, loc="outside lower center", ncols=len(names), fontsize=FONT, frameon=False)
    return fig


def _reliability(ax: Axes, probs_1d: np.ndarray, targets_1d: np.ndarray, n_bins: int, style: dict[str, Any]) -> Any:
    """Draw one reliability curve through the non-empty bins; return its ECE (None without images)."""
    mean_pred, frac_pos, counts = calibration_bins(probs_1d, targets_1d, n_bins)
    used = counts > 0
    ax.plot(mean_pred[used], frac_pos[used], **style)
    return expected_calibration_error(probs_1d, targets_1d, n_bins)


def _count_bars(ax: Axes, counts: np.ndarray) -> None:
    """Images per bin as grey bars on a twin log-scale axis, behind the curves and under BAR_SHARE of the height."""
    bars = ax.twinx()
    ax.set_zorder(bars.get_zorder() + 1)  # curves over the bars
    ax.patch.set_visible(False)
    n_bins = counts.size
    centres = (np.arange(n_bins) + 0.5) / n_bins
    shown = np.where(counts > 0, counts, np.nan)  # log scale: empty bins draw nothing
    bars.bar(centres, shown, width=1.0 / n_bins, color="0.55", alpha=0.35, edgecolor="white", linewidth=0.5)
    bars.set_yscale("log")
    top = max(int(counts.max(initial=0)), 10)
    bars.set_ylim(0.8, 0.8 * (top / 0.8) ** (1.0 / BAR_SHARE))
    ticks = [10**k for k in range(int(math.log10(top)) + 1)]
    bars.set_yticks(ticks, [f"{t:d}" for t in ticks], fontsize=FONT, color="0.4")
    bars.minorticks_off()


def _num(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"
