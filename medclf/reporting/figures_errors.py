"""The most-confident-errors figure of one label: false positives and false negatives in separate rows.

Built like :mod:`medclf.reporting.figures` (a ``Figure``, never ``pyplot``); nothing here writes files.
Images are grayscale (H, W) arrays in [0, 1], shown without ticks, each with its caption;
pick them with :func:`medclf.metrics.curves.confident_errors_by_kind`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from matplotlib.figure import Figure, SubFigure

from medclf.reporting.figures import TITLE_FONT, _new_figure, _note, _show_image

ERROR_COLUMNS = 8
"""Images per line; a longer row of errors wraps."""
ERROR_PANEL_INCHES = 2.0

Shown = tuple[Sequence[np.ndarray], Sequence[str]]
"""``(images, captions)`` of one kind of error, most confident first."""


def errors_figure(
    false_positives: Shown,
    false_negatives: Shown,
    title: str,
    totals: tuple[int, int] | None = None,
) -> Figure:
    """The most confident false positives (top row) and false negatives (bottom row) of one label.

    Args:
        false_positives: ``(images, captions)`` of negatives called positive, highest probability first.
        false_negatives: ``(images, captions)`` of positives called negative, lowest probability first.
        title: The figure title, e.g. the label and its threshold.
        totals: How many false positives and false negatives there are in all, written in the row titles.

    Returns:
        The figure; a kind without errors gets a note instead of images.
    """
    rows = [
        ("False positives: negatives called positive, highest probability first", *false_positives),
        ("False negatives: positives called negative, lowest probability first", *false_negatives),
    ]
    for heading, images, captions in rows:
        if len(images) != len(captions):
            raise ValueError(f"{heading.split(':')[0]}: {len(images)} images but {len(captions)} captions")
    columns = min(ERROR_COLUMNS, max(4, len(false_positives[0]), len(false_negatives[0])))
    lines = max([str(c).count("\n") + 1 for _, _, captions in rows for c in captions] or [1])
    cell = ERROR_PANEL_INCHES + 0.18 * lines
    heights = [(math.ceil(len(images) / columns) * cell if images else 0.6) + 0.4 for _, images, _ in rows]
    fig = _new_figure((ERROR_PANEL_INCHES * columns, sum(heights) + 0.5))
    fig.suptitle(title, fontsize=TITLE_FONT + 2)
    for k, (subfig, (heading, images, captions)) in enumerate(
        zip(fig.subfigures(2, 1, height_ratios=heights), rows, strict=True)
    ):
        total = f" ({len(images)} of {totals[k]})" if totals is not None else ""
        _error_row(subfig, f"{heading}{total}", images, captions, columns, colour="C3" if k == 0 else "C0")
    return fig


def _error_row(
    subfig: SubFigure, heading: str, images: Sequence[np.ndarray], captions: Sequence[str], columns: int, colour: str
) -> None:
    """One kind of error: its heading and its images, ``columns`` per line (or a note when there are none)."""
    subfig.suptitle(heading, fontsize=TITLE_FONT + 1, color=colour, x=0.01, ha="left")
    if not images:
        ax = subfig.add_subplot()
        ax.set_axis_off()
        _note(ax, "none at this threshold")
        return
    axes = list(subfig.subplots(math.ceil(len(images) / columns), columns, squeeze=False).flat)
    for ax in axes[len(images) :]:
        subfig.delaxes(ax)
    for ax, image, caption in zip(axes[: len(images)], images, captions, strict=True):
        _show_image(ax, image, caption)
        for spine in ax.spines.values():
            spine.set_edgecolor(colour)
            spine.set_linewidth(2)
