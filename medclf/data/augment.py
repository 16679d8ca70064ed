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

import numpy as np
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


@dataclass(frozen=True)
class IntensityJitter:
    """Batched random contrast, brightness and gamma of [0, 1] images (the ``strong`` augmentation).

    Attributes:
        contrast: Maximum relative change of contrast around the image's mean.
        brightness: Maximum shift of intensity.
        gamma: Maximum absolute log2 of the gamma exponent (0.3: gamma in [0.81, 1.23]).
    """

    contrast: float = 0.2
    brightness: float = 0.1
    gamma: float = 0.3

    def __call__(self, images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """Jitter a (B, C, H, W) float batch in [0, 1]; the result is clipped to [0, 1]."""
        n = images.shape[0]
        u = (torch.rand(n, 3, generator=generator, dtype=torch.float64) * 2 - 1).to(images.device, images.dtype)
        contrast, shift = (1 + u[:, 0] * self.contrast).view(n, 1, 1, 1), (u[:, 1] * self.brightness).view(n, 1, 1, 1)
        mean = images.mean(dim=(1, 2, 3), keepdim=True)
        out = ((images - mean) * contrast + mean + shift).clamp(0, 1)
        return out.pow(torch.exp2(u[:, 2] * self.gamma).view(n, 1, 1, 1))


@dataclass(frozen=True)
class TrainingAugment:
    """The training batch's augmentation: affine (and flip), intensity jitter when strong, then mixup.

    Attributes:
        affine: The batched affine transform (None: off).
        intensity: The intensity jitter (None: off).
        mixup: Mixup's Beta(a, a) parameter ``a`` (0: off).
    """

    affine: AffineFlip | None = None
    intensity: IntensityJitter | None = None
    mixup: float = 0.0

    def __call__(
        self, images: torch.Tensor, targets: torch.Tensor, generator: torch.Generator
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Augmented images and their targets (mixed by mixup; a mixed target is unknown, NaN, where either
        image's is, so an unknown label stays out of the loss)."""
        if self.affine is not None:
            images = self.affine(images, generator)
        if self.intensity is not None:
            images = self.intensity(images, generator)
        if self.mixup and images.shape[0] > 1:
            images, targets = mix_pairs(images, targets, self.mixup, generator)
        return images, targets


def training_augment(augment: bool, strength: str, hflip: bool, mixup: float) -> TrainingAugment | None:
    """The augmentation of ``--augment``, ``--augment-strength``, ``--hflip`` and ``--mixup`` (None: nothing)."""
    flip = 0.5 if hflip else 0.0
    affine = intensity = None
    if augment:
        strong = strength == "strong"
        affine = AffineFlip(15.0, 0.15, 0.08, flip) if strong else AffineFlip(flip_prob=flip)
        intensity = IntensityJitter() if strong else None
    if affine is None and not mixup:
        return None
    return TrainingAugment(affine, intensity, mixup)


def mix_pairs(
    images: torch.Tensor, targets: torch.Tensor, alpha: float, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """Mixup (Zhang et al. 2018): each image and target blended with another of the batch, by one weight
    ``lam ~ Beta(alpha, alpha)`` per batch, taken as ``max(lam, 1 - lam)`` so each image stays the larger part.

    NaN targets (unknown) propagate: a mixed target is unknown where either of its two images' is.
    """
    seed = int(torch.randint(0, 2**31 - 1, (1,), generator=generator))
    lam = float(np.random.default_rng(seed).beta(alpha, alpha))
    lam = max(lam, 1 - lam)
    order = torch.randperm(images.shape[0], generator=generator).to(images.device)
    mixed = images * lam + images[order] * (1 - lam)
    return mixed, targets * lam + targets[order] * (1 - lam)


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
