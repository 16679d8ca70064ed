"""Optimisers, learning-rate schedules, positive-class weights and model wrappers for training."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
from torch import nn

from medclf.config import TrainConfig
from medclf.engine.distributed import World


def wrap_model(net: nn.Module, world: World, device: torch.device, compile_model: bool) -> nn.Module:
    """DistributedDataParallel under torchrun, then ``torch.compile`` if asked."""
    model = net
    if world.distributed:
        ids = [device.index] if device.type == "cuda" else None
        model = nn.parallel.DistributedDataParallel(net, device_ids=ids)
    if compile_model:
        model = torch.compile(model)
    return model


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
    """ReduceLROnPlateau on val AUROC (default), cosine annealing over the epochs, or None; with
    ``warmup_epochs``, a linear warm-up first (see :func:`lr_factor`)."""
    if config.scheduler == "plateau":
        return torch.optim.lr_scheduler.ReduceLROnPlateau(
            optimizer, mode="max", factor=config.plateau_factor, patience=config.plateau_patience
        )
    if config.warmup_epochs:
        warmup, epochs, cosine = config.warmup_epochs, config.epochs, config.scheduler == "cosine"
        return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda done: lr_factor(done, warmup, epochs, cosine))
    if config.scheduler == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=config.epochs)
    return None


def lr_factor(done: int, warmup: int, epochs: int, cosine: bool) -> float:
    """The LR multiplier of the epoch after ``done`` epochs: ``(done + 1) / (warmup + 1)`` during the warm-up,
    then 1, or a cosine from 1 down to 0 over the remaining epochs (as ``CosineAnnealingLR`` without one)."""
    if done < warmup:
        return (done + 1) / (warmup + 1)
    if not cosine:
        return 1.0
    return 0.5 * (1 + math.cos(math.pi * (done - warmup) / max(1, epochs - warmup)))


def pos_weight(targets: np.ndarray) -> torch.Tensor:
    """negatives / positives per label of (N, L) 0/1/NaN targets, counting labelled entries only (1 for a
    label without positives)."""
    matrix = torch.as_tensor(targets, dtype=torch.float64)
    positives = (matrix == 1).sum(0).double()
    negatives = (matrix == 0).sum(0).double()
    return torch.where(positives > 0, negatives / positives.clamp(min=1), torch.ones_like(positives)).float()
