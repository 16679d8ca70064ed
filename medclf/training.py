"""The training loop: manifest -> data -> model -> epochs of train + validate -> checkpoints and logs.

Read :func:`train` top to bottom; each step is a call into the module that owns that concern.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import math
import signal
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from medclf import __version__
from medclf.augment import AffineFlip
from medclf.checkpoint import check_compatible, load_checkpoint, resolve_checkpoint_path, save_checkpoint
from medclf.config import TrainConfig, settings_dict
from medclf.data import EpochBatchSampler, build_dataset, cached_errors, make_loader, scan_errors
from medclf.distributed import (
    World,
    any_rank,
    barrier,
    broadcast,
    close_world,
    gather_inference,
    init_world,
    shard_eval,
    shard_records,
    sum_over_ranks,
    sync_buffers,
)
from medclf.engine import EpochProgress, amp_settings, infer, resolve_device, train_one_epoch
from medclf.errors import ConfigError, ImageError
from medclf.manifest import Manifest
from medclf.metrics import classification_metrics, youden_thresholds
from medclf.models import build_model, count_parameters, set_backbone_trainable
from medclf.pretrained import load_torchvision_densenet
from medclf.report import RunLogger, default_run_dir, epoch_line, prepare_run_dir, save_config
from medclf.seeding import generator, restore_rng_states, rng_states, seed_everything
from medclf.transforms import preprocessing

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


def train(config: TrainConfig | None = None, **overrides: Any) -> TrainResult:
    """Train and validate a classifier; see :class:`~medclf.config.TrainConfig` for the settings.

    Under ``torchrun`` every process calls this; they train one DistributedDataParallel model and only
    rank 0 writes files (see :mod:`medclf.distributed`).

    Args:
        config: Settings; keyword arguments override its fields (or build it when it is None).

    Returns:
        A :class:`TrainResult`. Checkpoints, ``config.json``, ``metrics.csv`` and TensorBoard events are
        in ``run_dir``.

    Raises:
        MedclfError: for bad manifests, images, settings or checkpoints, with a message naming them.
    """
    config = dataclasses.replace(config, **overrides) if config else TrainConfig(**overrides)
    if not config.csv:
        raise ConfigError("a manifest is required (TrainConfig.csv / --csv)")
    world, device_name = init_world(config.device)
    try:
        return _train(config, world, resolve_device(device_name))
    finally:
        close_world(world)


def _train(config: TrainConfig, world: World, device: torch.device) -> TrainResult:
    # Run folder and resumed state.
    resumed = load_checkpoint(config.resume) if config.resume else None
    if resumed:
        check_compatible(resumed, labels=config.labels, image_size=config.image_size, model_name=config.model)
    out = config.out or (str(resolve_checkpoint_path(config.resume).parent) if resumed else str(default_run_dir()))
    run_dir = Path(broadcast(out, world))  # ranks must agree on a timestamped default
    if world.main:
        prepare_run_dir(run_dir, resuming=resumed is not None)
    barrier(world)
    config = dataclasses.replace(config, out=str(run_dir), cache_dir=config.cache_dir or str(run_dir / "cache"))
    seed_everything(config.seed, config.deterministic)
    if not world.main:
        logging.getLogger("medclf").setLevel(logging.WARNING)  # one rank reports
    show_progress = config.progress and world.main

    # Data: manifest -> this rank's cached, preprocessed samples -> loaders.
    manifest = Manifest.from_csv(config.csv, config.labels, required_splits=("TRAIN", "VALIDATION"))
    _log_label_counts(manifest)
    chain = preprocessing(config.image_size, manifest.labels)
    val_records, val_batches = shard_eval(manifest.records("VALIDATION"), config.batch_size, world)
    records = {"TRAIN": shard_records(manifest.records("TRAIN"), world, config.seed), "VALIDATION": val_records}
    datasets = {
        split: build_dataset(
            part, chain, cache=config.cache, cache_rate=config.cache_rate, cache_dir=config.cache_dir,
            cache_workers=config.cache_workers, cache_key=str(config.image_size), progress=show_progress,
        )
        for split, part in records.items()
    }  # fmt: skip
    reported = _check_unreadable(datasets, config)
    sampler = EpochBatchSampler(len(datasets["TRAIN"]), config.batch_size, config.seed, stream=world.rank)
    loader_args = {"cache": config.cache, "num_workers": config.num_workers, "device": device}
    train_loader = make_loader(datasets["TRAIN"], batch_size=config.batch_size, sampler=sampler, **loader_args)
    val_loader = make_loader(datasets["VALIDATION"], batch_size=config.batch_size, sampler=val_batches, **loader_args)

    # Model, loss, optimisation.
    net = build_model(config.model, len(manifest.labels))
    if config.pretrained and not resumed:  # a resumed run's weights come from its checkpoint
        load_torchvision_densenet(net, config.pretrained)
    channels_last = config.channels_last and device.type == "cuda"
    net = net.to(device, memory_format=torch.channels_last if channels_last else torch.preserve_format)
    pos_weight = _pos_weight(manifest).to(device) if config.pos_weight else None
    criterion = nn.BCEWithLogitsLoss(pos_weight=pos_weight)
    optimizer = build_optimizer(config, net)
    scheduler = build_scheduler(config, optimizer)
    amp_dtype, scaler = amp_settings(device, config.amp)
    augment = AffineFlip() if config.augment else None
    log.info(
        "training %s (%.1fM parameters) on %s%s: %d TRAIN / %d VALIDATION images at %d px, %d labels; run folder %s",
        config.model, count_parameters(net) / 1e6, device, f" x {world.size} processes" if world.distributed else "",
        len(manifest.select("TRAIN")), len(manifest.select("VALIDATION")), config.image_size,
        len(manifest.labels), run_dir,
    )  # fmt: skip

    # State that survives a restart.
    state: dict[str, Any] = {
        "epoch": 0, "partial": None, "best_metric": -math.inf, "best_epoch": 0,
        "epochs_without_improvement": 0, "thresholds": [0.5] * len(manifest.labels), "history": [],
    }  # fmt: skip
    if resumed:
        net.load_state_dict(resumed["model"])
        optimizer.load_state_dict(resumed["optimizer"])
        if scheduler is not None and resumed.get("scheduler"):
            scheduler.load_state_dict(resumed["scheduler"])
        if scaler is not None and resumed.get("scaler"):
            scaler.load_state_dict(resumed["scaler"])
        restore_rng_states(resumed.get("rng", {}))
        state.update({k: resumed[k] for k in state if k in resumed})
        step = f", step {state['partial']['step']}" if state["partial"] else ""
        log.info("resuming epoch %d%s from %s", state["epoch"] + 1, step, resumed["path"])
    logger = None
    if world.main:
        save_config(run_dir, settings_dict(config))
        logger = RunLogger(run_dir, start_epoch=state["epoch"])

    def checkpoint(partial: dict | None = None) -> dict:
        return {
            **state,
            "partial": partial,
            "model": net.state_dict(),
            "model_name": config.model,
            "labels": list(manifest.labels),
            "image_size": config.image_size,
            "in_channels": 1,
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict() if scheduler is not None else None,
            "scaler": scaler.state_dict() if scaler is not None else None,
            "config": settings_dict(config),
            "rng": rng_states(),
            "medclf_version": __version__,
        }

    stopped_early, interrupted_by, trainable, model = _stopped_early(state, config), None, None, net
    with _stop_on_signals() as stop_signal:
        for epoch in range(state["epoch"] + 1, config.epochs + 1):
            if stopped_early:
                break
            started = time.perf_counter()
            # Restored sums are global; only rank 0 carries them, so that summing over ranks stays right.
            partial = state["partial"] if state["partial"] and world.main else {"loss_sum": 0.0, "seen": 0}
            progress = EpochProgress(step=(state["partial"] or {}).get("step", 0), loss_sum=partial["loss_sum"],
                                     seen=partial["seen"])  # fmt: skip
            sampler.set_epoch(epoch, progress.step)
            if trainable != (epoch > config.freeze_backbone_epochs):
                trainable = epoch > config.freeze_backbone_epochs
                set_backbone_trainable(net, trainable)
                model = wrap_model(net, world, device, config.compile)  # DDP must see the trainable set

            def augment_step(images: torch.Tensor, step: int, epoch: int = epoch) -> torch.Tensor:
                return augment(images, generator(config.seed, epoch, step, world.rank))  # type: ignore[misc]

            model.train()
            set_backbone_trainable(net, trainable)
            progress = train_one_epoch(
                model, train_loader, criterion, optimizer, device,
                progress=progress, augment=augment_step if augment else None, scaler=scaler,
                amp_dtype=amp_dtype, channels_last=channels_last, distributed=world.distributed,
                should_stop=lambda: any_rank(stop_signal() is not None, world, device),
                desc=f"epoch {epoch}/{config.epochs} train", show_progress=show_progress, total=len(sampler),
            )  # fmt: skip
            progress.loss_sum, progress.seen = sum_over_ranks([progress.loss_sum, progress.seen], world, device)
            _warn_skipped(progress.skipped, "TRAIN", reported)
            if progress.interrupted:
                interrupted_by = stop_signal() or "a signal on another rank"
                if world.main:
                    partial = {"step": progress.step, "loss_sum": progress.loss_sum, "seen": int(progress.seen)}
                    save_checkpoint(run_dir / "last.pt", checkpoint(partial))
                log.warning(
                    "stopped by %s in epoch %d after step %d; saved %s. "
                    "Resume with: python -m medclf.train --resume %s",
                    interrupted_by, epoch, progress.step, run_dir / "last.pt", run_dir,
                )  # fmt: skip
                break

            sync_buffers(net, world)
            result = gather_inference(
                # the bare network: DDP's forward would wait for ranks that have fewer validation batches
                infer(net, val_loader, device, criterion=criterion, amp_dtype=amp_dtype, channels_last=channels_last,
                      desc=f"epoch {epoch}/{config.epochs} val", show_progress=show_progress),
                world,
            )  # fmt: skip
            _warn_skipped(result.skipped, "VALIDATION", reported)
            metrics = classification_metrics(result.probs, result.targets, manifest.labels)
            score = metrics["macro_auroc"] if metrics["macro_auroc"] is not None else -math.inf
            improved = score > state["best_metric"] or state["best_epoch"] == 0
            lr = optimizer.param_groups[0]["lr"]
            if isinstance(scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
                scheduler.step(score)
            elif scheduler is not None:
                scheduler.step()
            thresholds = youden_thresholds(result.probs, result.targets)
            if improved:
                state.update(best_metric=score, best_epoch=epoch, epochs_without_improvement=0, thresholds=thresholds)
            else:
                state["epochs_without_improvement"] += 1
            row = {
                "epoch": epoch,
                "train_loss": progress.loss,
                "val_loss": result.loss,
                "val_auroc": metrics["macro_auroc"],
                "val_acc": metrics["accuracy"],
                "labels_averaged": metrics["labels_averaged"],
                "lr": lr,
                "best_auroc": state["best_metric"] if math.isfinite(state["best_metric"]) else None,
                "best_epoch": state["best_epoch"],
                **{f"auroc_{name}": value for name, value in metrics["auroc"].items()},
            }
            state["history"].append(row)
            state.update(epoch=epoch, partial=None)
            seconds = time.perf_counter() - started
            if logger is not None:
                logger.log_epoch(row, state["history"], seconds)
                if config.figure_every and epoch % config.figure_every == 0:
                    _log_figures(logger, epoch, result.probs, result.targets, manifest.labels, thresholds)
                if improved:
                    save_checkpoint(run_dir / "best.pt", checkpoint())
                save_checkpoint(run_dir / "last.pt", checkpoint())
            log.info(epoch_line(row, config.epochs, len(manifest.labels), seconds))
            stopped_early = _stopped_early(state, config)
            if stopped_early:
                log.info(
                    "early stopping: no val AUROC gain for %d epochs (best %.4f at epoch %d)",
                    state["epochs_without_improvement"], state["best_metric"], state["best_epoch"],
                )  # fmt: skip
            if any_rank(stop_signal() is not None, world, device):
                interrupted_by = stop_signal() or "a signal on another rank"
                log.warning("stopped by %s after epoch %d; resume with --resume %s", interrupted_by, epoch, run_dir)
                break
    if logger is not None:
        logger.close()
    barrier(world)  # rank 0's files are complete before any rank returns
    best = state["best_metric"]
    return TrainResult(
        run_dir=str(run_dir),
        best_checkpoint=str(run_dir / "best.pt"),
        last_checkpoint=str(run_dir / "last.pt"),
        best_epoch=state["best_epoch"],
        best_auroc=best if math.isfinite(best) else None,
        epochs_completed=state["epoch"],
        stopped_early=stopped_early,
        interrupted_by=interrupted_by,
        history=list(state["history"]),
    )


def wrap_model(net: nn.Module, world: World, device: torch.device, compile_model: bool) -> nn.Module:
    """DistributedDataParallel under torchrun, then ``torch.compile`` if asked."""
    model = net
    if world.distributed:
        ids = [device.index] if device.type == "cuda" else None
        model = nn.parallel.DistributedDataParallel(net, device_ids=ids)
    if compile_model:
        model = torch.compile(model)
    return model


def _log_figures(
    logger: RunLogger, epoch: int, probs: torch.Tensor, targets: torch.Tensor, labels: Any, thresholds: list[float]
) -> None:
    """Validation ROC curves and confusion matrices (at this epoch's Youden thresholds) for TensorBoard."""
    from medclf.figures import confusion_figure, roc_figure

    p, t = probs.double().cpu().numpy(), targets.cpu().numpy()
    logger.add_figure("val/roc_curves", roc_figure(p, t, labels), epoch)
    logger.add_figure("val/confusion_matrices", confusion_figure(p, t, labels, thresholds), epoch)


def build_optimizer(config: TrainConfig, model: nn.Module) -> torch.optim.Optimizer:
    """Adam (default), AdamW or SGD with Nesterov momentum over all parameters."""
    params = model.parameters()
    if config.optimizer == "adam":
        return torch.optim.Adam(params, lr=config.lr, weight_decay=config.weight_decay)
    if config.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)
    return torch.optim.SGD(
        params, lr=config.lr, momentum=config.momentum, nesterov=True, weight_decay=config.weight_decay
    )


