"""DICOM (real files, MONOCHROME1 inverted) and NIfTI inputs go through the same manifest and pipeline."""

from __future__ import annotations

import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
from PIL import Image

from medclf import TrainConfig, train
from medclf.data.transforms import load_image, preprocessing

from .conftest import shared_path

SIZE = 64


def test_real_dicom_radiograph() -> None:
    image = load_image(shared_path("nih", "sample_cxr.dcm"), SIZE)
    assert image.shape == (1, SIZE, SIZE) and image.min() == 0 and image.max() == 1
    assert image.std() > 0.1


def test_monochrome1_is_inverted() -> None:
    # The same pixels stored as MONOCHROME2 (sample_cxr.dcm) and tagged MONOCHROME1: inverse images.
    normal = load_image(shared_path("nih", "sample_cxr.dcm"), SIZE)
    tagged = load_image(shared_path("dicom", "chest_monochrome1_8bit.dcm"), SIZE)
    assert torch.allclose(tagged, 1 - normal, atol=1e-6)


def test_15bit_monochrome1_radiograph_looks_like_a_chest() -> None:
    path = shared_path("dicom", "chest_monochrome1_15bit.dcm")
    sample = preprocessing(SIZE)({"image": str(path), "row": 2, "index": 0})
    assert sample["image"].dtype == torch.uint16  # deeper than 8 bits: kept in 16
    image = sample["image"].float()[0] / 65535
    spine = image[SIZE // 4 : 3 * SIZE // 4, SIZE // 2 - 3 : SIZE // 2 + 3].mean()
    lungs = torch.cat(
        [image[SIZE // 4 : SIZE // 2, SIZE // 5 : SIZE // 3], image[SIZE // 4 : SIZE // 2, -SIZE // 3 : -SIZE // 5]]
    )
    assert spine > lungs.mean() + 0.1  # bone bright, air dark: displayed the right way round


@pytest.mark.parametrize("shape", [(40, 30), (40, 30, 1)])
def test_nifti_matches_the_same_pixels_as_png(tmp_path: Path, shape: tuple[int, ...]) -> None:
    pixels = (np.add.outer(np.arange(40), np.arange(30) * 3) % 256).astype(np.uint8)
    pixels[:8] = 255  # a bright band at the top fixes orientation
    Image.fromarray(pixels).save(tmp_path / "x.png")
    nib.save(nib.Nifti1Image(pixels.reshape(shape), np.eye(4)), tmp_path / "x.nii.gz")
    from_png = load_image(tmp_path / "x.png", SIZE)
    from_nifti = load_image(tmp_path / "x.nii.gz", SIZE)
    assert torch.allclose(from_png, from_nifti, atol=1e-6)


def test_mixed_formats_train_from_one_manifest(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    lines = ["image,split,finding"]
    for i in range(24):
        pixels = rng.integers(0, 255, (48, 48)).astype(np.uint8)
        kind = i % 3
        if kind == 0:
            name = f"{i}.png"
            Image.fromarray(pixels).save(tmp_path / name)
        elif kind == 1:
            name = f"{i}.nii.gz"
            nib.save(nib.Nifti1Image(pixels.astype(np.int16), np.eye(4)), tmp_path / name)
        else:
            name = f"{i}.dcm"
            shutil.copy(shared_path("nih", "sample_cxr.dcm"), tmp_path / name)
        lines.append(f"{name},{'TRAIN' if i < 16 else 'VALIDATION'},{i % 2}")
    (tmp_path / "m.csv").write_text("\n".join(lines) + "\n")
    result = train(TrainConfig(csv=str(tmp_path / "m.csv"), out=str(tmp_path / "run"), labels=["finding"],
                               image_size=32, model="densenet_tiny", epochs=1, batch_size=8, device="cpu",
                               progress=False, num_workers=0, figure_every=0))  # fmt: skip
    assert result.epochs_completed == 1 and np.isfinite(result.history[0]["train_loss"])
