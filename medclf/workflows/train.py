"""The ``train`` workflow: manifest -> data -> model -> epochs of train + validate -> checkpoints and logs.

Read :func:`train` top to bottom: set-up (:func:`~medclf.workflows.run_state.set_up`), then a loop
of :func:`train_one_epoch` / :func:`evaluate_epoch` / :func:`end_of_epoch`. What survives a restart is
a :class:`~medclf.workflows.run_state.TrainState`, which becomes a
:class:`~medclf.model.checkpoint.Checkpoint` and comes back from one.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from medclf.config import TrainConfig
from medclf.config.recipes import with_recipe
from medclf.data.augment import training_augment
from medclf.data.checks import warn_skipped
from medclf.data.loaders import make_loader
from medclf.data.seeds import generator
from medclf.engine import loops
from medclf.engine.device import resolve_device
from medclf.engine.distributed import (
    any_rank,
    barrier,
    close_world,
    gather_inference,
    init_world,
    joined,
    sum_over_ranks,
    sync_buffers,
)
from medclf.engine.loops import EpochProgress, Inference, check_finite, infer
from medclf.engine.optim import wrap_model
from medclf.engine.probe import cache_features, probe_epoch, probe_infer
from medclf.engine.signals import stop_on_signals
from medclf.errors import ConfigError, StorageError
from medclf.metrics.auroc import classification_metrics, youden_thresholds
from medclf.metrics.calibration import fit_temperatures
from medclf.model.checkpoint import (
    TrainState,
    holds_checkpoint,
    load_checkpoint,
    resolve_checkpoint_path,
    save_checkpoint,
)
from medclf.model.networks import set_backbone_trainable
from medclf.reporting.mlflow_log import RUN_FILES
from medclf.reporting.tables import epoch_line
from medclf.workflows.run_state import Run, set_up

log = logging.getLogger(__name__)


@dataclass
class TrainResult:
    """What :func:`train` returns; plain values only."""

    run_dir: str
    best_checkpoint: str
    last_checkpoint: str
    best_epoch: int
    best_auroc: float | None
    epochs_completed: int
    stopped_early: bool = False
    interrupted_by: str | None = None
    history: list[dict] = field(default_factory=list)
    selected_by: str = "val_auroc"  # or "val_loss" when no label has both classes in VALIDATION


def train(config: TrainConfig | None = None, **overrides: Any) -> TrainResult:
    """Train and validate a classifier; see :class:`~medclf.config.TrainConfig` for the settings.

    Under ``torchrun`` every process calls this; they train one DistributedDataParallel model and only
    rank 0 writes files (see :mod:`medclf.engine.distributed`).

    Args:
        config: Settings; keyword arguments override its fields (or build it when it is None).

    Returns:
        A :class:`TrainResult`. Checkpoints, ``config.json``, ``metrics.csv`` and TensorBoard events are
        in ``run_dir``.

    Raises:
        MedclfError: for bad manifests, images, settings or checkpoints, with a message naming them.
    """
    config = dataclasses.replace(config, **overrides) if config else TrainConfig(**with_recipe(overrides))
    if not config.csv:
        raise ConfigError("a manifest is required (TrainConfig.csv / --csv)")
    finished = _finished_run(config) if config.resume else None
    if finished is not None:
        return finished
    owned = not joined()  # a study that joined the process group keeps it across its folds
    world, device_name = init_world(config.device)
    run = None
    try:
        run, state = set_up(config, world, resolve_device(device_name))
        try:
            result = _epochs(run, state)
        except StorageError as e:
            raise StorageError(f"{e}. {_how_to_go_on(run.run_dir)}") from None
        _track_end(run, result)
        return result
    finally:
        if run is not None and run.tracker is not None:
            run.tracker.end("FAILED")  # only when _track_end did not run
        if run is not None and run.lock is not None:
            run.lock.release()  # the run folder is free for a resume or another run
        if owned:
            close_world(world)


def _track_end(run: Run, result: TrainResult) -> None:
    """MLflow (``--mlflow``): the final numbers, the run folder's files, and the run's end."""
    if run.tracker is None:
        return
    run.tracker.log_metrics({"best_auroc": result.best_auroc, "best_epoch": result.best_epoch,
                             "epochs_completed": result.epochs_completed})  # fmt: skip
    run.tracker.log_files(run.run_dir / name for name in RUN_FILES)
    run.tracker.end("KILLED" if result.interrupted_by else "FINISHED")


def _how_to_go_on(run_dir: Path) -> str:
    """After a failed write: free space, then resume from the checkpoint kept (or start again if none is)."""
    if holds_checkpoint(run_dir):
        return f"Free some space, then continue with: python -m medclf.train --resume {run_dir}"
    return "Free some space, then run the same command again (no checkpoint was saved, so nothing is lost)"


def _finished_run(config: TrainConfig) -> TrainResult | None:
    """The result of a resumed run that has nothing left to do (all epochs, or stopped early), else None."""
    checkpoint = load_checkpoint(config.resume)
    state = TrainState.from_checkpoint(checkpoint)
    early = state.stopped_early(config.early_stopping_patience)
    if state.partial is not None or (state.epoch < config.epochs and not early):
        return None
    run_dir = resolve_checkpoint_path(config.resume).parent
    why = (f"it stopped early at epoch {state.epoch} after {state.epochs_without_improvement} epochs without "
           "a gain (resume with a larger --early-stopping-patience to go on)" if early
           else f"all {state.epoch} of {config.epochs} epochs are done (resume with a larger --epochs to go on)"
           )  # fmt: skip
    by_loss = _selected_by_loss(state)
    best = f"{abs(state.best_metric):.4f} at epoch {state.best_epoch}" if math.isfinite(state.best_metric) else "n/a"
    log.info("%s is finished: %s; best %s %s. Nothing was trained.", run_dir, why,
             "val_loss" if by_loss else "val macro AUROC", best)  # fmt: skip
    return TrainResult(
        run_dir=str(run_dir), best_checkpoint=str(run_dir / "best.pt"), last_checkpoint=str(run_dir / "last.pt"),
        best_epoch=state.best_epoch, best_auroc=_best_auroc(state, by_loss), epochs_completed=state.epoch,
        stopped_early=early, interrupted_by=None, history=list(state.history),
        selected_by="val_loss" if by_loss else "val_auroc",
    )  # fmt: skip


def _epochs(run: Run, state: TrainState) -> TrainResult:
    """The epoch loop: train, evaluate, bookkeeping, until the last epoch, early stopping or a signal."""
    config, world = run.config, run.world
    stopped_early, interrupted_by = state.stopped_early(config.early_stopping_patience), None
    with stop_on_signals() as stop_signal:
        for epoch in range(state.epoch + 1, config.epochs + 1):
            if stopped_early:
                break
            started = time.perf_counter()
            progress = train_one_epoch(run, state, epoch, stop_signal)
            if progress.interrupted:
                interrupted_by = stop_signal() or "a signal on another rank"
                _save_interrupted(run, state, epoch, progress, interrupted_by)
                break
            result = evaluate_epoch(run, epoch)
            stopped_early = end_of_epoch(run, state, epoch, progress, result, time.perf_counter() - started)
            if any_rank(stop_signal() is not None, world, run.device):
                interrupted_by = stop_signal() or "a signal on another rank"
                log.warning("stopped by %s after epoch %d; resume with --resume %s", interrupted_by, epoch, run.run_dir)
                break
    if run.logger is not None:
        run.logger.close()
    barrier(world)  # rank 0's files are complete before any rank returns
    return TrainResult(
        run_dir=str(run.run_dir),
        best_checkpoint=str(run.run_dir / "best.pt"),
        last_checkpoint=str(run.run_dir / "last.pt"),
        best_epoch=state.best_epoch,
        best_auroc=_best_auroc(state, run.selected_by == "val_loss"),
        epochs_completed=state.epoch,
        stopped_early=stopped_early,
        interrupted_by=interrupted_by,
        history=list(state.history),
        selected_by=run.selected_by,
    )


def train_one_epoch(run: Run, state: TrainState, epoch: int, stop_signal: Callable[[], str | None]) -> EpochProgress:
    """One pass over this rank's TRAIN share (from the saved step when resuming inside the epoch)."""
    config, world = run.config, run.world
    # Restored sums are global; only rank 0 carries them, so that summing over ranks stays right.
    partial = state.partial if state.partial and world.main else {"loss_sum": 0.0, "seen": 0}
    progress = EpochProgress(
        step=(state.partial or {}).get("step", 0), loss_sum=partial["loss_sum"], seen=partial["seen"]
    )
    if config.linear_probe:
        return _probe_epoch(run, epoch)
    run.sampler.set_epoch(epoch, progress.step)
    if run.trainable != (epoch > config.freeze_backbone_epochs):
        run.trainable = epoch > config.freeze_backbone_epochs
        set_backbone_trainable(run.net, run.trainable)
        run.model = wrap_model(run.net, world, run.device, config.compile)  # DDP must see the trainable set
    augment = training_augment(config.augment, config.augment_strength, config.hflip, config.mixup)

    def augment_step(images: torch.Tensor, targets: torch.Tensor, step: int) -> tuple[torch.Tensor, torch.Tensor]:
        return augment(images, targets, generator(config.seed, epoch, step, world.rank))  # type: ignore[misc]

    run.model.train()
    set_backbone_trainable(run.net, run.trainable)
    progress = loops.train_one_epoch(
        run.model, run.train_loader, run.criterion, run.optimizer, run.device,
        progress=progress, augment=augment_step if augment else None, scaler=run.scaler,
        amp_dtype=run.amp_dtype, channels_last=run.channels_last, distributed=world.distributed,
        should_stop=lambda: any_rank(stop_signal() is not None, world, run.device),
        desc=f"epoch {epoch}/{config.epochs} train", show_progress=run.show_progress, total=len(run.sampler),
        after_step=(lambda: run.ema.update(run.net)) if run.ema is not None else None,
    )  # fmt: skip
    progress.loss_sum, progress.seen = sum_over_ranks([progress.loss_sum, progress.seen], world, run.device)
    warn_skipped(progress.skipped, "TRAIN", run.reported)
    return progress