def build_scheduler(config: TrainConfig, optimizer: torch.optim.Optimizer) -> Any:
    """ReduceLROnPlateau on val AUROC (default), cosine annealing over the epochs, or None."""
    if config.scheduler == "plateau":
        return torch.optim.lr_scheduler.ReduceLROnPlateau(
            optimizer, mode="max", factor=config.plateau_factor, patience=config.plateau_patience
        )
    if config.scheduler == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=config.epochs)
    return None


def _stopped_early(state: dict, config: TrainConfig) -> bool:
    patience = config.early_stopping_patience
    return patience > 0 and state["epochs_without_improvement"] >= patience


def _pos_weight(manifest: Manifest) -> torch.Tensor:
    """negatives / positives per label on TRAIN (1 for a label without positives)."""
    matrix = torch.as_tensor(manifest.label_matrix("TRAIN"), dtype=torch.float64)
    positives = matrix.sum(0)
    negatives = matrix.shape[0] - positives
    return torch.where(positives > 0, negatives / positives.clamp(min=1), torch.ones_like(positives)).float()


def _log_label_counts(manifest: Manifest) -> None:
    for split in ("TRAIN", "VALIDATION"):
        n = len(manifest.select(split))
        counts = manifest.positives(split)
        one_class = [name for name, c in counts.items() if c in (0, n)]
        if one_class:
            log.warning(
                "%s: %s %s only one class; %s",
                split, ", ".join(one_class), "has" if len(one_class) == 1 else "have",
                "its AUROC is undefined and left out of the macro mean" if split == "VALIDATION"
                else "the model cannot learn it from this split",
            )  # fmt: skip


