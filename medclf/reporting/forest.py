"""The subgroup forest plot: AUROC with its interval per subgroup, one panel per label plus macro.

Built as a ``matplotlib.figure.Figure`` (never ``pyplot``), in the style of :mod:`medclf.reporting.figures`;
nothing here writes files. Input is the row list of :func:`medclf.metrics.subgroups.subgroup_table`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from matplotlib.axes import Axes
from matplotlib.figure import Figure

from medclf.reporting.figure_text import drawable_text, text_families
from medclf.reporting.figures import COLUMNS, FONT, PANEL_INCHES, TITLE_FONT, _new_figure, _note

MACRO = "macro"
LINE_INCHES = 0.24  # per subgroup line: 9-pt labels stay apart

Line = tuple[str, str | None]  # (attribute, group); group None is the attribute's header line


def forest_figure(
    rows: Sequence[Mapping[str, Any]],
    labels: Sequence[str],
    overall: Mapping[str, float | None] | None = None,
) -> Figure:
    """Forest plot of subgroup AUROCs: one panel per label (then ``macro``), one line per subgroup.

    Each defined subgroup is a point with its interval as whiskers; a subgroup without an AUROC (no
    positive or no negative) reads ``undefined (n=.., pos=..)`` on its line, and one too small for an
    interval (a ``ci_note``) is a hollow point with ``no CI: 3 pos / 2 neg`` at the right. Lines are grouped under a
    bold header per attribute and share the y-axis, so the group names are written once per panel row.

    Args:
        rows: ``subgroup_table`` rows (keys ``attribute, group, label, n, positives, auroc, ci_low,
            ci_high``).
        labels: Label order of the panels; a ``macro`` panel follows when ``rows`` have macro rows.
        overall: Optional AUROC on all images per label (and ``macro``), drawn as a dotted line.
    """
    panels = [*labels] + ([MACRO] if any(row["label"] == MACRO for row in rows) else [])
    lines = _lines(rows)
    if not lines or not panels:
        fig = _new_figure((PANEL_INCHES * 2, PANEL_INCHES))
        ax = fig.add_subplot()
        ax.set_axis_off()
        _note(ax, "no subgroups")
        return fig
    columns = min(COLUMNS, len(panels))
    grid_rows = math.ceil(len(panels) / columns)
    panel_height = LINE_INCHES * len(lines) + 0.9
    fig = _new_figure((PANEL_INCHES * columns + 1.4, panel_height * grid_rows + 0.8))
    axes = list(fig.subplots(grid_rows, columns, sharey=True, squeeze=False).flat)
    for ax in axes[len(panels) :]:
        fig.delaxes(ax)
    axes = axes[: len(panels)]
    attributes = list(dict.fromkeys(attribute for attribute, _ in lines))
    for ax, label in zip(axes, panels, strict=True):
        by_line = {(row["attribute"], row["group"]): row for row in rows if row["label"] == label}
        reference = None if overall is None else overall.get(label)
        _draw_panel(ax, lines, by_line, attributes, reference)
        title = "macro (mean of defined labels)" if label == MACRO else drawable_text(label)
        ax.set_title(title, fontsize=TITLE_FONT, fontfamily=text_families(), parse_math=False)
    _label_lines(axes, lines)
    fig.suptitle("AUROC per subgroup (point, 95% bootstrap interval)", fontsize=TITLE_FONT + 2)
    note = "dashed: chance (0.5)" + ("; dotted: all images" if overall else "")
    fig.supxlabel(f"AUROC  ({note})", fontsize=FONT)
    return fig


def _lines(rows: Sequence[Mapping[str, Any]]) -> list[Line]:
    """Header and group lines in the rows' order: each attribute's header, then its groups."""
    lines: list[Line] = []
    for row in rows:
        attribute, group = str(row["attribute"]), str(row["group"])
        if (attribute, None) not in lines:
            lines.append((attribute, None))
        if (attribute, group) not in lines:
            lines.append((attribute, group))
    return lines


def _draw_panel(
    ax: Axes,
    lines: list[Line],
    by_line: Mapping[tuple[str, str], Mapping[str, Any]],
    attributes: list[str],
    reference: float | None,
) -> None:
    """One label's points and whiskers, undefined notes, chance and reference lines."""
    values = [0.5]
    for y, (attribute, group) in enumerate(lines):
        row = by_line.get((attribute, group)) if group is not None else None
        if group is None:
            if y > 0:
                ax.axhline(y - 0.5, color="0.8", linewidth=0.8)
            continue
        if row is None:
            continue
        colour = f"C{attributes.index(attribute) % 10}"
        auroc = row.get("auroc")
        if auroc is None:
            text = f"undefined (n={row.get('n', 0)}, pos={row.get('positives', 0)})"
            ax.text(0.03, y, text, transform=ax.get_yaxis_transform(), va="center", fontsize=FONT, color="darkred")
            continue
        low, high = row.get("ci_low"), row.get("ci_high")
        if low is not None and high is not None:
            ax.plot([low, high], [y, y], color=colour, linewidth=1.6, solid_capstyle="butt")
            ax.plot([low, high], [y, y], linestyle="none", marker="|", markersize=7, color=colour)
            values += [low, high]
        too_few = bool(row.get("ci_note"))
        # Hollow: a point without an interval must not look as certain as one whose whiskers are too short to see.
        ax.plot([auroc], [y], marker="o", markersize=5, color=colour, markerfacecolor="white" if too_few else colour)
        if too_few:
            ax.text(0.98, y, _too_few_text(row), transform=ax.get_yaxis_transform(), ha="right", va="center",
                    fontsize=FONT - 1, color="0.35")  # fmt: skip
        values.append(auroc)
    ax.axvline(0.5, color="0.6", linestyle="--", linewidth=1)
    if reference is not None:
        ax.axvline(reference, color="black", linestyle=":", linewidth=1.2)
        values.append(reference)
    ax.set_xlim(max(0.0, min(values) - 0.03), min(1.0, max(values)) + 0.03)
    ax.set_ylim(len(lines) - 0.5, -0.5)  # first line on top
    ax.tick_params(labelsize=FONT)
    ax.grid(axis="x", alpha=0.3)


def _too_few_text(row: Mapping[str, Any]) -> str:
    """``no CI: 3 pos / 2 neg`` (a label) or ``no CI: too few in some labels`` (macro) for a point without interval."""
    if row.get("label") == MACRO:
        return "no CI: too few in some labels"
    return f"no CI: {row.get('positives', 0)} pos / {row.get('n', 0) - row.get('positives', 0)} neg"


def _label_lines(axes: list[Axes], lines: list[Line]) -> None:
    """Group names as y tick labels (shown on the first column only: the y-axis is shared), headers bold."""
    names = [drawable_text(attribute if group is None else f"  {group}") for attribute, group in lines]
    axes[0].set_yticks(range(len(lines)), names, fontfamily=text_families(), parse_math=False)
    for ax in axes:
        # Panels off the first column hide their labels and may list none: not strict.
        for tick, (_, group) in zip(ax.get_yticklabels(), lines, strict=False):
            if group is None:
                tick.set_fontweight("bold")
        ax.tick_params(axis="y", length=0)
