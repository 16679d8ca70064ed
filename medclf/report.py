"""Everything a run writes besides checkpoints: config, metrics.csv/json, predictions, TensorBoard.

Files are written atomically (:mod:`medclf.files`), so a killed run never leaves a torn CSV or JSON.
"""

from __future__ import annotations

import csv
import datetime as dt
import json
import logging
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from medclf.errors import ConfigError
from medclf.files import atomic_write

log = logging.getLogger(__name__)

RUN_MARKERS = ("last.pt", "best.pt", "metrics.csv")


def default_run_dir(root: str | Path = "runs") -> Path:
    """``runs/<YYYYmmdd-HHMMSS>``."""
    return Path(root) / dt.datetime.now().strftime("%Y%m%d-%H%M%S")


def prepare_run_dir(out: str | Path, resuming: bool) -> Path:
    """Create the run folder; refuse to start a new run over an existing one.

    Raises:
        ConfigError: when ``out`` already holds a run and we are not resuming it.
    """
    path = Path(out)
    if not resuming and path.is_dir():
        found = [m for m in RUN_MARKERS if (path / m).exists()]
        if found:
            raise ConfigError(
                f"{path} already holds a run ({', '.join(found)}); resume it with --resume {path} "
                "or choose another --out"
            )
    path.mkdir(parents=True, exist_ok=True)
    return path


def write_json(path: str | Path, data: Any) -> None:
    """Write strict JSON (NaN/inf become null) atomically."""
    with atomic_write(path, "w", encoding="utf-8") as f:
        json.dump(_plain(data), f, indent=2, allow_nan=False)
        f.write("\n")


def _plain(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, torch.Tensor | np.ndarray):
        return _plain(value.tolist())
    if isinstance(value, np.generic):
        return _plain(value.item())
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, Path):
        return str(value)
    return value


def write_csv(path: str | Path, rows: Sequence[Mapping[str, Any]], columns: Sequence[str] | None = None) -> None:
    """Write dict rows as CSV atomically; floats keep full precision, None is written empty."""
    if columns is None:
        columns = []
        for row in rows:
            columns += [k for k in row if k not in columns]
    with atomic_write(path, "w", encoding="utf-8", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(columns)
        for row in rows:
            writer.writerow(["" if row.get(c) is None else _cell(row.get(c)) for c in columns])


def _cell(value: Any) -> Any:
    if isinstance(value, float):
        return repr(value)
    return value


class RunLogger:
    """TensorBoard events and metrics.csv of a training run.

    Args:
        run_dir: The run folder; event files go directly into it.
        start_epoch: Last completed epoch when resuming: later events of an interrupted run are purged.
    """

    def __init__(self, run_dir: str | Path, start_epoch: int = 0) -> None:
        from torch.utils.tensorboard import SummaryWriter

        self.run_dir = Path(run_dir)
        self.writer = SummaryWriter(log_dir=str(self.run_dir), purge_step=start_epoch + 1 if start_epoch else None)
        self.writer.add_custom_scalars(
            {"training": {"loss (train and val)": ["Multiline", ["loss/train", "loss/val"]]}}
        )

    def log_epoch(self, row: Mapping[str, Any], history: Sequence[Mapping[str, Any]], seconds: float) -> None:
        """Add one epoch's scalars to TensorBoard and rewrite metrics.csv from ``history``."""
        epoch = int(row["epoch"])
        scalars = {
            "loss/train": row["train_loss"],
            "loss/val": row["val_loss"],
            "val/macro_auroc": row["val_auroc"],
            "val/accuracy": row["val_acc"],
            "val/labels_averaged": row["labels_averaged"],
            "lr": row["lr"],
            "time/epoch_seconds": seconds,
        }
        scalars.update({f"val_auroc/{k[6:]}": v for k, v in row.items() if k.startswith("auroc_")})
        for tag, value in scalars.items():
            if value is not None and math.isfinite(value):
                self.writer.add_scalar(tag, value, epoch)
        self.writer.flush()
        write_csv(self.run_dir / "metrics.csv", history)

    def add_figure(self, tag: str, figure: Any, epoch: int) -> None:
        """Add a matplotlib figure (closed afterwards)."""
        self.writer.add_figure(tag, figure, epoch, close=True)

    def close(self) -> None:
        """Flush and close the event file."""
        self.writer.close()


def epoch_line(row: Mapping[str, Any], epochs: int, n_labels: int, seconds: float) -> str:
    """``epoch 3/20 train_loss 0.1974 val_loss 0.1849 val_auroc 0.7412 val_acc 0.9489 best 0.7412@3``."""
    text = (
        f"epoch {row['epoch']}/{epochs} train_loss {_f(row['train_loss'])} val_loss {_f(row['val_loss'])} "
        f"val_auroc {_f(row['val_auroc'])} val_acc {_f(row['val_acc'])} "
        f"best {_f(row['best_auroc'])}@{row['best_epoch']}"
    )
    if row["labels_averaged"] < n_labels:
        text += f" ({row['labels_averaged']}/{n_labels} labels averaged)"
    return text + f" [{seconds:.0f}s]"


def _f(value: float | None) -> str:
    return "n/a" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.4f}"


