"""Grad-CAM saliency maps of a checkpoint's predictions, saved as overlays on the image.

:func:`gradcam_heatmap` runs :class:`monai.visualize.GradCAM` on a private copy of the network, so the
caller's model keeps its hooks, ``inplace`` flags, ``requires_grad`` flags and ``.grad`` untouched.
MONAI's default post-processing maps (min, max) to (1, 0), flipping the map; it is replaced here by the
usual min-max scaling to (0, 1), so 1 is the hottest pixel.
"""

from __future__ import annotations

import copy

import numpy as np
import torch
from monai.visualize import GradCAM
from torch import nn

from medclf.errors import ConfigError
from medclf.model.networks import unwrap_model
from medclf.model.registry import architecture_of


def gradcam_heatmap(
    model: nn.Module, image: torch.Tensor, label_index: int, *, target_layer: str | None = None
) -> np.ndarray:
    """Grad-CAM of one label's logit, upsampled to the image size.

    Args:
        model: A medclf network (in eval mode; it is not modified).
        image: Preprocessed image, (C, S, S) or (1, C, S, S), as from :func:`medclf.data.transforms.load_image`.
        label_index: Output (logit) to explain.
        target_layer: Name of the module whose activations and gradients are used (default: the
            architecture's ``gradcam_layer`` in :mod:`medclf.model.registry`).

    Returns:
        (S, S) float32 array in [0, 1] (min-max scaled); all zeros when the map is flat or not finite,
        for example for a constant image.
    """
    net = copy.deepcopy(unwrap_model(model)).eval()
    target_layer = target_layer or architecture_of(net).gradcam_layer
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
