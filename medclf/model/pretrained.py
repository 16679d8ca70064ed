"""ImageNet weights for the MONAI DenseNets, read from a local torchvision ``.pth`` file (never downloaded).

torchvision and MONAI name the DenseNet tensors alike except inside the dense layers, where MONAI adds a
``layers`` level and old torchvision files use dotted names::

    features.denseblock1.denselayer1.norm1.weight   (torchvision >= 0.3)    \\
    features.denseblock1.denselayer1.norm.1.weight  (files on download.pytorch.org)
        -> features.denseblock1.denselayer1.layers.norm1.weight              (MONAI)

The stem, ``features.conv0.weight`` (64, 3, 7, 7), is summed over its RGB inputs for a one-channel
network: a gray image is an RGB image with three equal channels, so the sum gives the same activations
as the original network gives that RGB image. The 1000-class ``classifier`` is never loaded; the
network's own head (``class_layers.out``) keeps its initial values.
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from medclf.errors import CheckpointError
from medclf.model.checkpoint import load_weights_only
from medclf.model.networks import unwrap_model

log = logging.getLogger(__name__)

STEM = "features.conv0.weight"
# A dense-layer tensor in torchvision's current (norm1) or legacy (norm.1) naming, or already in MONAI's.
_DENSE_LAYER = re.compile(
    r"^(?P<layer>.*\.denselayer\d+)\.(?:layers\.)?(?P<kind>norm|relu|conv)\.?(?P<index>[12])\."
    r"(?P<tensor>weight|bias|running_mean|running_var|num_batches_tracked)$"
)
_BLOCK_LAYER = re.compile(r"^features\.denseblock(\d+)\.denselayer(\d+)\.")
# torchvision names a file must hold to be taken for a DenseNet (MONAI name, torchvision name).
_REQUIRED = (
    (STEM, STEM),
    ("features.norm0.weight", "features.norm0.weight"),
    ("features.denseblock1.denselayer1.layers.norm1.weight", "features.denseblock1.denselayer1.norm1.weight"),
    ("features.denseblock1.denselayer1.layers.conv1.weight", "features.denseblock1.denselayer1.conv1.weight"),
    ("features.norm5.weight", "features.norm5.weight"),
)
_KNOWN_BLOCKS = {(6, 12, 24, 16): "densenet121", (6, 12, 32, 32): "densenet169", (6, 12, 48, 32): "densenet201"}
_PREFIXES = ("module.", "_orig_mod.")  # DistributedDataParallel, torch.compile


@dataclass
class PretrainedReport:
    """What :func:`load_torchvision_densenet` did, tensor by tensor.

    Attributes:
        loaded: Model tensors (MONAI names) set from the file, adapted ones included.
        adapted: Model tensors converted before loading (the stem of a one-channel network).
        skipped: File tensors (names as in the file, without a ``module.`` prefix) that were not used.
        missing: Model tensors left at their initial values (the new classifier ``class_layers.out.*``).
        path: The weights file.
        n_parameters: Number of parameter values (buffers excluded) loaded.
        reasons: Why a tensor was adapted or skipped, by name.
    """

    loaded: list[str] = field(default_factory=list)
    adapted: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    path: str = ""
    n_parameters: int = 0
    reasons: dict[str, str] = field(default_factory=dict)

    def summary(self) -> str:
        """One line: counts, then the adapted, skipped and missing tensors by name."""
        adapted = [f"{k} ({self.reasons[k]})" if k in self.reasons else k for k in self.adapted]
        counters = [k for k in self.missing if k.endswith(".num_batches_tracked")]
        missing = name_list(k for k in self.missing if k not in counters)
        if counters:
            missing = f"{missing}; {len(counters)} batch-norm num_batches_tracked counters (0; unused)"
        return (
            f"loaded {len(self.loaded)} tensors ({self.n_parameters / 1e6:.2f}M parameters) from {self.path}; "
            f"adapted: {name_list(adapted)}; skipped: {name_list(self.skipped)}; "
            f"left at initial values: {missing}"
        )


def load_torchvision_densenet(model: nn.Module, path: str | Path, *, allow_partial: bool = False) -> PretrainedReport:
    """Load torchvision ImageNet DenseNet weights from a local file into a MONAI DenseNet.

    Every backbone tensor whose shape fits is copied (``strict=False``); the stem is summed over RGB for a
    one-channel network (repeated and scaled by 3/C for other channel counts); the 1000-class classifier
    is skipped. The model is changed in place, and only when no error is raised.

    Args:
        model: A MONAI ``DenseNet121/169/201`` (``spatial_dims=2``), possibly wrapped by DDP or
            ``torch.compile``.
        path: A ``.pth`` file from torchvision (``model.state_dict()`` or the download.pytorch.org files),
            a plain state_dict or a dict with a ``state_dict`` or ``model`` entry; ``module.`` prefixes are
            stripped.
        allow_partial: Load what fits even when backbone tensors would stay random (another DenseNet
            depth in the file); by default that is an error.

    Returns:
        The tensors loaded, adapted, skipped and left missing; its summary is logged at INFO.

    Raises:
        CheckpointError: The file is missing, unreadable, holds pickled Python objects (never executed),
            is not a torchvision DenseNet, or (unless ``allow_partial``) does not fit the model's depth.
        ValueError: ``model`` is not a 2-D MONAI DenseNet.
    """
    net = unwrap_model(model)
    if STEM not in net.state_dict() or net.state_dict()[STEM].ndim != 4:
        raise ValueError(f"{type(net).__name__} is not a 2-D MONAI DenseNet (it has no 4-D {STEM})")
    return load_densenet_backbone(net, read_state_dict(Path(path)), path, allow_partial=allow_partial)


def load_densenet_backbone(
    model: nn.Module, source: Mapping[str, torch.Tensor], path: str | Path, *, allow_partial: bool = False
) -> PretrainedReport:
    """Load the backbone tensors of a torchvision-named DenseNet state dict (``source``) into a MONAI DenseNet.

    What :func:`load_torchvision_densenet` does once the file is read; ``path`` names the source in
    messages. torchxrayvision's DenseNet uses torchvision's names, so its weights load through here too.
    """
    net = unwrap_model(model)
    target = net.state_dict()
    mapped: dict[str, str] = {}  # MONAI name -> file name
    report = PretrainedReport(path=str(path))
    for name in source:
        new = _monai_name(name)
        if new in mapped:
            report.skipped.append(name)
            report.reasons[name] = f"duplicate of {mapped[new]}"
        else:
            mapped[new] = name
    absent = [tv for monai, tv in _REQUIRED if monai not in mapped]
    if absent:
        found = ", ".join(list(source)[:6]) + (", ..." if len(source) > 6 else "")
        raise CheckpointError(
            f"{path} does not look like torchvision DenseNet weights: expected keys such as "
            f"{', '.join(tv for _, tv in _REQUIRED)}; missing {', '.join(absent)} (found {len(source)} "
            f"tensors: {found})"
        )

    weights = _matching_tensors(source, mapped, target, report)
    report.missing = [k for k in target if k not in weights]

    random_backbone = [k for k in report.missing if k.startswith("features.") and "num_batches_tracked" not in k]
    if random_backbone and not allow_partial:
        mismatched = [f"{k} ({report.reasons[k]})" for k in report.skipped if report.reasons[k].startswith("shape")]
        raise CheckpointError(
            f"{path} does not fit this network: {len(random_backbone)} backbone tensors would keep random "
            f"values ({name_list(random_backbone, 5)}); file tensors of another shape: "
            f"{name_list(mismatched, 5)}. The file holds {_describe_blocks(mapped)}, the model is "
            f"{_describe_blocks(target)}; use weights of the same DenseNet depth"
        )

    result = net.load_state_dict(weights, strict=False)
    assert not result.unexpected_keys, result.unexpected_keys  # every key was checked against target
    report.loaded = [k for k in target if k in weights]
    parameters = {k for k, _ in net.named_parameters()}
    report.n_parameters = sum(weights[k].numel() for k in report.loaded if k in parameters)
    for name in report.skipped:
        if report.reasons[name].startswith("shape"):
            log.warning("pretrained tensor %s not loaded: %s", name, report.reasons[name])
    log.info("%s", report.summary())
    return report


def _matching_tensors(
    source: Mapping[str, torch.Tensor],
    mapped: dict[str, str],
    target: dict[str, torch.Tensor],
    report: PretrainedReport,
) -> dict[str, torch.Tensor]:
    """The file's backbone tensors that fit the model (the stem adapted), by MONAI name; the rest are
    recorded in ``report`` with the reason."""
    weights: dict[str, torch.Tensor] = {}
    for new, name in mapped.items():
        tensor = source[name]
        if not new.startswith("features."):
            report.skipped.append(name)
            report.reasons[name] = "not part of the backbone"
        elif new not in target:
            report.skipped.append(name)
            report.reasons[name] = "no such tensor in the model"
        elif new == STEM and tensor.shape != target[new].shape:
            adapted = _adapt_stem(tensor, target[new])
            if adapted is None:
                report.skipped.append(name)
                report.reasons[name] = f"shape {_shape(tensor)}, model {_shape(target[new])}"
            else:
                weights[new], report.reasons[new] = adapted
                report.adapted.append(new)
        elif tensor.shape != target[new].shape:
            report.skipped.append(name)
            report.reasons[name] = f"shape {_shape(tensor)}, model {_shape(target[new])}"
        else:
            weights[new] = tensor
    return weights


def adapt_input_conv(weight: torch.Tensor, in_channels: int) -> torch.Tensor:
    """An RGB first-convolution kernel (out, 3, kh, kw) for ``in_channels`` input channels.

    One channel: the sum over RGB (a gray image equals three equal RGB channels, so activations keep the
    scale the weights were trained at). Other counts: RGB repeated cyclically and scaled by 3/C.
    """
    if weight.shape[1] == in_channels:
        return weight
    if weight.shape[1] != 3:
        raise ValueError(f"expected an RGB kernel (out, 3, ...), got {tuple(weight.shape)}")
    dtype = weight.dtype
    w = weight.float()
    if in_channels == 1:
        w = w.sum(dim=1, keepdim=True)
    else:
        repeats = math.ceil(in_channels / 3)
        w = w.repeat(1, repeats, *([1] * (w.ndim - 2)))[:, :in_channels] * (3 / in_channels)
    return w.to(dtype)


def _adapt_stem(tensor: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, str] | None:
    """The file's stem fitted to the model's input channels, and how; None when it cannot fit."""
    if tensor.ndim != 4 or tensor.shape[1] != 3 or tensor.shape[0] != target.shape[0]:
        return None
    if tensor.shape[2:] != target.shape[2:]:
        return None
    channels = target.shape[1]
    how = "RGB summed to 1 channel" if channels == 1 else f"RGB repeated to {channels} channels, scaled by 3/{channels}"
    return adapt_input_conv(tensor, channels), how


def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """The file's tensors by name (``module.`` prefixes stripped); raises CheckpointError."""
    obj: Any = load_weights_only(path, "cpu", what="pretrained weights")
    if isinstance(obj, Mapping):
        for entry in ("state_dict", "model"):
            if isinstance(obj.get(entry), Mapping):
                obj = obj[entry]
                break
    if not isinstance(obj, Mapping):
        raise CheckpointError(f"{path} holds a {type(obj).__name__}, not a state_dict of DenseNet weights")
    tensors: dict[str, torch.Tensor] = {}
    for key, value in obj.items():
        if isinstance(key, str) and isinstance(value, torch.Tensor):
            name = key
            while name.startswith(_PREFIXES):
                name = name.split(".", 1)[1]
            tensors[name] = value
    if not tensors:
        raise CheckpointError(f"{path} holds no named tensors (keys: {', '.join(map(str, list(obj)[:6]))})")
    return tensors