def _probe_epoch(run: Run, epoch: int) -> EpochProgress:
    """A linear-probe epoch: the features are computed at the first one, then only the classifier trains."""
    config = run.config
    if run.probe is None:
        started = time.perf_counter()
        set_backbone_trainable(run.net, False)
        plain = make_loader(run.train_loader.dataset, batch_size=config.batch_size, cache=config.cache,
                            num_workers=config.num_workers, device=run.device)  # fmt: skip
        rows = run.manifest.select("VALIDATION")["csv_row"].to_numpy()
        run.probe = cache_features(run.net, plain, run.val_loader, run.device, rows, amp_dtype=run.amp_dtype,
                                   channels_last=run.channels_last, show_progress=run.show_progress)  # fmt: skip
        log.info("linear probe: features of %d TRAIN and %d VALIDATION images cached in %.1f s",
                 len(run.probe.train.features), len(run.probe.val.features), time.perf_counter() - started)  # fmt: skip
    progress = probe_epoch(run.net, run.probe, run.criterion, run.optimizer, config.batch_size,
                           generator(config.seed, epoch))  # fmt: skip
    warn_skipped(progress.skipped, "TRAIN", run.reported)
    return progress


def evaluate_epoch(run: Run, epoch: int) -> Inference:
    """Validation logits of every rank, in manifest order."""
    if run.config.linear_probe:
        result = probe_infer(run.net, run.probe, run.val_criterion)
        check_finite(result, f"epoch {epoch} validation")
        return result
    sync_buffers(run.net, run.world)
    result = gather_inference(
        # the bare network: DDP's forward would wait for ranks that have fewer validation batches
        infer(run.evaluated_net, run.val_loader, run.device, criterion=run.val_criterion, amp_dtype=run.amp_dtype,
              channels_last=run.channels_last, desc=f"epoch {epoch}/{run.config.epochs} val",
              show_progress=run.show_progress),
        run.world,
    )  # fmt: skip
    warn_skipped(result.skipped, "VALIDATION", run.reported)
    check_finite(result, f"epoch {epoch} validation")  # before any metric, figure or checkpoint
    return result


