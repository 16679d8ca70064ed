"""DICOMs are shown as a radiologist sees them: modality LUT, then the (first) window, then MONOCHROME1 inversion."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom
import pytest
import torch
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, SecondaryCaptureImageStorage, generate_uid

import medclf.data.transforms as transforms
from medclf.data.transforms import load_image, preprocessing

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
SHARED_DICOMS = [*sorted((SHARED / "dicom").glob("*.dcm")), SHARED / "nih" / "sample_cxr.dcm"]
SIZE = 64


def _shared(path: Path) -> Path:
    if not path.exists():
        pytest.skip(f"shared DICOM test material not found: {path}")
    return path


@pytest.mark.parametrize("path", SHARED_DICOMS, ids=lambda p: p.name)
def test_real_dicoms_load_finite_in_range(path: Path) -> None:
    image = load_image(_shared(path), SIZE)
    assert image.shape == (1, SIZE, SIZE)
    assert torch.isfinite(image).all() and image.min() == 0 and image.max() == 1
    assert image.std() > 0.05


@pytest.mark.parametrize("path", SHARED_DICOMS, ids=lambda p: p.name)
def test_real_dicoms_match_the_previous_reader(path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # These files have no rescale and a window (if any) that covers their whole pixel range, so the
    # displayed image is the stored one: identical to MONAI's PydicomReader path (the fallback).
    path = _shared(path)
    windowed = preprocessing(SIZE)({"image": str(path), "row": 0, "index": 0})["image"]
    monkeypatch.setattr(transforms, "read_dicom", lambda _: None)
    before = preprocessing(SIZE)({"image": str(path), "row": 0, "index": 0})["image"]
    assert windowed.dtype == before.dtype
    assert (windowed.int() - before.int()).abs().max() <= 1


def test_monochrome1_stays_bone_bright() -> None:
    path = _shared(SHARED / "dicom" / "chest_monochrome1_15bit.dcm")
    assert pydicom.dcmread(path, stop_before_pixels=True).PhotometricInterpretation == "MONOCHROME1"
    image = load_image(path, SIZE)[0]
    spine = image[SIZE // 4 : 3 * SIZE // 4, SIZE // 2 - 3 : SIZE // 2 + 3].mean()
    lungs = torch.cat(
        [image[SIZE // 4 : SIZE // 2, SIZE // 5 : SIZE // 3], image[SIZE // 4 : SIZE // 2, -SIZE // 3 : -SIZE // 5]]
    )
    assert spine > lungs.mean() + 0.1


def test_monochrome1_tagged_copy_is_the_inverse() -> None:
    # chest_monochrome1_8bit.dcm holds sample_cxr.dcm's MONOCHROME2 pixels tagged MONOCHROME1.
    normal = load_image(_shared(SHARED / "nih" / "sample_cxr.dcm"), SIZE)
    tagged = load_image(_shared(SHARED / "dicom" / "chest_monochrome1_8bit.dcm"), SIZE)
    assert torch.allclose(tagged, 1 - normal, atol=1e-6)


def _write_dicom(path: Path, stored: np.ndarray, photometric: str = "MONOCHROME2", **tags: object) -> Path:
    """A minimal single-frame 16-bit Secondary Capture DICOM file with extra tags (e.g. a window)."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = SecondaryCaptureImageStorage
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.Modality = "OT"
    ds.Rows, ds.Columns = stored.shape
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = photometric
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    for name, value in tags.items():
        setattr(ds, name, value)
    ds.PixelData = stored.astype(np.uint16).tobytes()
    ds.save_as(path, enforce_file_format=True)
    return path


# Column j holds stored value 64 j (0..4032), i.e. 128 j - 1000 after RescaleSlope 2 / RescaleIntercept -1000.
RAMP = np.tile(np.arange(SIZE) * 64, (SIZE, 1))
RESCALE = {"RescaleSlope": 2, "RescaleIntercept": -1000}
BELOW = slice(0, 23)  # 128 j - 1000 < 2000 (the window below is [2000, 4000])
ABOVE = slice(40, SIZE)  # 128 j - 1000 > 4000


def _columns(image: torch.Tensor) -> torch.Tensor:
    assert torch.isfinite(image).all() and image.min() >= 0 and image.max() <= 1
    column = image[0].mean(dim=0)
    assert torch.allclose(image[0], column.expand_as(image[0]), atol=1e-4)  # a pure horizontal ramp
    return column


def test_window_saturates_outside_the_window(tmp_path: Path) -> None:
    path = _write_dicom(tmp_path / "w.dcm", RAMP, WindowCenter=3000, WindowWidth=2000, **RESCALE)
    column = _columns(load_image(path, SIZE))
    assert torch.allclose(column[BELOW], torch.zeros(1), atol=1e-4)  # without windowing: 0 .. 0.36
    assert torch.allclose(column[ABOVE], torch.ones(1), atol=1e-4)  # without windowing: 0.63 .. 1
    inside = column[BELOW.stop + 1 : ABOVE.start - 1]
    assert (inside > 0.01).all() and (inside < 0.99).all() and (inside.diff() > 0).all()


def test_window_center_is_in_rescaled_units(tmp_path: Path) -> None:
    # The window applies to modality values (128 j - 1000), not stored ones: column 23.4 is the window's lower end.
    path = _write_dicom(tmp_path / "w.dcm", RAMP, WindowCenter=3000, WindowWidth=2000, **RESCALE)
    column = _columns(load_image(path, SIZE))
    middle = round((3000 + 1000) / 128)  # column at the window centre
    assert abs(float(column[middle]) - 0.5) < 0.05


def test_first_of_several_windows_is_used(tmp_path: Path) -> None:
    first = _write_dicom(tmp_path / "a.dcm", RAMP, WindowCenter=3000, WindowWidth=2000, **RESCALE)
    several = _write_dicom(tmp_path / "b.dcm", RAMP, WindowCenter=[3000, 500], WindowWidth=[2000, 400], **RESCALE)
    assert torch.allclose(load_image(first, SIZE), load_image(several, SIZE), atol=1e-6)


def test_monochrome1_is_inverted_after_windowing(tmp_path: Path) -> None:
    path = _write_dicom(tmp_path / "m1.dcm", RAMP, "MONOCHROME1", WindowCenter=3000, WindowWidth=2000, **RESCALE)
    column = _columns(load_image(path, SIZE))
    assert torch.allclose(column[BELOW], torch.ones(1), atol=1e-4)  # low values are bright
    assert torch.allclose(column[ABOVE], torch.zeros(1), atol=1e-4)


def test_without_window_the_rescaled_ramp_stays_linear(tmp_path: Path) -> None:
    path = _write_dicom(tmp_path / "r.dcm", RAMP, **RESCALE)
    sample = preprocessing(SIZE)({"image": str(path), "row": 0, "index": 0})
    assert sample["image"].dtype == torch.uint16
    column = _columns(transforms.to_unit_range(sample["image"]))
    assert torch.allclose(column, torch.linspace(0, 1, SIZE), atol=1e-3)