def _check_unreadable(datasets: dict, config: TrainConfig) -> set[str]:
    """With --check-images stop on any unreadable image; otherwise report those found while caching.

    Returns the paths reported, so that epochs do not report them again.
    """
    found = []
    for split, dataset in datasets.items():
        errors = scan_errors(dataset, config.progress) if config.check_images else cached_errors(dataset)
        found += [(split, e) for e in errors]
        if errors and len(errors) == len(dataset):
            raise ImageError(
                f"none of the {len(dataset)} {split} images could be read; first error: "
                f"{errors[0]['path']} (row {errors[0]['row']}): {errors[0]['error']}"
            )
    if not found:
        return set()
    lines = [f"{e['path']} (row {e['row']}, {split}): {e['error']}" for split, e in found]
    if config.check_images:
        raise ImageError(f"{len(found)} unreadable image(s) in {config.csv}:\n  " + "\n  ".join(lines))
    more = f"\n  ... and {len(lines) - 20} more" if len(lines) > 20 else ""
    log.warning("skipping %d unreadable image(s):\n  %s%s", len(found), "\n  ".join(lines[:20]), more)
    return {e["path"] for _, e in found}


def _warn_skipped(skipped: list[dict], split: str, reported: set[str]) -> None:
    """Warn once per image about images that failed to decode during an epoch (uncached data)."""
    new = [s for s in skipped if s["path"] not in reported]
    reported.update(s["path"] for s in new)
    if new:
        log.warning("%s: skipped %d unreadable image(s), e.g. %s: %s", split, len(new), new[0]["path"], new[0]["error"])


@contextlib.contextmanager
def _stop_on_signals() -> Iterator[Callable[[], str | None]]:
    """Turn the first SIGINT/SIGTERM into a request to stop after the current step; a second aborts."""
    received: list[str] = []
    if threading.current_thread() is not threading.main_thread():
        yield lambda: None  # signal handlers can only be installed from the main thread
        return

    def handler(signum: int, frame: Any) -> None:
        if received:
            raise KeyboardInterrupt
        received.append(signal.Signals(signum).name)
        log.warning("%s received: finishing the current step, then saving last.pt (send again to abort)", received[0])

    previous = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield lambda: received[0] if received else None
    finally:
        for s, h in previous.items():
            signal.signal(s, h)


__all__ = ["TrainResult", "build_optimizer", "build_scheduler", "train"]
