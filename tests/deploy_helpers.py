"""Shared by the export and DICOM-result tests: checkpoints without training, DICOM sources, dciodvfy."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

LABELS = ["atelectasis", "effusion", "pleural_thickening"]


def make_checkpoint(path: Path, model: str, size: int = 32, labels: list[str] | None = None, csv: str = "") -> Path:
    """A randomly initialised checkpoint with temperatures other than 1 (so calibration shows)."""
    import torch

    from medclf.model.checkpoint import Checkpoint, save_checkpoint
    from medclf.model.networks import build_model

    labels = labels or LABELS
    torch.manual_seed(0)
    net = build_model(model, len(labels))
    n = len(labels)
    checkpoint = Checkpoint(
        model=net.state_dict(), model_name=model, labels=labels, image_size=size,
        thresholds=[min(0.3 + 0.1 * i, 0.9) for i in range(n)], temperatures=[1.0 + 0.25 * i for i in range(n)],
        config={"csv": [csv]} if csv else {}, medclf_version="test",
    )  # fmt: skip
    save_checkpoint(path, checkpoint)
    return path


def write_source_dicom(path: Path, seed: int = 0, bits: int = 16) -> Path:
    """A valid CR image with patient and study modules, as a PACS would send it."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 2**bits if bits == 8 else 4096, size=(80, 72)).astype(np.uint8 if bits == 8 else np.uint16)
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID = "1.2.840.10008.5.1.4.1.1.1", generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID
    ds.PatientName, ds.PatientID, ds.PatientBirthDate, ds.PatientSex = "Doe^Jane", f"P{seed:04d}", "19600101", "F"
    ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
    ds.StudyDate, ds.StudyTime, ds.StudyID, ds.AccessionNumber = "20240102", "101500", "S1", f"A{seed}"
    ds.ReferringPhysicianName, ds.Modality, ds.SeriesNumber, ds.InstanceNumber = "", "CR", 1, 1
    ds.BodyPartExamined, ds.ViewPosition, ds.PatientOrientation, ds.Laterality = "CHEST", "PA", ["L", "F"], ""
    ds.Manufacturer, ds.ImageType = "test", ["ORIGINAL", "PRIMARY"]
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.Rows, ds.Columns, ds.BitsAllocated = pixels.shape[0], pixels.shape[1], bits
    ds.BitsStored, ds.HighBit, ds.PixelRepresentation = (8, 7, 0) if bits == 8 else (12, 11, 0)
    ds.PixelData = pixels.tobytes()
    ds.save_as(path, enforce_file_format=True)
    return path


def dciodvfy_errors(path: Path) -> list[str]:
    """dciodvfy's error lines for a file (the test is skipped where dciodvfy is not installed)."""
    if shutil.which("dciodvfy") is None:
        pytest.skip("dciodvfy (dicom3tools) is not installed: apt-get install dicom3tools")
    done = subprocess.run(["dciodvfy", str(path)], capture_output=True, text=True, timeout=60)
    return [line for line in (done.stdout + done.stderr).splitlines() if line.startswith("Error")]
