"""Files of a model comparison: display names, the console table, and writing ``comparison.json``,
``comparison.csv`` and the forest plot ``comparison.png`` (the ``predictions.csv`` reader is in
:mod:`medclf.reporting.predictions_csv`).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from medclf.reporting.figures import FONT, TITLE_FONT
from medclf.reporting.files import save_figure, write_csv, write_json

# The reader lives in its own module; these names stay importable from here.
from medclf.reporting.predictions_csv import PREDICTIONS as PREDICTIONS
from medclf.reporting.predictions_csv import predictions_path as predictions_path
from medclf.reporting.predictions_csv import read_predictions as read_predictions

_PLAIN = {"facecolor": "white", "edgecolor": "none", "pad": 1.0}
COLUMNS = ("label", "n", "auroc_a", "auroc_b", "difference", "ci_low", "ci_high", "p_delong")


def display_names(path_a: str | Path, path_b: str | Path, name_a: str = "", name_b: str = "") -> tuple[str, str]:
    """Names for A and B: the given ones, else the folder names, with parent folders added while equal."""
    if name_a and name_b:
        return name_a, name_b
    parts = [_folder(path_a).parts, _folder(path_b).parts]
    depth = 1
    while depth < 3 and "/".join(parts[0][-depth:]) == "/".join(parts[1][-depth:]):
        depth += 1
    names = ["/".join(p[-depth:]) or "." for p in parts]
    if names[0] == names[1]:
        names = [f"{names[0]} (A)", f"{names[1]} (B)"]
    return name_a or names[0], name_b or names[1]


def _folder(path: str | Path) -> Path:
    path = Path(path).resolve()
    if path.is_dir():
        return path
    return path.parent if path.name == PREDICTIONS else path.with_suffix("")


def safe_name(name: str) -> str:
    """``name`` reduced to characters that are safe in a folder name."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("_.") or "model"


def comparison_rows(result: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Rows of ``comparison.csv``: one per label, then ``macro`` (its ``p_delong`` blank)."""
    return [{c: row.get(c) for c in COLUMNS} for row in [*result["per_label"], result["macro"]]]


def _f(value: float | None, digits: int = 4) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _p(value: float | None) -> str:
    return "-" if value is None else (f"{value:.4f}" if value >= 1e-4 else f"{value:.1e}")


def comparison_table(result: Mapping[str, Any], names: Sequence[str]) -> str:
    """Console table of the comparison, one line per label and the macro line."""
    width = max(len(r["label"]) for r in [*result["per_label"], result["macro"]])
    header = f"{'label':<{width}} {'n':>7} {'A':>7} {'B':>7} {'B - A':>8}  {'95% CI':<19} {'p':>7}"
    lines = [f"A = {names[0]}, B = {names[1]}; AUROC, difference B - A", header]
    for row in [*result["per_label"], result["macro"]]:
        interval = f"[{_f(row['ci_low'])}, {_f(row['ci_high'])}]" if row.get("ci_low") is not None else "-"
        p = row["p_bootstrap"] if row["label"] == "macro" else row["p_delong"]
        lines.append(
            f"{row['label']:<{width}} {row['n']:>7} {_f(row['auroc_a']):>7} {_f(row['auroc_b']):>7} "
            f"{_f(row['difference']):>8}  {interval:<19} {_p(p):>7}"
        )
    lines.append("p: DeLong per label, paired bootstrap for macro")
    return "\n".join(lines)


def comparison_figure(result: Mapping[str, Any], names: Sequence[str]) -> Figure:
    """Forest plot: per label and macro, ``auroc_b - auroc_a`` with its interval, zero marked.

    The right-hand axis gives each row's two AUROCs and p-value; undefined labels say so.
    """
    rows = [*result["per_label"], result["macro"]]
    fig = Figure(figsize=(8.5, 1.4 + 0.36 * len(rows)), layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    positions = np.arange(len(rows))[::-1].astype(float)
    positions[-1] -= 0.6  # the macro row stands apart from the labels
    notes = []
    for y, row in zip(positions, rows, strict=True):
        macro = row["label"] == "macro"
        if row["difference"] is None:
            ax.text(0.0, y, "undefined (one class)", ha="center", va="center", fontsize=FONT, color="0.4", bbox=_PLAIN)
            notes.append("")
            continue
        colour = "black" if macro else "C0"
        if row.get("ci_low") is not None:
            ax.plot([row["ci_low"], row["ci_high"]], [y, y], color=colour, linewidth=2.2 if macro else 1.6)
        ax.plot(row["difference"], y, marker="D" if macro else "o", markersize=8 if macro else 6, color=colour)
        p = row["p_bootstrap"] if macro else row["p_delong"]
        notes.append(f"{_f(row['auroc_a'], 3)} → {_f(row['auroc_b'], 3)}   p {_p(p)}")
    ax.axvline(0.0, color="0.5", linestyle="--", linewidth=1)
    if len(rows) > 1:
        ax.axhline((positions[-2] + positions[-1]) / 2, color="0.8", linewidth=1)
    ax.set_yticks(positions, [r["label"] for r in rows], fontsize=FONT)
    ax.set_ylim(positions[-1] - 0.8, positions[0] + 0.8)
    right = ax.twinx()
    right.set_ylim(ax.get_ylim())
    right.set_yticks(positions, notes, fontsize=FONT)
    level = round(100 * result["bootstrap"]["level"])
    ax.set_xlabel(f"AUROC difference, B - A ({level}% paired bootstrap interval)", fontsize=FONT)
    ax.tick_params(axis="x", labelsize=FONT)
    ax.grid(axis="x", alpha=0.3)
    ax.set_title(
        f"B = {names[1]}  vs  A = {names[0]}\nright: AUROC A → B, p (DeLong; macro: bootstrap)", fontsize=TITLE_FONT
    )
    return fig


def write_comparison(
    out: str | Path, summary: Mapping[str, Any], names: Sequence[str], figures: bool = True
) -> list[Path]:
    """Write ``comparison.json`` (``summary``), ``comparison.csv`` and, with ``figures``, ``comparison.png``.

    Returns:
        The paths written.
    """
    out = Path(out)
    write_json(out / "comparison.json", summary)
    write_csv(out / "comparison.csv", comparison_rows(summary), COLUMNS)
    files = [out / "comparison.json", out / "comparison.csv"]
    if figures:
        files.append(save_figure(out / "comparison.png", comparison_figure(summary, names)))
    return files