def _monai_name(name: str) -> str:
    """A torchvision DenseNet tensor name (current or legacy) in MONAI's naming; other names unchanged."""
    m = _DENSE_LAYER.match(name)
    if m is None:
        return name
    return f"{m['layer']}.layers.{m['kind']}{m['index']}.{m['tensor']}"


def _describe_blocks(names: Iterable[str]) -> str:
    """``densenet121 (blocks 6, 12, 24, 16)`` from the dense-layer names present."""
    depth: dict[int, int] = {}
    for name in names:
        m = _BLOCK_LAYER.match(name)
        if m:
            block, layer = int(m[1]), int(m[2])
            depth[block] = max(depth.get(block, 0), layer)
    blocks = tuple(depth[b] for b in sorted(depth))
    known = _KNOWN_BLOCKS.get(blocks)
    text = f"blocks {', '.join(map(str, blocks))}" if blocks else "no dense blocks"
    return f"{known} ({text})" if known else f"a DenseNet with {text}"


def _shape(tensor: torch.Tensor) -> str:
    return "(" + ", ".join(map(str, tensor.shape)) + ")"


def name_list(names: Iterable[str], limit: int = 20) -> str:
    """``a, b, c`` with at most ``limit`` names, then ``and N more``; ``none`` when empty."""
    names = list(names)
    if not names:
        return "none"
    shown = ", ".join(names[:limit])
    return f"{shown} and {len(names) - limit} more" if len(names) > limit else shown


__all__ = [
    "PretrainedReport",
    "adapt_input_conv",
    "load_densenet_backbone",
    "load_torchvision_densenet",
    "name_list",
    "read_state_dict",
]
