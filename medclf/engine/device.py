"""Devices, mixed precision and moving batches onto the device."""

from __future__ import annotations

import contextlib

import torch

from medclf.data.transforms import to_unit_range
from medclf.errors import ConfigError


def resolve_device(name: str) -> torch.device:
    """``auto`` -> CUDA when available, else CPU; ``cuda`` without a GPU is an error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("--device cuda was requested but no CUDA GPU is available")
    return torch.device(name)


def amp_settings(device: torch.device, enabled: bool) -> tuple[torch.dtype | None, torch.amp.GradScaler | None]:
    """bf16 autocast where the GPU supports it, else fp16 with a gradient scaler; nothing on CPU."""
    if device.type != "cuda" or not enabled:
        return None, None
    if torch.cuda.is_bf16_supported():
        return torch.bfloat16, None
    return torch.float16, torch.amp.GradScaler("cuda")


def prepare_batch(
    batch: dict, device: torch.device, channels_last: bool = False
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Move a batch to ``device`` and turn the compact cache images into float32 in [0, 1] there."""
    images = batch["image"].to(device, non_blocking=True)
    images = to_unit_range(images)
    if channels_last:
        images = images.contiguous(memory_format=torch.channels_last)
    labels = batch.get("labels")
    if labels is not None:
        labels = labels.to(device, non_blocking=True)
    return images, labels


def autocast(device: torch.device, dtype: torch.dtype | None) -> contextlib.AbstractContextManager:
    """Mixed precision on CUDA when ``dtype`` is set; a no-op otherwise."""
    if dtype is None or device.type != "cuda":
        return contextlib.nullcontext()
    return torch.autocast(device_type="cuda", dtype=dtype)