def metrics_table(metrics: Mapping[str, Any]) -> str:
    """Per-label AUROC (with its 95% interval when bootstrapped), positives and negatives, then the macro
    AUROC and accuracy, as text."""
    labels = list(metrics["auroc"])
    rows = {r["label"]: r for r in metrics.get("per_label", [])}
    width = max([len("label"), *map(len, labels)])
    lines = [f"{'label':<{width}}  {'AUROC':>7}  {'95% CI':>15}  {'pos':>6}  {'neg':>6}"]
    for name in labels:
        auroc = metrics["auroc"][name]
        shown = "undef" if auroc is None else f"{auroc:.4f}"
        row = rows.get(name, {})
        ci = interval_text(row.get("auroc_ci_low"), row.get("auroc_ci_high"))
        lines.append(
            f"{name:<{width}}  {shown:>7}  {ci:>15}  {metrics['positives'][name]:>6}  {metrics['negatives'][name]:>6}"
        )
    macro = metrics.get("macro", {})
    ci = interval_text(macro.get("auroc_ci_low"), macro.get("auroc_ci_high"))
    lines.append(
        f"macro AUROC {_f(metrics['macro_auroc'])}{' ' + ci if ci else ''} over {metrics['labels_averaged']}/"
        f"{metrics['n_labels']} labels (undefined: label without positives or negatives); "
        f"accuracy {_f(metrics['accuracy'])}; {metrics['n_images']} images"
    )
    return "\n".join(lines)


def interval_text(low: float | None, high: float | None, digits: int = 4) -> str:
    """``[low, high]`` with ``digits`` decimals; empty when there is no interval."""
    return "" if low is None or high is None else f"[{low:.{digits}f}, {high:.{digits}f}]"


def evaluation_table(metrics: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Rows of an evaluation's metrics.csv: one per label, then the macro and micro averages."""
    rows = [dict(row) for row in metrics["per_label"]]
    for name in ("macro", "micro"):
        rows.append({"label": f"{name} average", **metrics[name]})
    return rows


def write_bytes(path: str | Path, data: bytes) -> Path:
    """Write a binary file (e.g. a rendered PNG) atomically."""
    with atomic_write(path, "wb") as f:
        f.write(data)
    return Path(path)


def write_text(path: str | Path, text: str) -> Path:
    """Write a UTF-8 text file (e.g. report.html) atomically."""
    with atomic_write(path, "w", encoding="utf-8") as f:
        f.write(text)
    return Path(path)


def write_predictions(
    path: str | Path,
    paths: Sequence[str],
    rows: Sequence[int],
    labels: Sequence[str],
    probs: torch.Tensor,
    targets: torch.Tensor | None = None,
    thresholds: Sequence[float] | None = None,
    skipped: Sequence[Mapping[str, Any]] = (),
) -> None:
    """Per-image CSV: ``image``, ``row``, ``true_<label>`` (if known), ``prob_<label>``, ``pred_<label>``
    (if thresholds are given; 1 when prob >= threshold), and ``error`` for unreadable images (listed last,
    without probabilities)."""
    probs = probs.detach().double().cpu().numpy()
    truth = targets.detach().cpu().numpy().astype(int) if targets is not None else None
    columns = ["image", "row"]
    if truth is not None:
        columns += [f"true_{n}" for n in labels]
    columns += [f"prob_{n}" for n in labels]
    if thresholds is not None:
        columns += [f"pred_{n}" for n in labels]
    if skipped:
        columns.append("error")
    out = []
    for i, (image, row) in enumerate(zip(paths, rows, strict=True)):
        record: dict[str, Any] = {"image": image, "row": row}
        for j, name in enumerate(labels):
            if truth is not None:
                record[f"true_{name}"] = int(truth[i, j])
            record[f"prob_{name}"] = float(probs[i, j])
            if thresholds is not None:
                record[f"pred_{name}"] = int(probs[i, j] >= thresholds[j])
        out.append(record)
    out += [{"image": s["path"], "row": s["row"], "error": s["error"]} for s in skipped]
    write_csv(path, out, columns)


def save_figure(path: str | Path, figure: Any, dpi: int = 110) -> Path:
    """Save a matplotlib figure as PNG atomically."""
    path = Path(path)
    with atomic_write(path, "wb") as f:
        figure.savefig(f, format="png", dpi=dpi, bbox_inches="tight")
    return path


def save_config(run_dir: str | Path, config: Mapping[str, Any]) -> Path:
    """Write the resolved settings as ``config.json`` in the run folder."""
    path = Path(run_dir) / "config.json"
    write_json(path, config)
    return path
