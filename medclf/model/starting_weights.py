"""Where a training run's weights start: ``--pretrained`` (a file, ``imagenet``, ``torchxrayvision:NAME``) or
``--init-from`` (another medclf run's checkpoint).

:func:`resolve_start` finds and checks the source before a run folder is claimed (an unknown name, a
missing or corrupt file, weights of another network, an offline machine without the cached file: one line
each, and nothing is created); :meth:`Start.apply` loads it into the freshly built network, and the
network carries the source's input convention from then on (:mod:`medclf.model.input_convention`).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch import nn

from medclf.errors import CheckpointError, ConfigError
from medclf.model.checkpoint import FORMAT as CHECKPOINT_FORMAT
from medclf.model.checkpoint import Checkpoint, load_checkpoint
from medclf.model.hub_cache import imagenet_weights
from medclf.model.input_convention import apply_convention, describe
from medclf.model.pretrained import name_list
from medclf.model.registry import architecture, architecture_of, pretrained_loader
from medclf.model.safe_load import load_weights_only
from medclf.model.weights_file import (
    WeightsFile,
    apply_weights_file,
    copy_head_rows,
    is_weights_file,
    label_key,
    read_weights_file,
)
from medclf.model.xrv_import import XRV_PREFIX, cached_weights_path, xrv_weights_names

log = logging.getLogger(__name__)


@dataclass
class Start:
    """A checked source of starting weights.

    Attributes:
        flag: ``--pretrained VALUE`` or ``--init-from PATH``, for messages.
        kind: ``torchvision`` (an ImageNet ``.pth``), ``weights`` (a medclf weights file) or ``checkpoint``.
        path: The file.
        weights: The weights file (kind ``weights``).
        checkpoint: The checkpoint (kind ``checkpoint``).
    """

    flag: str
    kind: str
    path: Path
    weights: WeightsFile | None = None
    checkpoint: Checkpoint | None = None

    @property
    def convention(self) -> dict[str, Any]:
        """The input convention the weights were trained with (``{}``: medclf's own)."""
        if self.weights is not None:
            return dict(self.weights.input)
        if self.checkpoint is not None:
            return dict(self.checkpoint.input)
        return {}

    def apply(self, net: nn.Module, labels: Sequence[str], image_size: int) -> None:
        """Load the weights into ``net`` (labels ``labels``, trained at ``image_size`` px)."""
        if self.kind == "torchvision":
            pretrained_loader(architecture_of(net).name, self.path)(net, self.path)
        elif self.kind == "weights":
            assert self.weights is not None
            apply_weights_file(net, self.weights, labels)
        else:
            assert self.checkpoint is not None
            _apply_checkpoint(net, self.checkpoint, labels, image_size)
        trained_at = self.convention.get("image_size")
        if trained_at and int(trained_at) != image_size:
            log.warning("%s was trained at %s px; this run uses %d px", self.flag, trained_at, image_size)


def resolve_start(model: str, pretrained: str = "", init_from: str = "") -> Start | None:
    """The checked source of a run's starting weights, or None for random initialisation.

    Raises:
        ConfigError: both flags given, a name medclf does not know, a network without pretrained weights.
        CheckpointError: a missing, truncated or foreign file, weights of another network or depth, an
            absent cached file that cannot be downloaded.
    """
    if pretrained and init_from:
        raise ConfigError(
            f"--pretrained {pretrained} and --init-from {init_from}: choose one starting point "
            "(--init-from for a medclf checkpoint, --pretrained for other weights)"
        )
    if init_from:
        return _checkpoint_start(model, init_from)
    if not pretrained:
        return None
    flag = f"--pretrained {pretrained}"
    pretrained_loader(model, pretrained)  # an architecture without any pretrained loader is refused here
    if pretrained == "imagenet":
        return Start(flag, "torchvision", imagenet_weights(model))
    path = _named_file(pretrained) if pretrained.startswith(XRV_PREFIX) else Path(pretrained)
    if not path.is_file():
        raise ConfigError(
            f"{flag}: no such file, and not a name medclf knows (imagenet, {XRV_PREFIX}NAME with NAME one of "
            f"{', '.join(xrv_weights_names())})"
        )
    try:
        state = load_weights_only(path, "cpu", what="pretrained weights")
    except CheckpointError as e:
        if "pickled Python objects" not in str(e):
            raise
        raise CheckpointError(
            f"{e} A torchxrayvision file? Convert it once with `medclf-import-weights torchxrayvision {path}`"
        ) from None
    if isinstance(state, dict) and state.get("format") == CHECKPOINT_FORMAT:
        raise ConfigError(f"{flag} is a medclf checkpoint: start from it with --init-from {pretrained}")
    if not is_weights_file(state):
        return Start(flag, "torchvision", path)
    weights = read_weights_file(path, state)
    if weights.architecture != model:
        raise CheckpointError(
            f"{path} holds {weights.architecture} weights, the model is {model}: use --model {weights.architecture}"
        )
    return Start(flag, "weights", path, weights=weights)


def run_convention(start: Start | None, resumed: Checkpoint | None) -> dict[str, Any]:
    """The input convention of a run: its starting weights', a resumed checkpoint's, else medclf's own."""
    if start is not None:
        return start.convention
    return dict(resumed.input) if resumed is not None else {}


def initialise(
    net: nn.Module, start: Start | None, resumed: Checkpoint | None, labels: Sequence[str], image_size: int
) -> None:
    """A freshly built network's starting weights (``start``) or, when resuming, its input convention (the
    weights themselves come from ``resumed`` later)."""
    if resumed is not None:
        apply_convention(net, resumed.input, resumed.path)
    elif start is not None:
        start.apply(net, labels, image_size)


def _named_file(value: str) -> Path:
    """The converted file of ``torchxrayvision:NAME`` in medclf's weights cache."""
    name = value[len(XRV_PREFIX) :]
    if name not in xrv_weights_names():
        raise ConfigError(
            f"--pretrained {value}: medclf does not know torchxrayvision weights {name!r} "
            f"(known: {', '.join(xrv_weights_names())})"
        )
    path = cached_weights_path(name)
    if not path.is_file():
        raise CheckpointError(
            f"--pretrained {value}: {path} does not exist; convert torchxrayvision's file once with "
            f"`medclf-import-weights torchxrayvision FILE --name {name}` (FILE: torchxrayvision's download, "
            "~/.torchxrayvision/...), or give the path of a converted file"
        )
    return path


def _checkpoint_start(model: str, path: str) -> Start:
    architecture(model)
    checkpoint = load_checkpoint(path)
    if checkpoint.model_name != model:
        raise CheckpointError(
            f"--init-from {path}: its network is {checkpoint.model_name}, the model is {model}: "
            f"use --model {checkpoint.model_name}"
        )
    return Start(f"--init-from {path}", "checkpoint", Path(checkpoint.path), checkpoint=checkpoint)


def _apply_checkpoint(net: nn.Module, checkpoint: Checkpoint, labels: Sequence[str], image_size: int) -> None:
    """Every tensor but the classifier's, then the classifier rows of shared labels, and the convention."""
    where = f"--init-from {checkpoint.path}"
    head = architecture_of(net).feature_layer + "."
    target = net.state_dict()
    body = {k: v for k, v in checkpoint.model.items() if not k.startswith(head)}
    wrong = [
        f"{k} {tuple(v.shape)}" + (f" (model {tuple(target[k].shape)})" if k in target else " (not in the model)")
        for k, v in body.items()
        if k not in target or target[k].shape != v.shape
    ]
    if wrong:
        raise CheckpointError(f"{where}: its weights do not fit {checkpoint.model_name}: {name_list(wrong, 5)}")
    net.load_state_dict(body, strict=False)
    source_head = (checkpoint.model[head + "weight"], checkpoint.model[head + "bias"])
    started = copy_head_rows(net, source_head, checkpoint.labels, labels, where)
    apply_convention(net, checkpoint.input, where)
    fresh = [label for label in labels if label not in started]
    taken = {label_key(label) for label in started}
    skipped = [label for label in checkpoint.labels if label_key(label) not in taken]
    log.info(
        "%s: loaded %d tensors; classifier rows from its head: %s; started fresh: %s; its labels not used: %s",
        where, len(body), name_list(started), name_list(fresh), name_list(skipped),
    )  # fmt: skip
    if int(checkpoint.image_size) != image_size:
        log.warning("%s was trained at %s px; this run uses %d px", where, checkpoint.image_size, image_size)
    if checkpoint.input:
        log.info("%s: input convention %s", where, describe(checkpoint.input))


__all__ = ["Start", "initialise", "resolve_start", "run_convention"]
