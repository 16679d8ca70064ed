"""DICOM results a PACS can show: predict's Comprehensive SRs and explain's Secondary Captures.

Both go into the source image's study, so they need a DICOM source; a PNG (or other) input gets one line
saying so. Labels are checked as DICOM code meanings before anything runs.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from medclf import __version__
from medclf.data.transforms import is_dicom_file
from medclf.errors import ConfigError
from medclf.model.checkpoint import Checkpoint
from medclf.reporting.dicom_codes import check_code_meaning
from medclf.reporting.dicom_sc import overlay_rgb, overlay_secondary_capture
from medclf.reporting.dicom_sr import Findings, findings_sr, write_dicom
from medclf.reporting.provenance import sha256_file
from medclf.reporting.result_folder import new_result_set

log = logging.getLogger(__name__)
NEEDS_DICOM = "needs a DICOM source study (its Study Instance UID, patient and study), and {path} is not DICOM"


def check_dicom_request(paths: Sequence[str], labels: Sequence[str], what: str) -> list[str]:
    """The DICOM inputs among ``paths``, after checking the labels as code meanings.

    Raises:
        ConfigError: when a label cannot be a code meaning, or no input is DICOM.
    """
    for label in labels:
        check_code_meaning(label)
    dicoms = [p for p in paths if is_dicom_file(p)]
    if not dicoms:
        shown = paths[0] if len(paths) == 1 else f"none of the {len(paths)} images ({paths[0]}, ...)"
        raise ConfigError(f"{what}: a DICOM result " + NEEDS_DICOM.format(path=shown) + "; nothing was written")
    for path in paths:
        if path not in dicoms:
            log.warning("%s: no SR for %s: an SR %s", what, path, NEEDS_DICOM.format(path="it"))
    return dicoms


def _unique_name(stem: str, used: set[str], suffix: str) -> str:
    name, i = f"{stem}{suffix}", 1
    while name in used:
        i += 1
        name = f"{stem}_{i}{suffix}"
    used.add(name)
    return name


def write_findings_srs(
    folder: str, checkpoint: Checkpoint, paths: Sequence[str], probs: np.ndarray, calls: np.ndarray,
    thresholds: Sequence[float],
) -> list[str]:  # fmt: skip
    """One Comprehensive SR per DICOM image of ``paths`` (rows of ``probs`` / ``calls``), written as one set
    into ``folder``; returns the files."""
    import pydicom

    sha = sha256_file(checkpoint.path) or ""
    written, used = [], set()
    with new_result_set(folder, "the SR folder") as staging:
        for i, path in enumerate(paths):
            if not is_dicom_file(path):
                continue
            findings = Findings(list(checkpoint.labels), probs[i].tolist(), [int(c) for c in calls[i]],
                                list(thresholds), checkpoint.model_name, __version__, sha)  # fmt: skip
            sr = findings_sr(pydicom.dcmread(path, stop_before_pixels=True), findings)
            name = _unique_name(Path(path).stem, used, "_SR.dcm")
            write_dicom(staging / name, sr)
            written.append(str(Path(folder).resolve() / name))
    log.info("wrote %d DICOM SR(s) to %s", len(written), folder)
    return written


def write_overlay_capture(path: str | Path, source: str, pixels: np.ndarray, heat: np.ndarray, title: str) -> Path:
    """The Grad-CAM overlay of ``source`` as a Secondary Capture at ``path``."""
    import pydicom

    rgb = overlay_rgb(pixels, heat)
    return write_dicom(path, overlay_secondary_capture(pydicom.dcmread(source, stop_before_pixels=True), rgb, title))
