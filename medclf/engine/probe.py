"""Linear probe: the classifier layer trained on cached features of the frozen backbone.

The backbone's features (the classifier layer's input, :mod:`medclf.engine.features`) are computed once,
in eval mode and without augmentation, from whatever weights the network starts with (random,
``--pretrained`` or a medclf checkpoint); each epoch is then a pass of matrix products over them. The
classifier layer is the network's own, so checkpoints hold the whole network and every other command
reads them as any run's.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from medclf.engine.features import Embeddings, classifier_layer, collect_embeddings
from medclf.engine.loops import EpochProgress, Inference


@dataclass
class ProbeFeatures:
    """Cached features and targets of TRAIN and VALIDATION (numpy, CPU)."""

    train: Embeddings
    val: Embeddings
    val_rows: list[int]


def cache_features(
    net: nn.Module,
    train_loader: object,
    val_loader: object,
    device: torch.device,
    val_rows: np.ndarray,
    **options: object,
) -> ProbeFeatures:
    """Features of every TRAIN and VALIDATION image, once (``options``: amp_dtype, channels_last, show_progress).

    ``train_loader`` is a loader in a fixed order without augmentation; ``val_rows`` are the CSV rows of the
    validation records, by their ``index``.
    """
    train = collect_embeddings(net, train_loader, device, thumbnail_size=1, **options)  # type: ignore[arg-type]
    val = collect_embeddings(net, val_loader, device, thumbnail_size=1, **options)  # type: ignore[arg-type]
    return ProbeFeatures(train=train, val=val, val_rows=[int(val_rows[i]) for i in val.indices])


def probe_epoch(
    net: nn.Module,
    cached: ProbeFeatures,
    criterion: nn.Module,
    optimizer: torch.optim.Optimizer,
    batch_size: int,
    generator: torch.Generator,
) -> EpochProgress:
    """One epoch of the classifier layer over the cached TRAIN features, in a seeded order."""
    head = classifier_layer(net)
    device = head.weight.device
    features = torch.from_numpy(cached.train.features).to(device)
    targets = torch.from_numpy(cached.train.targets).to(device)  # type: ignore[arg-type]
    order = torch.randperm(len(features), generator=generator).to(device)
    progress = EpochProgress()
    head.train()
    for start in range(0, len(order), batch_size):
        batch = order[start : start + batch_size]
        optimizer.zero_grad(set_to_none=True)
        loss = criterion(head(features[batch]), targets[batch])
        loss.backward()
        optimizer.step()
        progress.step += 1
        progress.loss_sum += float(loss.detach()) * len(batch)
        progress.seen += len(batch)
    progress.skipped = list(cached.train.skipped)
    return progress


def probe_infer(net: nn.Module, cached: ProbeFeatures, criterion: nn.Module) -> Inference:
    """Validation logits of the classifier layer over the cached VALIDATION features, in manifest order."""
    head = classifier_layer(net)
    device = head.weight.device
    features = torch.from_numpy(cached.val.features).to(device)
    targets = torch.from_numpy(cached.val.targets).to(device)  # type: ignore[arg-type]
    with torch.no_grad():
        logits = head(features)
        loss = float(criterion(logits, targets)) if len(features) else math.nan
    return Inference(
        logits=logits, targets=targets, paths=list(cached.val.paths), rows=list(cached.val_rows),
        indices=torch.from_numpy(cached.val.indices), loss=loss, skipped=list(cached.val.skipped),
    )  # fmt: skip


__all__ = ["ProbeFeatures", "cache_features", "probe_epoch", "probe_infer"]
