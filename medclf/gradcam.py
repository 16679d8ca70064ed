"""Grad-CAM saliency maps of a checkpoint's predictions, saved as overlays on the image.

:func:`gradcam_heatmap` runs :class:`monai.visualize.GradCAM` on a private copy of the network, so the
caller's model keeps its hooks, ``inplace`` flags, ``requires_grad`` flags and ``.grad`` untouched.
MONAI's default post-processing maps (min, max) to (1, 0), flipping the map; it is replaced here by the
usual min-max scaling to (0, 1), so 1 is the hottest pixel.
"""

from __future__ import annotations

import copy
import dataclasses
import logging
import re
from pathlib import Path
from typing import Any

import numpy as np
import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from monai.visualize import GradCAM
from torch import nn

from medclf.checkpoint import load_checkpoint, model_from_checkpoint
from medclf.config import ExplainConfig
from medclf.engine import resolve_device
from medclf.errors import ConfigError, ImageError
from medclf.models import unwrap_model
from medclf.report import save_figure
from medclf.transforms import load_image, root_cause

log = logging.getLogger(__name__)

TARGET_LAYER = "class_layers.relu"  # MONAI DenseNet: last dense features, before global pooling


def gradcam_heatmap(
    model: nn.Module, image: torch.Tensor, label_index: int, *, target_layer: str = TARGET_LAYER
) -> np.ndarray:
    """Grad-CAM of one label's logit, upsampled to the image size.

    Args:
        model: A medclf network (in eval mode; it is not modified).
        image: Preprocessed image, (C, S, S) or (1, C, S, S), as from :func:`medclf.transforms.load_image`.
        label_index: Output (logit) to explain.
        target_layer: Name of the module whose activations and gradients are used.

    Returns:
        (S, S) float32 array in [0, 1] (min-max scaled); all zeros when the map is flat or not finite,
        for example for a constant image.
    """
    net = copy.deepcopy(unwrap_model(model)).eval()
    names = [name for name, _ in net.named_modules()]
    if target_layer not in names:
        shown = ", ".join(n for n in names if n.count(".") == 1)
        raise ConfigError(f"layer {target_layer!r} not found in the network; its blocks: {shown}")
    net.requires_grad_(False)  # gradients flow from the input instead; no parameter .grad is filled
    device = next(net.parameters()).device
    x = image.detach().float().to(device)
    if x.ndim == 3:
        x = x.unsqueeze(0)
    x.requires_grad_(True)
    cam = GradCAM(nn_module=net, target_layers=target_layer, postprocessing=lambda m: m)
    with torch.enable_grad():
        heat = cam(x=x, class_idx=int(label_index))
    heat = heat.detach()[0, 0].float().cpu().numpy()
    low, high = float(heat.min()), float(heat.max())
    if not np.isfinite(heat).all() or not high - low > 1e-5 * max(abs(high), 1e-12):
        return np.zeros(x.shape[-2:], dtype=np.float32)
    return np.clip((heat - low) / (high - low), 0.0, 1.0).astype(np.float32)


def overlay_figure(image: np.ndarray, heatmap: np.ndarray, title: str, alpha: float = 0.45) -> Figure:
    """The image in gray with the heatmap over it (``jet``, semi-transparent) and a colorbar."""
    fig = Figure(figsize=(5.0, 4.3))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    ax.imshow(np.asarray(image, dtype=np.float32), cmap="gray", vmin=0.0, vmax=1.0)
    shown = ax.imshow(np.asarray(heatmap, dtype=np.float32), cmap="jet", alpha=alpha, vmin=0.0, vmax=1.0)
    fig.colorbar(shown, ax=ax, fraction=0.046, pad=0.04, label="Grad-CAM (relative)")
    ax.set_title(title)
    ax.set_axis_off()
    return fig


def explain_image(config: ExplainConfig | None = None, **overrides: Any) -> dict[str, Any]:
    """Write a Grad-CAM overlay of one image for each requested label of a checkpoint.

    Files are ``<out>/<image stem>_<label>_gradcam.png``; ``out`` defaults to
    ``<checkpoint folder>/explain_<image stem>``.

    Args:
        config: Settings; keyword arguments override its fields (or build it when it is None).

    Returns:
        ``{"image": path, "probabilities": {label: p} (every label of the checkpoint),
        "files": {label: png path} (the requested labels)}``.

    Raises:
        ConfigError: for a label the checkpoint does not have (the message lists the valid ones).
        ImageError: when the image cannot be read.
    """
    config = dataclasses.replace(config, **overrides) if config else ExplainConfig(**overrides)
    if not config.checkpoint or not config.image:
        raise ConfigError("explain needs a checkpoint and an image")
    checkpoint = load_checkpoint(config.checkpoint, map_location="cpu")
    labels, image_size = list(checkpoint["labels"]), int(checkpoint["image_size"])
    unknown = [name for name in config.label if name not in labels]
    if unknown:
        raise ConfigError(f"unknown label(s) {', '.join(unknown)}; the checkpoint has: {', '.join(labels)}")
    wanted = config.label or labels
    image = _read_image(config.image, image_size)

    device = resolve_device(config.device)
    model = model_from_checkpoint(checkpoint, device)
    with torch.no_grad():
        probs = torch.sigmoid(model(image.unsqueeze(0).to(device)))[0].float().cpu().tolist()
    probabilities = dict(zip(labels, probs, strict=True))

    stem = image_stem(config.image)
    out = Path(config.out) if config.out else Path(checkpoint["path"]).parent / f"explain_{stem}"
    pixels = image[0].numpy()
    files = {}
    for name in wanted:
        heat = gradcam_heatmap(model, image, labels.index(name))
        fig = overlay_figure(pixels, heat, f"{name}: p = {probabilities[name]:.3f}")
        path = save_figure(out / f"{stem}_{_safe(name)}_gradcam.png", fig)
        files[name] = str(path)
    return {"image": str(config.image), "probabilities": probabilities, "files": files}


def image_stem(path: str | Path) -> str:
    """File name without its image suffix (``scan.nii.gz`` -> ``scan``)."""
    name = Path(path).name
    return name[: -len(".nii.gz")] if name.lower().endswith(".nii.gz") else Path(name).stem


def _read_image(path: str | Path, image_size: int) -> torch.Tensor:
    if not Path(path).is_file():
        raise ImageError(f"image not found: {path}")
    try:
        return load_image(path, image_size)
    except Exception as e:  # any decoder, any format: all mean "this image is unusable"
        raise ImageError(f"cannot read image {path}: {root_cause(e)}") from None


def _safe(name: str) -> str:
    """A label name usable in a file name."""
    return re.sub(r"[^\w.-]+", "_", name).strip("_") or "label"


__all__ = ["explain_image", "gradcam_heatmap", "image_stem", "overlay_figure"]
