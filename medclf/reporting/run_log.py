"""The run folder of a training run: its creation and lock, ``config.json``, ``metrics.csv`` and TensorBoard."""

from __future__ import annotations

import datetime as dt
import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from medclf.errors import ConfigError
from medclf.reporting.files import make_folder, remove_created, write_csv, write_json
from medclf.reporting.run_lock import RUN_MARKERS, RunLock, acquire_run_lock

log = logging.getLogger(__name__)


def default_run_dir(root: str | Path = "runs") -> Path:
    """``runs/<YYYYmmdd-HHMMSS>``."""
    return Path(root) / dt.datetime.now().strftime("%Y%m%d-%H%M%S")


@dataclass
class RunFolder:
    """A run folder claimed by :func:`claim_run_dir`: its path, its lock, and what this call created."""

    path: Path
    lock: RunLock
    created: Path | None = None

    def abandon(self) -> None:
        """After a failed start: release the lock and remove the folder if :func:`claim_run_dir` created it."""
        self.lock.release()
        remove_created(self.created)


def claim_run_dir(out: str | Path, resume_from: str | Path | None = None) -> RunFolder:
    """Create (if needed) and lock the run folder ``out``, then check that it holds no other run.

    Args:
        out: The run folder.
        resume_from: The folder of the resumed checkpoint, when resuming; ``out`` may hold that run only.

    Raises:
        RunLockedError: another medclf process holds the folder (the message names it).
        ConfigError: ``out`` is a file, or holds a run that this call would overwrite.
        StorageError: ``out`` cannot be created.
    """
    path = Path(out)
    created = make_folder(path, what="the run folder")
    folder = RunFolder(path, RunLock(path), created)
    try:
        folder.lock = acquire_run_lock(path)
        _check_no_other_run(path, resume_from)  # under the lock: no other process can start a run meanwhile
    except BaseException:
        folder.abandon()
        raise
    return folder


def _check_no_other_run(path: Path, resume_from: str | Path | None) -> None:
    """ConfigError when ``path`` holds a run (:data:`RUN_MARKERS`) other than ``resume_from``'s."""
    found = [m for m in RUN_MARKERS if (path / m).exists()] if path.is_dir() else []
    if not found:
        return  # config.json, the cache, the lock, events of a run stopped before its first checkpoint: start
    if resume_from is None:
        raise ConfigError(
            f"{path} already holds a run ({', '.join(found)}); resume it with --resume {path} or choose another --out"
        )
    if not _same_folder(path, Path(resume_from)):
        raise ConfigError(
            f"{path} already holds another run ({', '.join(found)}); resuming {resume_from} there would overwrite "
            f"it. Leave out --out to continue in {resume_from}, or choose a folder without a run"
        )


def _same_folder(a: Path, b: Path) -> bool:
    try:
        return a.samefile(b)
    except OSError:
        return a.resolve() == b.resolve()


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

    def log_figures(
        self, epoch: int, probs: Any, targets: Any, labels: Sequence[str], thresholds: Sequence[float]
    ) -> None:
        """Validation ROC curves and confusion matrices (at this epoch's Youden thresholds)."""
        from medclf.metrics.curves import confusion_counts
        from medclf.reporting.figures import confusion_figure, roc_figure  # matplotlib only when used

        p, t = probs.double().cpu().numpy(), targets.cpu().numpy()
        self.add_figure("val/roc_curves", roc_figure(p, t, labels), epoch)
        counts = confusion_counts(p, t, thresholds)
        self.add_figure("val/confusion_matrices", confusion_figure(counts, labels, thresholds), epoch)

    def close(self) -> None:
        """Flush and close the event file."""
        self.writer.close()


def save_config(run_dir: str | Path, config: Mapping[str, Any]) -> Path:
    """Write the resolved settings as ``config.json`` in the run folder."""
    path = Path(run_dir) / "config.json"
    write_json(path, config)
    return path


def save_label_counts(run_dir: str | Path, counts: Any) -> Path:
    """Write the manifest's label counts (:meth:`Manifest.positives`) as ``label_counts.csv``."""
    path = Path(run_dir) / "label_counts.csv"
    write_csv(path, counts.to_dict("records"))
    return path
