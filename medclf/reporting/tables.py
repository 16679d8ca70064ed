"""Text tables for the console and CSV rows: the epoch line, the evaluation table, predictions."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from medclf.metrics import metric_list
from medclf.reporting.files import write_csv


def epoch_line(
    row: Mapping[str, Any], epochs: int, n_labels: int, seconds: float, best_loss: float | None = None
) -> str:
    """``epoch 3/20 train_loss 0.1974 val_loss 0.1849 val_auroc 0.7412 val_acc 0.9489 best 0.7412@3``;
    with ``best_loss`` (best.pt selected by val_loss) ``best val_loss 0.1849@3``."""
    best = f"val_loss {_f(best_loss)}" if best_loss is not None else _f(row["best_auroc"])
    text = (
        f"epoch {row['epoch']}/{epochs} train_loss {_f(row['train_loss'])} val_loss {_f(row['val_loss'])} "
        f"val_auroc {_f(row['val_auroc'])} val_acc {_f(row['val_acc'])} best {best}@{row['best_epoch']}"
    )
    if row["labels_averaged"] < n_labels:
        text += f" ({row['labels_averaged']}/{n_labels} labels averaged)"
    return text + f" [{seconds:.0f}s]"


def _f(value: float | None) -> str:
    return "n/a" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.4f}"


def metrics_table(metrics: Mapping[str, Any]) -> str:
    """The metrics of :data:`~medclf.metrics.metric_list.METRICS` that have a console column, per label
    (an interval metric with its 95% interval when bootstrapped), then the macro AUROC and a last line
    with the accuracies, each naming its thresholds, as text."""
    labels = list(metrics["auroc"])
    rows = {r["label"]: r for r in metrics.get("per_label", [])}
    shown = [m for m in metric_list.METRICS if m.console]
    width = max([len("label"), *map(len, labels)])
    header = [f"{'label':<{width}}"]
    for m in shown:
        header += [f"{m.console[0]:>{m.console[1]}}"] + ([f"{'95% CI':>15}"] if m.interval else [])
    lines = ["  ".join(header)]
    for name in labels:
        row = rows.get(name, {})
        cells = [f"{name:<{width}}"]
        for m in shown:
            value = row[m.key] if m.key in row else metrics[m.key][name]  # training's metrics: no per_label
            text = "undef" if value is None else str(value) if m.count else f"{value:.4f}"
            cells.append(f"{text:>{m.console[1]}}")
            if m.interval:
                cells.append(f"{interval_text(row.get(f'{m.key}_ci_low'), row.get(f'{m.key}_ci_high')):>15}")
        lines.append("  ".join(cells))
    macro = metrics.get("macro", {})
    ci = interval_text(macro.get("auroc_ci_low"), macro.get("auroc_ci_high"))
    lines.append(
        f"macro AUROC {_f(metrics['macro_auroc'])}{' ' + ci if ci else ''} over {metrics['labels_averaged']}/"
        f"{metrics['n_labels']} labels (undefined: label without positives or negatives); {metrics['n_images']} images"
    )
    return "\n".join([*lines, accuracy_line(metrics)])


def accuracy_line(metrics: Mapping[str, Any]) -> str:
    """The two accuracies of an evaluation, each with its thresholds, as one line.

    ``accuracy (labelled image x label decisions) 0.5980 at the VALIDATION-chosen thresholds (mean over
    labels 0.6012); 0.8019 at 0.5 on the uncalibrated outputs (training's val_acc)``: first the
    evaluation's accuracy (``micro`` and ``macro`` ``accuracy``, at each label's operating threshold),
    then ``accuracy_at_0.5``.
    """
    at_half = f"{_f(metrics.get('accuracy_at_0.5', metrics.get('accuracy')))} at 0.5 on the uncalibrated outputs"
    if "micro" not in metrics:
        return f"accuracy (labelled image x label decisions) {at_half}"
    return (
        f"accuracy (labelled image x label decisions) {_f(metrics['micro']['accuracy'])} "
        f"{thresholds_phrase(metrics.get('thresholds_from'))} (mean over labels {_f(metrics['macro']['accuracy'])}); "
        f"{at_half} (training's val_acc)"
    )


def thresholds_phrase(source: str | None) -> str:
    """Where the operating thresholds come from, as ``at ...`` text (``source``: ``thresholds_from``)."""
    if source is None or source.startswith("checkpoint"):
        return "at the VALIDATION-chosen thresholds"
    if source.startswith("fixed "):
        return f"at {source.removeprefix('fixed ')}"
    if source.startswith("default "):
        return f"at {source.removeprefix('default ')} (the checkpoint has no thresholds)"
    return f"at the thresholds of {source} (other labels: the checkpoint's)"


def interval_text(low: float | None, high: float | None, digits: int = 4) -> str:
    """``[low, high]`` with ``digits`` decimals; empty when there is no interval."""
    return "" if low is None or high is None else f"[{low:.{digits}f}, {high:.{digits}f}]"


def evaluation_table(metrics: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Rows of an evaluation's metrics.csv: one per label, then the macro and micro averages; the
    columns are the rows' keys, in the order of :data:`~medclf.metrics.metric_list.METRICS`."""
    rows = [dict(row) for row in metrics["per_label"]]
    for name in ("macro", "micro"):
        rows.append({"label": f"{name} average", **metrics[name]})
    return rows


def write_predictions(
    path: str | Path,
    paths: Sequence[str],
    rows: Sequence[int],
    labels: Sequence[str],
    probs: torch.Tensor,
    targets: torch.Tensor | None = None,
    calls: np.ndarray | None = None,
    skipped: Sequence[Mapping[str, Any]] = (),
) -> None:
    """Per-image CSV: ``image``, ``row``, ``true_<label>`` (if known), ``prob_<label>``, ``pred_<label>``
    (the (N, L) bool ``calls``, if given, as 0/1), and ``error`` for unreadable images (listed last,
    without probabilities)."""
    probs = probs.detach().double().cpu().numpy()
    truth = targets.detach().double().cpu().numpy() if targets is not None else None
    if calls is not None and np.shape(calls) != probs.shape:
        raise ValueError(f"calls of shape {np.shape(calls)} for probabilities of shape {probs.shape}")
    columns = ["image", "row"]
    if truth is not None:
        columns += [f"true_{n}" for n in labels]
    columns += [f"prob_{n}" for n in labels]
    if calls is not None:
        columns += [f"pred_{n}" for n in labels]
    if skipped:
        columns.append("error")
    out = []
    for i, (image, row) in enumerate(zip(paths, rows, strict=True)):
        record: dict[str, Any] = {"image": image, "row": row}
        for j, name in enumerate(labels):
            if truth is not None:
                record[f"true_{name}"] = None if np.isnan(truth[i, j]) else int(truth[i, j])  # unknown: blank
            record[f"prob_{name}"] = float(probs[i, j])
            if calls is not None:
                record[f"pred_{name}"] = int(calls[i, j])
        out.append(record)
    out += [{"image": s["path"], "row": s["row"], "error": s["error"]} for s in skipped]
    write_csv(path, out, columns)
