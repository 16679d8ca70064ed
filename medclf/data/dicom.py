"""DICOM pixels as a radiologist sees them: modality LUT, then VOI LUT / window, then MONOCHROME1 inversion.

:func:`read_dicom` reads a single-frame grayscale DICOM with pydicom and applies, in the order of the
DICOM grayscale pipeline (PS3.4 N.2.1):

1. the modality LUT: ``RescaleSlope``/``RescaleIntercept`` or a Modality LUT Sequence
   (:func:`pydicom.pixels.apply_modality_lut`), giving e.g. Hounsfield units;
2. the VOI LUT: ``WindowCenter``/``WindowWidth`` (with ``VOILUTFunction``) or a VOI LUT Sequence
   (:func:`pydicom.pixels.apply_voi_lut`; a sequence is preferred when both are present). Values outside the
   window saturate at the ends of the output range. **When a file offers several windows or VOI LUTs, the
   first one is used**;
3. MONOCHROME1 (low value = bright) is inverted within the value range, so that bone is bright in every
   image.

Per-image min/max scaling to the cache type happens afterwards, in :mod:`medclf.data.transforms`.
Multi-frame and colour DICOMs are not handled here (:func:`read_dicom` returns ``None``); the caller reads
them with MONAI's ``PydicomReader`` as before.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pydicom
import torch
from monai.data import MetaTensor

try:  # pydicom >= 3
    from pydicom.pixels import apply_modality_lut, apply_voi_lut
except ImportError:  # pragma: no cover - pydicom 2.x
    from pydicom.pixel_data_handlers.util import apply_modality_lut, apply_voi_lut


def photometric(ds: Any) -> str:
    """The dataset's PhotometricInterpretation, upper case ('' when absent)."""
    return str(ds.get("PhotometricInterpretation", "") or "").strip().upper()


def has_modality_lut(ds: Any) -> bool:
    """Whether a rescale or Modality LUT Sequence is present."""
    return "ModalityLUTSequence" in ds or "RescaleSlope" in ds or "RescaleIntercept" in ds


def has_voi_lut(ds: Any) -> bool:
    """Whether a VOI LUT Sequence or a window (center and width) is present."""
    return bool(ds.get("VOILUTSequence")) or ("WindowCenter" in ds and "WindowWidth" in ds)


def read_dicom(path: str | Path) -> tuple[torch.Tensor, int] | None:
    """A single-frame grayscale DICOM as displayed, or ``None`` for multi-frame and colour files.

    Returns:
        ``(pixels, bits)``: a float32 (H, W) MetaTensor without a channel axis (as MONAI's readers give
        one), and the cache depth: 8 for an 8-bit file whose stored values are shown as is, otherwise 16.
    """
    ds = pydicom.dcmread(str(path))
    frames = int(ds.get("NumberOfFrames", 1) or 1)
    if frames != 1 or int(ds.get("SamplesPerPixel", 1) or 1) != 1 or not photometric(ds).startswith("MONOCHROME"):
        return None
    raw = ds.pixel_array
    arr: np.ndarray = raw
    modality, voi = has_modality_lut(ds), has_voi_lut(ds)
    if modality:
        arr = apply_modality_lut(arr, ds)
    if voi:
        arr = apply_voi_lut(arr, ds, index=0)
    arr = np.asarray(arr, dtype=np.float64)
    if photometric(ds) == "MONOCHROME1":  # low values are bright: invert within the value range
        arr = arr.max() + arr.min() - arr
    bits = 8 if raw.dtype == np.uint8 and not (modality or voi) else 16
    meta = {
        "original_channel_dim": float("nan"),
        "spatial_shape": np.asarray(arr.shape),
        "filename_or_obj": str(path),
        "PhotometricInterpretation": photometric(ds),
    }
    return MetaTensor(torch.from_numpy(arr.astype(np.float32)), meta=meta), bits


__all__ = ["has_modality_lut", "has_voi_lut", "photometric", "read_dicom"]
