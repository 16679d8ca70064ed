"""One training epoch and one inference pass, as plain functions (torchvision-reference style)."""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

import torch
from torch import nn
from tqdm.auto import tqdm

from medclf.data.augment import apply_view
from medclf.engine.device import autocast, prepare_batch
from medclf.errors import TrainingError

log = logging.getLogger(__name__)


#: Called with (images, step) to augment a training batch on its device.
Augment = Callable[[torch.Tensor, int], torch.Tensor]


@dataclass
class EpochProgress:
    """Where an epoch stands; saved in a checkpoint when a run stops inside an epoch."""

    step: int = 0
    loss_sum: float = 0.0
    seen: int = 0
    skipped: list[dict] = field(default_factory=list)
    interrupted: bool = False

    @property
    def loss(self) -> float:
        """Mean training loss per image so far."""
        return self.loss_sum / self.seen if self.seen else math.nan


@dataclass
class Inference:
    """Outputs of :func:`infer`, in loader order. Tensors stay on the device they were computed on."""

    logits: torch.Tensor
    targets: torch.Tensor | None
    paths: list[str]
    rows: list[int]
    indices: torch.Tensor
    loss: float | None
    skipped: list[dict]
    plain_logits: torch.Tensor | None = None  # with test-time augmentation: the unaugmented image's logits

    @property
    def probs(self) -> torch.Tensor:
        """Sigmoid of the logits."""
        return torch.sigmoid(self.logits.float())


def train_one_epoch(
    model: nn.Module,
    loader: Iterable[dict],
    criterion: nn.Module,
    optimizer: torch.optim.Optimizer,
    device: torch.device,
    *,
    progress: EpochProgress | None = None,
    augment: Augment | None = None,
    scaler: torch.amp.GradScaler | None = None,
    amp_dtype: torch.dtype | None = None,
    channels_last: bool = False,
    distributed: bool = False,
    should_stop: Callable[[], bool] = lambda: False,
    desc: str = "train",
    show_progress: bool = True,
    total: int | None = None,
) -> EpochProgress:
    """Train for one pass over ``loader`` (from ``progress.step`` on when resuming an epoch).

    Stops early, with ``interrupted`` set, when ``should_stop()`` becomes true after a step. A batch with
    fewer than two readable images is skipped; under DistributedDataParallel (``distributed``) the rank
    still joins the step with a zero gradient, since every rank must take part in each all-reduce.

    Raises:
        TrainingError: on a non-finite loss (naming the batch's images) or CUDA out-of-memory.
    """
    state = progress or EpochProgress()
    model.train()
    bar = tqdm(loader, desc=desc, total=total, disable=not show_progress, leave=False, dynamic_ncols=True)
    for batch in bar:
        state.skipped += batch["skipped"]
        images, targets = prepare_batch(batch, device, channels_last)
        n = images.shape[0]
        if n >= 2:  # batch norm cannot train on one image; an all-unreadable batch has none
            try:
                if augment is not None:
                    images = augment(images, state.step)
                with autocast(device, amp_dtype):
                    loss = criterion(model(images), targets)
                value = float(loss.detach())
                if not math.isfinite(value):
                    raise TrainingError(
                        f"the training loss became {value} at {desc}, step {state.step + 1}; the batch held "
                        + ", ".join(batch["path"])
                        + ". Lower --lr, or check these images."
                    )
                optimizer.zero_grad(set_to_none=True)
                if scaler is not None:
                    scaler.scale(loss).backward()
                    scaler.step(optimizer)
                    scaler.update()
                else:
                    loss.backward()
                    optimizer.step()
            except torch.cuda.OutOfMemoryError:
                raise TrainingError(
                    f"CUDA ran out of memory with a batch of {n} images of {tuple(images.shape[-2:])} "
                    f"pixels; try --batch-size {max(1, n // 2)} (or a smaller --image-size)"
                ) from None
            state.loss_sum += value * n
            state.seen += n
            bar.set_postfix(loss=f"{state.loss:.4f}", refresh=False)
        elif distributed:
            optimizer.zero_grad(set_to_none=True)
            sum(p.sum() for p in model.parameters() if p.requires_grad).mul(0.0).backward()
            optimizer.step()
        state.step += 1
        if should_stop():
            state.interrupted = True
            break
    bar.close()
    return state


@torch.no_grad()
def infer(
    model: nn.Module,
    loader: Iterable[dict],
    device: torch.device,
    *,
    criterion: nn.Module | None = None,
    amp_dtype: torch.dtype | None = None,
    channels_last: bool = False,
    desc: str = "val",
    show_progress: bool = True,
    views: Sequence[torch.Tensor] | None = None,
) -> Inference:
    """Logits (and targets, when the loader has labels) for every readable image, in loader order.

    Logits and targets are gathered on ``device`` so that metrics can be computed there. With ``views``
    (test-time augmentation, :func:`~medclf.data.augment.tta_views`) the logits are those of the mean
    probability over the views, and ``plain_logits`` holds the first view's (the image itself).
    """
    model.eval()
    logits, plain, targets, paths, rows, indices, skipped = [], [], [], [], [], [], []
    loss_sum, seen = 0.0, 0
    for batch in tqdm(loader, desc=desc, disable=not show_progress, leave=False, dynamic_ncols=True):
        skipped += batch["skipped"]
        if not batch["path"]:
            continue
        images, labels = prepare_batch(batch, device, channels_last)
        with autocast(device, amp_dtype):
            out = model(images).float() if not views else _mean_over_views(model, images, views, plain)
        logits.append(out)
        paths += batch["path"]
        rows += batch["row"].tolist()
        indices.append(batch["index"])
        if labels is not None:
            targets.append(labels)
            if criterion is not None:
                loss_sum += float(criterion(out, labels)) * len(images)
                seen += len(images)
    return Inference(
        logits=torch.cat(logits) if logits else torch.empty(0, 0, device=device),
        targets=torch.cat(targets) if targets else None,
        paths=paths,
        rows=rows,
        indices=torch.cat(indices) if indices else torch.empty(0, dtype=torch.int64),
        loss=loss_sum / seen if seen else None,
        skipped=skipped,
        plain_logits=torch.cat(plain) if plain else None,
    )


def _mean_over_views(
    model: nn.Module, images: torch.Tensor, views: Sequence[torch.Tensor], plain: list[torch.Tensor]
) -> torch.Tensor:
    """Logit of the mean probability over the views; the first view's logits are appended to ``plain``."""
    outs = [model(apply_view(images, theta)).float() for theta in views]
    plain.append(outs[0])
    probs = torch.stack([torch.sigmoid(o) for o in outs]).mean(dim=0)
    return torch.logit(probs, eps=1e-7)
