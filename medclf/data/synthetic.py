"""Synthetic chest-X-ray-like images with a learnable signal per label.

Each image is a soft chest silhouette (dark lung fields, bright mediastinum, rib stripes, noise). Label
``k`` is present when a bright blob sits in its own cell of a 4 x 4 grid (label 0 in the top-left
corner), so a classifier can learn every label and a saliency map should point at the cell. A few
images are saved as RGB or RGBA PNGs, as in the NIH release, to exercise the conversion to one channel.
Used by the demo and the tests; never for claims about real radiographs.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from medclf.data.manifest import NIH_LABELS
from medclf.reporting.files import make_folder, write_bytes, write_csv

GRID = 4


def cell_center(label_index: int, size: int) -> tuple[float, float]:
    """(row, column) pixel centre of a label's grid cell."""
    r, c = divmod(label_index % (GRID * GRID), GRID)
    step = size / GRID
    return (r + 0.5) * step, (c + 0.5) * step


def synthetic_image(present: Sequence[int], size: int, rng: np.random.Generator) -> np.ndarray:
    """One (size, size) uint8 image with blobs in the cells of the labels in ``present`` (0/1 each)."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
    img = 0.55 + 0.15 * yy  # brighter towards the abdomen
    for side in (-1, 1):
        cx = 0.5 + side * (0.2 + rng.normal(0, 0.01))
        lung = ((xx - cx) / 0.17) ** 2 + ((yy - 0.5) / 0.33) ** 2
        img -= 0.25 * np.clip(1 - lung, 0, 1)
    img += 0.12 * np.exp(-(((xx - 0.5) / 0.07) ** 2))  # mediastinum
    img += 0.03 * np.sin(yy * np.pi * rng.uniform(14, 18) + rng.uniform(0, np.pi))  # ribs
    radius = size / 14
    for k, flag in enumerate(present):
        if flag:
            cy, cx = cell_center(k, size)
            cy += rng.normal(0, size / 40)
            cx += rng.normal(0, size / 40)
            d2 = ((yy * size - cy) ** 2 + (xx * size - cx) ** 2) / radius**2
            img += rng.uniform(0.3, 0.45) * np.exp(-d2)
    img += rng.normal(0, 0.04, size=img.shape)
    return (np.clip(img, 0, 1) * 255).astype(np.uint8)


def make_synthetic_dataset(
    out_dir: str | Path,
    n_images: int = 1000,
    image_size: int = 128,
    labels: Sequence[str] = NIH_LABELS,
    seed: int = 0,
    splits: tuple[float, float, float] = (0.7, 0.15, 0.15),
    color_fraction: float = 0.04,
) -> Path:
    """Write PNGs and a manifest ``dataset.csv`` under ``out_dir``.

    Args:
        out_dir: Folder for ``images/`` and ``dataset.csv``.
        n_images: Number of images.
        image_size: Side length in pixels.
        labels: Label column names (at most 16: one grid cell each).
        seed: Random seed; the same seed gives the same files.
        splits: Fractions of TRAIN, VALIDATION and TEST.
        color_fraction: Fraction of images saved as RGB or RGBA.

    Returns:
        Path of the manifest.
    """
    if len(labels) > GRID * GRID:
        raise ValueError(f"at most {GRID * GRID} labels fit the grid")
    rng = np.random.default_rng(seed)
    out_dir = Path(out_dir)
    make_folder(out_dir / "images", "the synthetic images folder")
    prevalence = np.linspace(0.3, 0.1, num=len(labels))
    truth = (rng.random((n_images, len(labels))) < prevalence).astype(int)
    split_names = rng.choice(["TRAIN", "VALIDATION", "TEST"], size=n_images, p=list(splits))
    rows = []
    for i in range(n_images):
        pixels = synthetic_image(truth[i], image_size, rng)
        img = Image.fromarray(pixels)
        draw = rng.random()
        if draw < color_fraction / 2:
            img = img.convert("RGBA")
        elif draw < color_fraction:
            img = img.convert("RGB")
        name = f"images/img_{i:05d}.png"
        png = io.BytesIO()
        img.save(png, format="PNG")
        write_bytes(out_dir / name, png.getvalue())  # atomic, as every file medclf writes
        rows.append({"image": name, "split": split_names[i], **dict(zip(labels, truth[i].tolist(), strict=True))})
    manifest = out_dir / "dataset.csv"
    write_csv(manifest, rows, ["image", "split", *labels])
    return manifest