def end_of_epoch(
    run: Run, state: TrainState, epoch: int, progress: EpochProgress, result: Inference, seconds: float
) -> bool:
    """Metrics, schedule, model selection, logs and checkpoints; returns whether to stop early."""
    config, labels = run.config, run.manifest.labels
    metrics = classification_metrics(result.probs, result.targets, labels)
    by_loss = run.selected_by == "val_loss"
    score = _score(metrics["macro_auroc"], result.loss, by_loss)
    improved = score > state.best_metric or state.best_epoch == 0
    lr = run.optimizer.param_groups[0]["lr"]
    if isinstance(run.scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
        run.scheduler.step(score)
    elif run.scheduler is not None:
        run.scheduler.step()
    thresholds = youden_thresholds(result.probs, result.targets)
    if improved:
        state.best_metric, state.best_epoch, state.epochs_without_improvement = score, epoch, 0
        state.thresholds = thresholds
        state.temperatures = fit_temperatures(result.logits.float().cpu().numpy(), result.targets.cpu().numpy())
    else:
        state.epochs_without_improvement += 1
    row = {
        "epoch": epoch, "train_loss": progress.loss, "val_loss": result.loss, "val_auroc": metrics["macro_auroc"],
        "val_acc": metrics["accuracy"], "labels_averaged": metrics["labels_averaged"], "lr": lr,
        "best_auroc": _best_auroc(state, by_loss), "best_epoch": state.best_epoch,
        **{f"auroc_{name}": value for name, value in metrics["auroc"].items()},
    }  # fmt: skip
    state.history.append(row)
    state.epoch, state.partial = epoch, None
    if run.logger is not None:
        # Checkpoints first: metrics.csv never runs ahead of last.pt, so a resume never repeats a row.
        if improved:
            save_checkpoint(run.run_dir / "best.pt", run.checkpoint(state, resumable=False))
        save_checkpoint(run.run_dir / "last.pt", run.checkpoint(state))
        run.logger.log_epoch(row, state.history, seconds)
        if run.tracker is not None:
            run.tracker.log_metrics({**row, "seconds": seconds}, step=epoch)
        if config.figure_every and epoch % config.figure_every == 0:
            run.logger.log_figures(epoch, result.probs, result.targets, labels, thresholds)
    log.info(epoch_line(row, config.epochs, len(labels), seconds, best_loss=-state.best_metric if by_loss else None))
    if state.stopped_early(config.early_stopping_patience):
        log.info(
            "early stopping: no %s for %d epochs (best %.4f at epoch %d)",
            "val_loss decrease" if by_loss else "val AUROC gain", state.epochs_without_improvement,
            -state.best_metric if by_loss else state.best_metric, state.best_epoch,
        )  # fmt: skip
        return True
    return False


def _score(macro_auroc: float | None, val_loss: float | None, by_loss: bool) -> float:
    """The number best.pt and early stopping maximise: macro AUROC, or minus val_loss when selecting by loss."""
    value = (-val_loss if val_loss is not None else None) if by_loss else macro_auroc
    return value if value is not None and math.isfinite(value) else -math.inf


def _best_auroc(state: TrainState, by_loss: bool) -> float | None:
    """The best macro AUROC so far; None when undefined or when best.pt is selected by val_loss."""
    return state.best_metric if math.isfinite(state.best_metric) and not by_loss else None


def _selected_by_loss(state: TrainState) -> bool:
    """Whether a saved run chose best.pt by val_loss (no epoch had a defined val AUROC)."""
    return bool(state.history) and all(row.get("val_auroc") is None for row in state.history)


def _save_interrupted(run: Run, state: TrainState, epoch: int, progress: EpochProgress, by: str) -> None:
    """Save last.pt with the progress inside ``epoch`` after a stop signal, and say how to resume."""
    if run.world.main:
        partial = {"step": progress.step, "loss_sum": progress.loss_sum, "seen": int(progress.seen)}
        save_checkpoint(run.run_dir / "last.pt", run.checkpoint(state, partial))
    log.warning(
        "stopped by %s in epoch %d after step %d; saved %s. Resume with: python -m medclf.train --resume %s",
        by, epoch, progress.step, run.run_dir / "last.pt", run.run_dir,
    )  # fmt: skip


__all__ = ["TrainResult", "TrainState", "end_of_epoch", "evaluate_epoch", "train", "train_one_epoch"]
