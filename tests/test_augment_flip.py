"""--hflip controls the horizontal flip of the training augmentation."""

from __future__ import annotations

import torch

from medclf import TrainConfig
from medclf.cli import build_parser
from medclf.data.augment import AffineFlip


def _asymmetric_batch(n: int = 8, size: int = 16) -> torch.Tensor:
    """Images whose left half is bright and right half dark, plus a per-image ramp: mirrors differ."""
    images = torch.zeros(n, 1, size, size)
    images[..., : size // 2] = 1.0
    images += torch.linspace(0, 0.3, size).view(1, 1, size, 1) * torch.arange(1, n + 1).view(n, 1, 1, 1) / n
    return images


def _mirrored(images: torch.Tensor, flip_prob: float, seed: int) -> torch.Tensor:
    """Per image: whether the pure (no rotation/zoom/shift) augmentation returned the mirror image."""
    aug = AffineFlip(rotate_degrees=0.0, zoom=0.0, shift=0.0, flip_prob=flip_prob)
    out = aug(images, torch.Generator().manual_seed(seed))
    same = torch.isclose(out, images, atol=1e-5).flatten(1).all(1)
    flipped = torch.isclose(out, images.flip(-1), atol=1e-5).flatten(1).all(1)
    assert bool((same ^ flipped).all()), "without rotation/zoom/shift the output is the image or its mirror"
    return flipped


def test_flip_prob_zero_never_mirrors() -> None:
    images = _asymmetric_batch()
    for seed in range(200):
        assert not _mirrored(images, 0.0, seed).any()


def test_flip_prob_one_always_mirrors() -> None:
    images = _asymmetric_batch()
    for seed in range(200):
        assert _mirrored(images, 1.0, seed).all()


def test_default_flip_prob_mirrors_about_half() -> None:
    images = _asymmetric_batch(n=64)
    rate = torch.stack([_mirrored(images, 0.5, seed) for seed in range(20)]).float().mean()
    assert 0.4 < rate < 0.6


def test_flip_off_keeps_the_rest_of_the_augmentation_identical() -> None:
    # flip_prob only decides the sign of the flip: rotation, zoom and shift draw the same random numbers.
    images = torch.rand(4, 1, 24, 24, generator=torch.Generator().manual_seed(1))
    with_flip = AffineFlip(flip_prob=1.0)(images, torch.Generator().manual_seed(3))
    without = AffineFlip(flip_prob=0.0)(images, torch.Generator().manual_seed(3))
    assert not torch.allclose(with_flip, without)
    assert AffineFlip().flip_prob == 0.5  # the default, used when hflip is on: unchanged training


def test_hflip_config_and_cli() -> None:
    assert TrainConfig(csv="x").hflip is True
    assert TrainConfig(csv="x", hflip=False).hflip is False
    parser = build_parser(TrainConfig, "p", "d")
    assert parser.parse_args(["--no-hflip"]).hflip is False
    assert parser.parse_args(["--hflip"]).hflip is True
