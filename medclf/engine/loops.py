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


#: Called with (images, targets, step) to augment a training batch on its device; returns both (mixup
#: changes the targets too).
Augment = Callable[[torch.Tensor, torch.Tensor, int], tuple[torch.Tensor, torch.Tensor]]


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


#: Training steps between reads of the loss on the host: a read waits for the GPU to finish, so it is
#: done this rarely (and at the end of the epoch), never after every step.
SYNC_EVERY = 10


@dataclass
class _PendingLosses:
    """Losses of the steps since the last read, kept on the device until :meth:`read`."""

    losses: list[torch.Tensor] = field(default_factory=list)
    finite: list[torch.Tensor] = field(default_factory=list)
    sizes: list[int] = field(default_factory=list)
    batches: list[tuple[int, list[str]]] = field(default_factory=list)

    def add(self, loss: torch.Tensor, outputs_finite: torch.Tensor, n: int, step: int, paths: list[str]) -> None:
        self.losses.append(loss.detach().float())
        self.finite.append(outputs_finite)
        self.sizes.append(n)
        self.batches.append((step, paths))

    def read(self, state: EpochProgress, desc: str) -> None:
        """Add the pending losses to ``state`` with one device-to-host copy; fail on a non-finite loss
        or network output."""
        if not self.losses:
            return
        packed = torch.stack(self.losses + [ok.float() for ok in self.finite]).cpu().tolist()  # one copy
        values, finite = packed[: len(self.losses)], packed[len(self.losses) :]
        for value, ok, n, (step, paths) in zip(values, finite, self.sizes, self.batches, strict=True):
            if not math.isfinite(value) or not ok:
                what = f"the training loss became {value}" if not math.isfinite(value) else (
                    "the network's outputs became infinite or NaN (the loss did not show it)"
                )  # fmt: skip
                shown = ", ".join(paths[:5]) + (f" and {len(paths) - 5} more" if len(paths) > 5 else "")
                raise TrainingError(
                    f"{what} at {desc}, step {step + 1}; the batch held {shown}. The model has diverged: "
                    "lower --lr, or check these images."
                )
            state.loss_sum += value * n
            state.seen += n
        self.losses, self.finite, self.sizes, self.batches = [], [], [], []


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
    after_step: Callable[[], None] | None = None,
) -> EpochProgress:
    """Train for one pass over ``loader`` (from ``progress.step`` on when resuming an epoch).

    The loss stays on the device and is read every :data:`SYNC_EVERY` steps and at the end, so the host
    never waits for the GPU after each step; ``should_stop()`` is asked at those reads (on every rank at
    the same steps, as it may be a collective), and the epoch then ends with ``interrupted`` set. A batch
    with fewer than two readable images is skipped; under DistributedDataParallel (``distributed``) the
    rank still joins the step with a zero gradient, since every rank must take part in each all-reduce.
    ``after_step()`` runs after every optimiser step (the weight average of ``--ema-decay``).

    Raises:
        TrainingError: on a non-finite loss (naming the batch's images, at most SYNC_EVERY steps after it)
            or CUDA out-of-memory.
    """
    state = progress or EpochProgress()
    pending = _PendingLosses()
    if not model.training:  # not .train() regardless: it would undo a frozen backbone's eval mode
        model.train()
    bar = tqdm(loader, desc=desc, total=total, disable=not show_progress, leave=False, dynamic_ncols=True)
    for batch in bar:
        state.skipped += batch["skipped"]
        images, targets = prepare_batch(batch, device, channels_last)
        n = images.shape[0]
        if n >= 2:  # batch norm cannot train on one image; an all-unreadable batch has none
            try:
                loss, finite = _train_step(
                    model, images, targets, criterion, optimizer, state.step, augment, scaler, amp_dtype
                )
            except torch.cuda.OutOfMemoryError:
                raise TrainingError(
                    f"CUDA ran out of memory with a batch of {n} images of {tuple(images.shape[-2:])} "
                    f"pixels; try --batch-size {max(1, n // 2)} (or a smaller --image-size)"
                ) from None
            pending.add(loss, finite, n, state.step, batch["path"])
        elif distributed:
            optimizer.zero_grad(set_to_none=True)
            sum(p.sum() for p in model.parameters() if p.requires_grad).mul(0.0).backward()
            optimizer.step()
        if after_step is not None and (n >= 2 or distributed):
            after_step()
        state.step += 1
        if state.step % SYNC_EVERY == 0:
            pending.read(state, desc)
            bar.set_postfix(loss=f"{state.loss:.4f}")
            if should_stop():
                state.interrupted = True
                break
    pending.read(state, desc)
    if not state.interrupted and state.step % SYNC_EVERY != 0 and should_stop():
        state.interrupted = True
    bar.close()
    return state


def _train_step(
    model: nn.Module,
    images: torch.Tensor,
    targets: torch.Tensor,
    criterion: nn.Module,
    optimizer: torch.optim.Optimizer,
    step: int,
    augment: Augment | None,
    scaler: torch.amp.GradScaler | None,
    amp_dtype: torch.dtype | None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Augment, forward, backward and step; returns the loss and whether every output was finite (both
    on the device, not read)."""
    if augment is not None:
        images, targets = augment(images, targets, step)
    with autocast(images.device, amp_dtype):
        outputs = model(images)
        loss = criterion(outputs, targets)
    finite = torch.isfinite(outputs.detach()).all()
    optimizer.zero_grad(set_to_none=True)
    if scaler is not None:
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
    else:
        loss.backward()
        optimizer.step()
    return loss, finite


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
    loss_sum, seen = torch.zeros((), device=device, dtype=torch.float64), 0  # read once, at the end
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
                loss_sum += criterion(out, labels).detach().double() * len(images)
                seen += len(images)
    return Inference(
        logits=torch.cat(logits) if logits else torch.empty(0, 0, device=device),
        targets=torch.cat(targets) if targets else None,
        paths=paths,
        rows=rows,
        indices=torch.cat(indices) if indices else torch.empty(0, dtype=torch.int64),
        loss=float(loss_sum) / seen if seen else None,
        skipped=skipped,
        plain_logits=torch.cat(plain) if plain else None,
    )


def check_finite(result: Inference, where: str) -> None:
    """Stop when the network gave an infinite or NaN output, naming the images, before any metric, figure or
    checkpoint is made from it.

    Raises:
        TrainingError: naming ``where`` (e.g. ``epoch 3 validation``) and up to five images.
    """
    bad = ~torch.isfinite(result.logits).all(dim=1) if result.logits.numel() else torch.zeros(0, dtype=torch.bool)
    rows = torch.nonzero(bad).flatten().cpu().tolist()  # one read per pass, not per batch
    if not rows:
        return
    shown = ", ".join(result.paths[i] for i in rows[:5]) + (f" and {len(rows) - 5} more" if len(rows) > 5 else "")
    raise TrainingError(
        f"{where}: the network gave infinite or NaN outputs for {len(rows)} of {len(result.paths)} images "
        f"({shown}); no metric is computed from them. The model has diverged (retrain with a lower --lr) "
        "or these images are broken."
    )


def _mean_over_views(
    model: nn.Module, images: torch.Tensor, views: Sequence[torch.Tensor], plain: list[torch.Tensor]
) -> torch.Tensor:
    """Logit of the mean probability over the views; the first view's logits are appended to ``plain``."""
    outs = [model(apply_view(images, theta)).float() for theta in views]
    plain.append(outs[0])
    probs = torch.stack([torch.sigmoid(o) for o in outs]).mean(dim=0)
    return torch.logit(probs, eps=1e-7)
