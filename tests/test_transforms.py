"""Preprocessing: every input kind becomes a (1, S, S) image in [0, 1] and a (L,) labels vector."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from medclf.data.loaders import collate_samples
from medclf.data.transforms import SkipUnreadable, load_image, preprocessing, to_unit_range

from .conftest import shared_path

LABELS = ["effusion", "mass", "hernia"]
SIZE = 32


def record(path: Path | str) -> dict:
    values = np.array([1, 0, 1], np.float32)
    return {"image": str(path), "row": 2, "index": 0, **{n: values[i : i + 1] for i, n in enumerate(LABELS)}}


def check_sample(sample: dict, compact: torch.dtype = torch.uint8) -> torch.Tensor:
    assert sample["image"].dtype == compact
    assert type(sample["image"]) is torch.Tensor  # MONAI metadata is not cached
    image = to_unit_range(sample["image"])
    assert image.shape == (1, SIZE, SIZE) and image.dtype == torch.float32
    assert torch.isfinite(image).all() and image.min() >= 0 and image.max() <= 1
    assert sample["labels"].shape == (len(LABELS),) and sample["labels"].dtype == torch.float32
    assert sample["labels"].tolist() == [1.0, 0.0, 1.0]
    return image


def gradient(h: int = 40, w: int = 30) -> np.ndarray:
    return (np.add.outer(np.arange(h), np.arange(w)) * 255 / (h + w)).astype(np.uint8)


@pytest.mark.parametrize("mode", ["L", "RGB", "RGBA", "LA", "P"])
def test_png_modes_become_one_channel(tmp_path: Path, mode: str) -> None:
    path = tmp_path / f"{mode}.png"
    Image.fromarray(gradient()).convert(mode).save(path)
    image = check_sample(preprocessing(SIZE, LABELS)(record(path)))
    # the same picture in any mode gives (nearly) the same pixels
    reference = check_sample(preprocessing(SIZE, LABELS)(record(self_gray(tmp_path))))
    assert (image - reference).abs().max() < 2 / 255


def self_gray(tmp_path: Path) -> Path:
    path = tmp_path / "gray_reference.png"
    Image.fromarray(gradient()).save(path)
    return path


def test_rows_first_orientation(tmp_path: Path) -> None:
    pixels = np.zeros((64, 64), np.uint8)
    pixels[:16, :] = 255  # bright top band
    Image.fromarray(pixels).save(tmp_path / "top.png")
    image = load_image(tmp_path / "top.png", SIZE)[0]
    assert image[: SIZE // 4].mean() > 0.9 and image[SIZE // 2 :].mean() < 0.1


def test_16bit_png_keeps_precision(tmp_path: Path) -> None:
    pixels = (np.arange(64 * 64).reshape(64, 64) * 16).astype(np.uint16)  # 0 .. 65520
    Image.fromarray(pixels).save(tmp_path / "deep.png")
    sample = preprocessing(SIZE, LABELS)(record(tmp_path / "deep.png"))
    image = check_sample(sample, compact=torch.uint16)
    assert image.min() == 0 and image.max() == 1
    assert len(torch.unique(sample["image"].int())) > 256  # more levels than 8 bits hold


def test_constant_and_tiny_images_give_no_nan(tmp_path: Path) -> None:
    Image.fromarray(np.full((50, 70), 128, np.uint8)).save(tmp_path / "flat.png")
    Image.fromarray(np.eye(3, dtype=np.uint8) * 255).save(tmp_path / "tiny.png")
    Image.fromarray(np.zeros((2000, 300), np.uint8)).save(tmp_path / "tall.png")
    for name in ("flat.png", "tiny.png", "tall.png"):
        check_sample(preprocessing(SIZE, LABELS)(record(tmp_path / name)))
    assert to_unit_range(preprocessing(SIZE)(record(tmp_path / "flat.png"))["image"]).max() == 0


def test_unreadable_files_become_error_markers(tmp_path: Path) -> None:
    good = tmp_path / "good.png"
    Image.fromarray(gradient()).save(good)
    truncated = tmp_path / "truncated.png"
    truncated.write_bytes(good.read_bytes()[:60])
    empty = tmp_path / "empty.png"
    empty.write_bytes(b"")
    chain = SkipUnreadable(preprocessing(SIZE, LABELS))
    for path in (truncated, empty, tmp_path / "absent.png"):
        marker = chain(record(path))
        assert set(marker) == {"error", "path", "row", "index"}
        assert marker["path"] == str(path) and marker["row"] == 2 and marker["error"]
    batch = collate_samples([chain(record(good)), chain(record(empty))])
    assert batch["image"].shape == (1, 1, SIZE, SIZE)
    assert batch["skipped"][0]["path"] == str(empty)


def test_mixed_bit_depths_share_a_batch(tmp_path: Path) -> None:
    Image.fromarray(gradient()).save(tmp_path / "a.png")
    Image.fromarray(gradient().astype(np.uint16) * 257).save(tmp_path / "b.png")
    chain = preprocessing(SIZE, LABELS)
    batch = collate_samples([chain(record(tmp_path / "a.png")), chain(record(tmp_path / "b.png"))])
    assert batch["image"].dtype == torch.uint16
    images = to_unit_range(batch["image"])
    assert (images[0] - images[1]).abs().max() <= 0.5 / 255 + 1e-6  # the 8-bit copy was rounded once


def test_real_nih_pngs_including_rgba() -> None:
    folder = shared_path("nih", "starter256", "images")
    paths = sorted(folder.glob("*.png"))
    rgba = [p for p in paths if Image.open(p).mode == "RGBA"]
    assert len(rgba) == 5
    chain = preprocessing(SIZE, LABELS)
    for path in [*paths[:5], *rgba, shared_path("nih", "00000001_000.png")]:
        image = check_sample(chain(record(path)))
        assert image.std() > 0.05  # a radiograph, not a blank
