"""A training run's working objects (:class:`Run`), its restartable state (:class:`TrainState`) and
the set-up that builds both: run folder, resumed checkpoint, data, model and optimisation.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from medclf import __version__
from medclf.config import TrainConfig, settings_dict
from medclf.config.recipes import departures
from medclf.data.checks import check_batches, check_patient_overlap, check_unreadable, log_label_counts
from medclf.data.folds import study_manifest
from medclf.data.loaders import EpochBatchSampler, build_dataset, make_loader
from medclf.data.manifest import Manifest
from medclf.data.sources import read_manifests
from medclf.data.transforms import preprocessing
from medclf.engine.device import amp_settings
from medclf.engine.distributed import (
    World,
    barrier,
    broadcast,
    shard_eval,
    shard_records,
)
from medclf.engine.ema import WeightEMA
from medclf.engine.loss import MaskedBCEWithLogitsLoss
from medclf.engine.optim import build_optimizer, build_scheduler, pos_weight
from medclf.engine.seeding import restore_rng_states, rng_states, seed_everything
from medclf.errors import ConfigError
from medclf.model.checkpoint import (
    Checkpoint,
    TrainState,
    check_compatible,
    load_checkpoint,
    resolve_checkpoint_path,
)
from medclf.model.input_convention import centre_crop, convention_of
from medclf.model.networks import add_feature_dropout, build_model, count_parameters
from medclf.model.registry import architecture
from medclf.model.starting_weights import Start, initialise, resolve_start, run_convention
from medclf.reporting.mlflow_log import open_tracker
from medclf.reporting.provenance import provenance
from medclf.reporting.run_lock import RunLock
from medclf.reporting.run_log import RunLogger, claim_run_dir, default_run_dir, save_config, save_label_counts

log = logging.getLogger(__name__)


@dataclass
class Run:
    """The objects a training run works with, built once by :func:`_set_up`."""

    config: TrainConfig
    world: World
    device: torch.device
    run_dir: Path
    manifest: Manifest
    sampler: EpochBatchSampler
    train_loader: Any
    val_loader: Any
    net: nn.Module
    criterion: nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: Any
    scaler: torch.amp.GradScaler | None
    amp_dtype: torch.dtype | None
    channels_last: bool
    reported: set[str]
    logger: RunLogger | None = None
    model: nn.Module | None = None  # net, wrapped for DDP / torch.compile
    trainable: bool | None = None
    lock: RunLock | None = None  # rank 0's lock on run_dir, held until train() ends
    provenance: dict[str, Any] = dataclasses.field(default_factory=dict)
    selected_by: str = "val_auroc"  # what picks best.pt and drives early stopping: see model_selection()
    probe: Any = None  # --linear-probe: the cached features (engine.probe.ProbeFeatures), from the first epoch
    tracker: Any = None  # --mlflow: rank 0's reporting.mlflow_log.Tracker
    ema: WeightEMA | None = None  # --ema-decay: the weight average, validated and saved as the model
    val_criterion: nn.Module | None = None  # the validation loss (no label smoothing)

    @property
    def evaluated_net(self) -> nn.Module:
        """The network that is validated and saved as ``model``: the weight average with --ema-decay."""
        return self.ema.module if self.ema is not None else self.net

    @property
    def show_progress(self) -> bool:
        """Progress bars on the reporting rank only."""
        return self.config.progress and self.world.main

    def checkpoint(self, state: TrainState, partial: dict | None = None, *, resumable: bool = True) -> Checkpoint:
        """The checkpoint of this run in ``state`` (``partial``: progress inside the next epoch).

        ``resumable=False`` (``best.pt``) leaves out the optimiser, schedule, scaler and random states: what
        inference and export need stays, at about a third of the size (``last.pt`` keeps them for ``--resume``).
        """
        full = Checkpoint(
            **{**state.as_fields(), "partial": partial},
            model=self.evaluated_net.state_dict(),
            ema=self.ema.train_state(self.net) if self.ema is not None else None,
            model_name=self.config.model,
            labels=list(self.manifest.labels),
            image_size=self.config.image_size,
            in_channels=1,
            optimizer=self.optimizer.state_dict(),
            scheduler=self.scheduler.state_dict() if self.scheduler is not None else None,
            scaler=self.scaler.state_dict() if self.scaler is not None else None,
            config=settings_dict(self.config),
            rng=rng_states(),
            medclf_version=__version__,
            provenance=self.provenance,
            input=convention_of(self.net),
        )
        if resumable:
            return full
        return dataclasses.replace(full, optimizer=None, scheduler=None, scaler=None, rng={}, ema=None)


def set_up(config: TrainConfig, world: World, device: torch.device) -> tuple[Run, TrainState]:
    """Run folder, resumed state, data, model and optimisation, in the order that keeps runs repeatable."""
    architecture(config.model)  # an unknown --model, or --pretrained for it without a loader, is refused
    if world.main:
        _note_recipe_departures(config)
    if config.linear_probe and world.distributed:
        raise ConfigError(
            "--linear-probe runs in one process (its epochs are matrix products); run it without torchrun"
        )
    # Starting weights are found and checked before a run folder is claimed; a resumed run's come from its checkpoint.
    start = None if config.resume else resolve_start(config.model, config.pretrained, config.init_from)
    resumed = load_checkpoint(config.resume) if config.resume else None
    if resumed:
        check_compatible(resumed, labels=config.labels, image_size=config.image_size, model_name=config.model)
    out = config.out or (str(resolve_checkpoint_path(config.resume).parent) if resumed else str(default_run_dir()))
    run_dir = Path(broadcast(out, world))  # ranks must agree on a timestamped default
    folder = claim_run_dir(run_dir, Path(resumed.path).parent if resumed else None) if world.main else None
    barrier(world)
    try:
        config = _absolute_paths(config, run_dir)
        seed_everything(config.seed, config.deterministic)
        if not world.main:
            logging.getLogger("medclf").setLevel(logging.WARNING)  # one rank reports
        run = _build(config, world, device, run_dir, resumed, start)
        run.lock = folder.lock if folder else None
        state = TrainState(thresholds=[0.5] * len(run.manifest.labels))
        if resumed:
            state = _restore(run, resumed)
        if world.main:
            run.provenance = provenance(config.csv, device=device)
            record = {"provenance": run.provenance, "model_selection": run.selected_by}
            save_config(run_dir, {**settings_dict(config), **record})
            run.logger = RunLogger(run_dir, start_epoch=state.epoch)
            run.tracker = open_tracker(config.mlflow, run_dir.name, settings_dict(config), run_dir=str(run_dir))
    except BaseException:
        if folder is not None:
            folder.abandon()  # unlock; a folder this start created is removed, so no empty run is left behind
        raise
    return run, state


def _note_recipe_departures(config: TrainConfig) -> None:
    """Say which of the named recipe's settings this run does not use, so config.json is never misread."""
    given = departures(dataclasses.asdict(config))
    if given:
        log.warning(
            "--recipe %s: this run keeps %s instead of the recipe's %s",
            config.recipe,
            ", ".join(f"{name}={value!r}" for name, (value, _) in given.items()),
            ", ".join(f"{name}={value!r}" for name, (_, value) in given.items()),
        )


