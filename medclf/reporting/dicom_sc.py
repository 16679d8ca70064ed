"""A Grad-CAM overlay as a DICOM Secondary Capture image in the source image's study (highdicom)."""

from __future__ import annotations

from typing import Any

import numpy as np

from medclf.reporting.dicom_sr import MANUFACTURER, fix_copied_values


def overlay_rgb(pixels: np.ndarray, heat: np.ndarray, alpha: float = 0.4) -> np.ndarray:
    """The image in gray with the heatmap (``jet``) blended over it: (H, W, 3) uint8."""
    import matplotlib

    gray = np.clip(np.asarray(pixels, dtype=np.float64), 0.0, 1.0)[..., None].repeat(3, axis=2)
    colour = matplotlib.colormaps["jet"](np.clip(np.asarray(heat, dtype=np.float64), 0.0, 1.0))[..., :3]
    return np.round(255.0 * ((1.0 - alpha) * gray + alpha * colour)).astype(np.uint8)


def overlay_secondary_capture(source: Any, rgb: np.ndarray, description: str, series_number: int = 902) -> Any:
    """The Secondary Capture dataset of ``rgb`` in the study of the pydicom dataset ``source`` (patient and
    study copied from it by highdicom; a new series)."""
    import highdicom as hd

    sc = hd.sc.SCImage.from_ref_dataset(
        ref_dataset=source, pixel_array=rgb, photometric_interpretation="RGB", bits_allocated=8,
        coordinate_system="PATIENT", series_instance_uid=hd.UID(), series_number=series_number,
        sop_instance_uid=hd.UID(), instance_number=1, manufacturer=MANUFACTURER,
        patient_orientation=_orientation(source) or ("L", "F"),
        series_description=description[:64],
    )  # fmt: skip
    if _orientation(source) is None:  # highdicom requires one; Type 2 allows "unknown" (empty), which is the truth
        sc.PatientOrientation = ""
    if "Laterality" not in sc:  # Type 2C in General Series: present, empty when the source does not say
        sc.Laterality = source.get("Laterality", "") or ""
    fix_copied_values(sc)
    return sc


def _orientation(source: Any) -> tuple[str, str] | None:
    """The source's Patient Orientation (the overlay has the source's rows and columns), when it has both."""
    values = [str(v) for v in (source.get("PatientOrientation") or [])]
    return (values[0], values[1]) if len(values) == 2 and all(values) else None
