"""The input convention of a network's weights: the intensity range it was trained on and how its images
were framed, recorded in every checkpoint so that validate, predict, explain and export feed the network
what it was trained on.

medclf's own networks take intensities in [0, 1] and the whole image resized to a square (the empty
convention ``{}``). Weights trained elsewhere may expect another range: torchxrayvision's take
``[-1024, 1024]`` and a centre crop of the long side. The range is applied by a forward pre-hook on the
network (a linear map of medclf's [0, 1] batches, so the cache, augmentation and every loop stay as they
are); the crop is a step of the preprocessing (:func:`medclf.data.transforms.preprocessing`).

On disk (checkpoint ``input``, weights file ``input``) the convention is a dict of plain values::

    {"intensity": [-1024.0, 1024.0], "crop": "centre", "image_size": 224, "channels": 1}
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from medclf.errors import CheckpointError

#: Attribute holding a network's convention (a plain dict; not part of its state_dict).
ATTRIBUTE = "medclf_input"
CROPS = ("none", "centre")


class IntensityMap:
    """Forward pre-hook: [0, 1] batches mapped linearly onto ``[low, high]``."""

    def __init__(self, low: float, high: float) -> None:
        self.low, self.high = float(low), float(high)

    def __call__(self, module: nn.Module, args: tuple[Any, ...]) -> tuple[Any, ...]:
        images, *rest = args
        return (images * (self.high - self.low) + self.low, *rest)


def check_convention(convention: Mapping[str, Any] | None, where: str) -> dict[str, Any]:
    """The convention as plain values, checked; ``{}`` for medclf's own.

    Raises:
        CheckpointError: for an intensity range that is not two increasing numbers, or an unknown crop.
    """
    if not convention:
        return {}
    plain = dict(convention)
    intensity = plain.get("intensity", [0.0, 1.0])
    try:
        low, high = (float(v) for v in intensity)
    except (TypeError, ValueError):
        raise CheckpointError(f"{where}: input intensity must be [low, high], got {intensity!r}") from None
    if not low < high:
        raise CheckpointError(f"{where}: input intensity must be [low, high] with low < high, got {intensity!r}")
    crop = plain.get("crop", "none")
    if crop not in CROPS:
        raise CheckpointError(f"{where}: input crop must be one of {', '.join(CROPS)}, got {crop!r}")
    return {**plain, "intensity": [low, high], "crop": crop}


def apply_convention(net: nn.Module, convention: Mapping[str, Any] | None, where: str = "weights") -> nn.Module:
    """Record ``convention`` on ``net`` and map its input intensities accordingly (once; returns ``net``)."""
    plain = check_convention(convention, where)
    if getattr(net, ATTRIBUTE, None):
        raise ValueError("the network already has an input convention")
    setattr(net, ATTRIBUTE, plain)
    low, high = plain.get("intensity", [0.0, 1.0])
    if (low, high) != (0.0, 1.0):
        net.register_forward_pre_hook(IntensityMap(low, high))
    return net


def convention_of(net: nn.Module) -> dict[str, Any]:
    """The convention recorded on ``net`` (``{}``: medclf's own), for its checkpoint."""
    return dict(getattr(net, ATTRIBUTE, None) or {})


def centre_crop(convention: Mapping[str, Any] | None) -> bool:
    """Whether images are centre-cropped to a square before resizing."""
    return bool(convention) and convention.get("crop") == "centre"


def describe(convention: Mapping[str, Any] | None) -> str:
    """The convention in words, for the log."""
    if not convention:
        return "intensities in [0, 1], whole image resized"
    low, high = convention.get("intensity", [0.0, 1.0])
    framing = "centre crop of the long side" if centre_crop(convention) else "whole image resized"
    size = f", trained at {convention['image_size']} px" if convention.get("image_size") else ""
    return f"intensities in [{low:g}, {high:g}], {framing}{size}"


def intensity_tensor(images: torch.Tensor, convention: Mapping[str, Any] | None) -> torch.Tensor:
    """``images`` in [0, 1] mapped as the network's hook maps them (for tests and exports)."""
    if not convention:
        return images
    low, high = convention.get("intensity", [0.0, 1.0])
    return images * (high - low) + low


__all__ = [
    "ATTRIBUTE",
    "IntensityMap",
    "apply_convention",
    "centre_crop",
    "check_convention",
    "convention_of",
    "describe",
    "intensity_tensor",
]