def _absolute_paths(config: TrainConfig, run_dir: Path) -> TrainConfig:
    """Settings with absolute paths, so that the saved config and a later --resume work from any folder."""

    def absolute(path: str) -> str:
        return os.path.abspath(path) if path else path

    return dataclasses.replace(
        config, csv=[absolute(p) for p in config.csv], out=absolute(str(run_dir)),
        pretrained=absolute(config.pretrained) if Path(config.pretrained).is_file() else config.pretrained,
        init_from=absolute(config.init_from), resume=absolute(config.resume), folds_csv=absolute(config.folds_csv),
        cache_dir=absolute(config.cache_dir or str(run_dir / "cache")),
    )  # fmt: skip


def _build(
    config: TrainConfig,
    world: World,
    device: torch.device,
    run_dir: Path,
    resumed: Checkpoint | None,
    start: Start | None,
) -> Run:
    """Data (manifest -> this rank's cached samples -> loaders), then the model, loss and optimiser."""
    show_progress = config.progress and world.main
    manifest = read_manifests(config.csv, config.labels, required_splits=("TRAIN", "VALIDATION"))
    manifest = study_manifest(manifest, config.folds_csv, config.fold, config.train_fraction, config.patient_column,
                              config.seed, config.uncertain)  # fmt: skip
    check_patient_overlap(
        manifest, config.patient_column, config.allow_patient_overlap, shared_ids=config.shared_patient_ids
    )
    log_label_counts(manifest, config.uncertain)
    if world.main:
        save_label_counts(run_dir, manifest.positives())
    crop = centre_crop(run_convention(start, resumed))
    chain, cache_key = preprocessing(config.image_size, manifest.labels, crop=crop), f"{config.image_size}{'c' * crop}"
    val_records, val_batches = shard_eval(manifest.records("VALIDATION", config.uncertain), config.batch_size, world)
    train_records = manifest.records("TRAIN", config.uncertain)
    records = {"TRAIN": shard_records(train_records, world, config.seed), "VALIDATION": val_records}
    check_batches(len(records["TRAIN"]), config.batch_size, world.size)  # before any image is decoded
    datasets = {
        split: build_dataset(
            part, chain, cache=config.cache, cache_rate=config.cache_rate, cache_dir=config.cache_dir,
            cache_workers=config.cache_workers, cache_key=cache_key, progress=show_progress,
        )
        for split, part in records.items()
    }  # fmt: skip
    reported = check_unreadable(datasets, config)
    sampler = EpochBatchSampler(len(datasets["TRAIN"]), config.batch_size, config.seed, stream=world.rank)
    loader_args = {"cache": config.cache, "num_workers": config.num_workers, "device": device}
    train_loader = make_loader(datasets["TRAIN"], batch_size=config.batch_size, sampler=sampler, **loader_args)
    val_loader = make_loader(datasets["VALIDATION"], batch_size=config.batch_size, sampler=val_batches, **loader_args)

    net = build_model(config.model, len(manifest.labels))
    initialise(net, start, resumed, manifest.labels, config.image_size)
    add_feature_dropout(net, config.dropout)
    channels_last = config.channels_last and device.type == "cuda"
    net = net.to(device, memory_format=torch.channels_last if channels_last else torch.preserve_format)
    weights = pos_weight(manifest.targets("TRAIN", config.uncertain)).to(device) if config.pos_weight else None
    optimizer = build_optimizer(config, net)
    amp_dtype, scaler = amp_settings(device, config.amp)
    log.info(
        "training %s (%.1fM parameters) on %s%s: %d TRAIN / %d VALIDATION images at %d px, %d labels; run folder %s",
        config.model, count_parameters(net) / 1e6, device, f" x {world.size} processes" if world.distributed else "",
        len(manifest.select("TRAIN")), len(manifest.select("VALIDATION")), config.image_size,
        len(manifest.labels), run_dir,
    )  # fmt: skip
    return Run(
        config=config, world=world, device=device, run_dir=run_dir, manifest=manifest, sampler=sampler,
        train_loader=train_loader, val_loader=val_loader, net=net,
        criterion=MaskedBCEWithLogitsLoss(weights, config.label_smoothing),
        val_criterion=MaskedBCEWithLogitsLoss(weights),
        ema=WeightEMA(net, config.ema_decay) if config.ema_decay else None,
        optimizer=optimizer, scheduler=build_scheduler(config, optimizer), scaler=scaler, amp_dtype=amp_dtype,
        channels_last=channels_last, reported=reported, selected_by=model_selection(manifest, config.uncertain),
    )  # fmt: skip


