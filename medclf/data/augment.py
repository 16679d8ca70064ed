"""Random augmentation applied to whole batches on the training device.

MONAI's random dictionary transforms work on one image at a time on the CPU; at GPU speeds that loop,
not the network, becomes the bottleneck. This module draws one small affine transform (rotation, zoom,
shift) and an optional horizontal flip per image and applies all of them with a single ``grid_sample``
call, on whatever device the batch is on. Parameters come from a seeded generator, so a step's
augmentation is reproducible (see :mod:`medclf.data.seeds`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class AffineFlip:
    """Batched random affine + horizontal flip.

    Attributes:
        rotate_degrees: Maximum absolute rotation.
        zoom: Maximum relative zoom in or out.
        shift: Maximum shift, as a fraction of the image side.
        flip_prob: Probability of a horizontal flip.
    """

    rotate_degrees: float = 10.0
    zoom: float = 0.1
    shift: float = 0.05
    flip_prob: float = 0.5

    def __call__(self, images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """Augment a (B, C, H, W) float batch; ``generator`` must be a CPU generator."""
        n = images.shape[0]
        if n == 0:
            return images
        u = torch.rand(n, 5, generator=generator, dtype=torch.float64) * 2 - 1  # uniform in [-1, 1]
        angle = u[:, 0] * math.radians(self.rotate_degrees)
        scale = 1 + u[:, 1] * self.zoom
        flip = torch.where(u[:, 4] < 2 * self.flip_prob - 1, -1.0, 1.0).to(torch.float64)
        cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
        theta = torch.zeros(n, 2, 3, dtype=torch.float64)
        theta[:, 0, 0] = cos * flip
        theta[:, 0, 1] = -sin
        theta[:, 1, 0] = sin * flip
        theta[:, 1, 1] = cos
        theta[:, 0, 2] = u[:, 2] * self.shift * 2
        theta[:, 1, 2] = u[:, 3] * self.shift * 2
        theta = theta.to(device=images.device, dtype=images.dtype)
        grid = F.affine_grid(theta, list(images.shape), align_corners=False)
        return F.grid_sample(images, grid, mode="bilinear", padding_mode="border", align_corners=False)


def tta_views(shift: float = 0.04, hflip: bool = False) -> list[torch.Tensor]:
    """Fixed affine matrices for test-time augmentation: the image itself first, then shifts of
    ``shift`` (fraction of the side) left, right, up and down, then its mirror image when ``hflip``.

    Only transforms the model saw in training are used: shifts always (within the training range), a
    mirror only when the model was trained with flips (a chest film mirrored puts the heart on the right).

    Returns:
        (V, 2, 3) float64 matrices for :func:`apply_view`.
    """
    moves = [(0.0, 0.0), (-shift, 0.0), (shift, 0.0), (0.0, -shift), (0.0, shift)]
    views = [torch.tensor([[1.0, 0.0, 2 * dx], [0.0, 1.0, 2 * dy]], dtype=torch.float64) for dx, dy in moves]
    if hflip:
        views.append(torch.tensor([[-1.0, 0.0, 0.0], [0.0, 1.0, 0.0]], dtype=torch.float64))
    return views


def apply_view(images: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
    """One fixed affine transform of a (B, C, H, W) float batch; the identity returns the batch itself."""
    if torch.equal(theta, torch.eye(2, 3, dtype=theta.dtype)):
        return images
    theta = theta.to(device=images.device, dtype=images.dtype).expand(images.shape[0], 2, 3)
    grid = F.affine_grid(theta, list(images.shape), align_corners=False)
    return F.grid_sample(images, grid, mode="bilinear", padding_mode="border", align_corners=False)
