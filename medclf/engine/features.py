"""Penultimate-layer features (what the classifier's final ``nn.Linear`` sees) and first-layer filters.

Features are read with a forward pre-hook on the architecture's ``feature_layer`` (the last ``nn.Linear``
of a network not registered) of the unwrapped network, so they are exactly the classifier's input (for
MONAI DenseNets: ReLU, global average pooling and flatten of the last dense block). Images take the path of
:func:`medclf.engine.loops.infer`: :func:`~medclf.engine.device.prepare_batch` (uint8/uint16 to [0, 1] on
the device), then autocast when ``amp_dtype`` is set.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from medclf.data.transforms import to_unit_range
from medclf.engine.device import autocast, prepare_batch
from medclf.model.networks import unwrap_model
from medclf.model.registry import architecture_of

#: Called with (batch or tensor as given, images on the device in [0, 1], (B, F) float32 features).
_OnBatch = Callable[[Any, torch.Tensor, torch.Tensor], None]


@dataclass
class Embeddings:
    """Outputs of :func:`collect_embeddings`, aligned row by row, in loader order (numpy, on the CPU)."""

    features: np.ndarray  # (N, F) float32
    targets: np.ndarray | None  # (N, L) float32: 1, 0, NaN (unknown); None when the loader has no labels
    paths: list[str]
    indices: np.ndarray  # (N,) int64: each image's ``index`` (its position in the records)
    thumbnails: np.ndarray  # (N, C, t, t) float32 in [0, 1]
    skipped: list[dict] = field(default_factory=list)


def classifier_layer(model: nn.Module) -> nn.Linear:
    """The layer whose input the features are: the architecture's ``feature_layer``
    (:mod:`medclf.model.registry`), or the last ``nn.Linear`` of a network not registered.

    Raises:
        ValueError: when the network has no ``nn.Linear``.
    """
    net = unwrap_model(model)
    try:
        layer = net.get_submodule(architecture_of(net).feature_layer)
    except (ValueError, AttributeError):
        layer = None
    if isinstance(layer, nn.Linear):
        return layer
    linears = [m for m in net.modules() if isinstance(m, nn.Linear)]
    if not linears:
        raise ValueError(f"{type(unwrap_model(model)).__name__} has no nn.Linear layer to read features from")
    return linears[-1]


def penultimate_features(
    model: nn.Module,
    loader_or_batches: Iterable[Any],
    device: torch.device | str,
    *,
    amp_dtype: torch.dtype | None = None,
    channels_last: bool = False,
    show_progress: bool = False,
) -> np.ndarray:
    """Features feeding the final linear layer, for every image, in order.

    Args:
        model: A medclf network (DDP and ``torch.compile`` wrappers are looked through). Its train/eval
            modes are restored afterwards, module by module.
        loader_or_batches: medclf loader batches (dicts with ``image``; empty batches are passed over), or
            image tensors (B, C, H, W) or (C, H, W): uint8/uint16 (scaled to [0, 1]) or float (as given).
        device: Where the network runs (it must already be there).
        amp_dtype: Autocast dtype on CUDA, as in :func:`medclf.engine.loops.infer`.
        channels_last: Channels-last images, as in ``infer``.
        show_progress: Show a progress bar.

    Returns:
        (N, F) float32 array, F the ``in_features`` of the final ``nn.Linear``.
    """
    chunks: list[torch.Tensor] = []
    options = {"amp_dtype": amp_dtype, "channels_last": channels_last, "show_progress": show_progress}
    _run(model, loader_or_batches, device, lambda _b, _x, feats: chunks.append(feats.cpu()), **options)
    if not chunks:
        return np.zeros((0, classifier_layer(model).in_features), dtype=np.float32)
    return torch.cat(chunks).numpy()


def collect_embeddings(
    model: nn.Module,
    loader: Iterable[dict],
    device: torch.device | str,
    *,
    thumbnail_size: int = 32,
    amp_dtype: torch.dtype | None = None,
    channels_last: bool = False,
    show_progress: bool = False,
) -> Embeddings:
    """Features plus what the projector and the figure need, in one pass over a medclf loader.

    Args:
        model: As for :func:`penultimate_features`.
        loader: A loader from :func:`medclf.data.loaders.make_loader` (batches with ``image``, ``path``,
            ``index``, ``skipped`` and, when labelled, ``labels``).
        device: Where the network runs.
        thumbnail_size: Side of the thumbnails in pixels (area-downsampled images, as the model sees them).
        amp_dtype: Autocast dtype on CUDA.
        channels_last: Channels-last images.
        show_progress: Show a progress bar.
    """
    feats_, targets_, thumbs_, paths, indices, skipped = [], [], [], [], [], []

    def keep(batch: dict, images: torch.Tensor, feats: torch.Tensor) -> None:
        feats_.append(feats.cpu())
        size = (thumbnail_size, thumbnail_size)
        thumbs_.append(F.interpolate(images.float(), size=size, mode="area").clamp_(0.0, 1.0).cpu())
        if batch.get("labels") is not None:
            targets_.append(batch["labels"].float().cpu())
        paths.extend(batch["path"])
        indices.append(batch["index"].cpu())

    def batches() -> Iterable[dict]:
        for batch in loader:
            skipped.extend(batch.get("skipped", []))
            yield batch

    _run(model, batches(), device, keep, amp_dtype=amp_dtype, channels_last=channels_last, show_progress=show_progress)
    width = classifier_layer(model).in_features
    return Embeddings(
        features=torch.cat(feats_).numpy() if feats_ else np.zeros((0, width), dtype=np.float32),
        targets=torch.cat(targets_).numpy() if targets_ else None,
        paths=paths,
        indices=torch.cat(indices).numpy().astype(np.int64) if indices else np.zeros(0, dtype=np.int64),
        thumbnails=torch.cat(thumbs_).numpy() if thumbs_ else np.zeros((0, 1, thumbnail_size, thumbnail_size), "f4"),
        skipped=skipped,
    )


def first_layer_filters(model: nn.Module) -> np.ndarray:
    """Weights of the first ``nn.Conv2d`` (``features.conv0`` in MONAI DenseNets), (out, in, k, k) float32.

    Raises:
        ValueError: when the network has no ``nn.Conv2d``.
    """
    net = unwrap_model(model)
    for module in net.modules():
        if isinstance(module, nn.Conv2d):
            return module.weight.detach().float().cpu().numpy().copy()
    raise ValueError(f"{type(net).__name__} has no nn.Conv2d layer")


def _run(
    model: nn.Module,
    items: Iterable[Any],
    device: torch.device | str,
    on_batch: _OnBatch,
    *,
    amp_dtype: torch.dtype | None,
    channels_last: bool,
    show_progress: bool,
) -> None:
    """Forward every item through the unwrapped network in eval mode; hand its features to ``on_batch``."""
    device = torch.device(device)
    # The plain network, not its DDP wrapper: DDP's forward broadcasts buffers, a collective that would
    # hang when only one rank extracts features; and hooks added after torch.compile may not fire.
    net = unwrap_model(model)
    captured: list[torch.Tensor] = []
    handle = classifier_layer(net).register_forward_pre_hook(lambda _m, args: captured.append(args[0].detach()))
    modes = {m: m.training for m in net.modules()}  # per module: a frozen backbone stays in eval mode
    net.eval()
    try:
        with torch.inference_mode():
            for item in tqdm(items, desc="features", disable=not show_progress, leave=False, dynamic_ncols=True):
                images = _images(item, device, channels_last)
                if images is None:
                    continue
                captured.clear()
                with autocast(device, amp_dtype):
                    net(images)
                if len(captured) != 1 or captured[0].ndim != 2:
                    raise ValueError("the final nn.Linear must be called once per forward, on (batch, features)")
                on_batch(item, images, captured[0].float())
    finally:
        handle.remove()
        for module, training in modes.items():
            module.training = training


def _images(item: Any, device: torch.device, channels_last: bool) -> torch.Tensor | None:
    """Images of one loader batch or tensor on ``device`` in [0, 1]; None for a batch without images."""
    if isinstance(item, dict):
        if not item.get("path", True) or item["image"].shape[0] == 0:
            return None
        return prepare_batch(item, device, channels_last)[0]
    images = to_unit_range(torch.as_tensor(item).to(device))
    if images.ndim == 3:
        images = images.unsqueeze(0)
    if channels_last:
        images = images.contiguous(memory_format=torch.channels_last)
    return images


__all__ = ["Embeddings", "classifier_layer", "collect_embeddings", "first_layer_filters", "penultimate_features"]