def model_selection(manifest: Manifest, uncertain: str = "ignore") -> str:
    """``"val_auroc"`` when some label has both classes in VALIDATION; else ``"val_loss"``, said in the log.

    Without any defined AUROC the macro is undefined at every epoch, so best.pt, early stopping and the
    plateau schedule follow the validation loss instead of keeping epoch 1 blindly.
    """
    targets = manifest.targets("VALIDATION", uncertain)
    if ((targets == 1).any(axis=0) & (targets == 0).any(axis=0)).any():
        return "val_auroc"
    log.warning(
        "no label has both positives and negatives in VALIDATION: val_auroc is undefined, so best.pt is the "
        "epoch with the lowest val_loss, and early stopping (and --scheduler plateau) follow val_loss"
    )
    return "val_loss"


def _restore(run: Run, resumed: Checkpoint) -> TrainState:
    """Weights, optimiser, schedule, scaler and random states of a resumed run; returns its state."""
    if run.ema is not None:
        run.ema.restore(run.net, resumed.model, resumed.ema)
    else:
        run.net.load_state_dict(resumed.ema["train_weights"] if resumed.ema else resumed.model)
    if resumed.optimizer:
        run.optimizer.load_state_dict(resumed.optimizer)
    else:  # best.pt (weights only, see Run.checkpoint): its weights, with the optimiser and schedule new
        log.warning("%s holds no optimiser, schedule or random states (a best.pt): resuming from its weights with "
                    "a fresh optimiser and schedule, seeded from --seed", resumed.path)  # fmt: skip
    if run.scheduler is not None and resumed.scheduler:
        run.scheduler.load_state_dict(resumed.scheduler)
    if run.scaler is not None and resumed.scaler:
        run.scaler.load_state_dict(resumed.scaler)
    restore_rng_states(resumed.rng)
    state = TrainState.from_checkpoint(resumed)
    step = f", step {state.partial['step']}" if state.partial else ""
    log.info("resuming epoch %d%s from %s", state.epoch + 1, step, resumed.path)
    if Path(run.config.resume).is_dir() and Path(resumed.path).name == "best.pt":
        log.warning("%s holds no readable last.pt: continuing from best.pt (epoch %d); the epochs after epoch %d "
                    "are trained again", run.config.resume, state.epoch, state.epoch)  # fmt: skip
    return state
