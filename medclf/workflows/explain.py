"""The ``explain`` workflow: Grad-CAM overlays of one image for the labels of a checkpoint."""

from __future__ import annotations

import dataclasses
import logging
import re
from pathlib import Path
from typing import Any

import torch

from medclf.config import ExplainConfig
from medclf.data.read_errors import plain_error
from medclf.data.transforms import load_image
from medclf.engine.device import resolve_device
from medclf.errors import ConfigError, ImageError
from medclf.metrics.calibration import reported_probabilities
from medclf.model.checkpoint import load_checkpoint, model_from_checkpoint
from medclf.model.ensemble import first_fold
from medclf.model.gradcam import gradcam_heatmap
from medclf.model.input_convention import centre_crop
from medclf.reporting.figures import overlay_figure
from medclf.reporting.files import save_figure
from medclf.workflows.dicom_results import check_dicom_request, write_overlay_capture
from medclf.workflows.inference import output_dir

log = logging.getLogger(__name__)


def explain_image(config: ExplainConfig | None = None, **overrides: Any) -> dict[str, Any]:
    """Write a Grad-CAM overlay of one image for each requested label of a checkpoint.

    Files are ``<out>/<image stem>_<label>_gradcam.png``; ``out`` defaults to
    ``<checkpoint folder>/explain_<image stem>``.

    Args:
        config: Settings; keyword arguments override its fields (or build it when it is None).

    Returns:
        ``{"image": path, "probabilities": {label: p} (every label of the checkpoint; with the
        checkpoint's temperature scaling unless ``calibration`` is off, as validate and predict report),
        "calibrated": bool, "files": {label: png path} (the requested labels), "dicom_files": {label: Secondary
        Capture path} (with ``dicom``)}``.

    Raises:
        ConfigError: for a label the checkpoint does not have (the message lists the valid ones).
        ImageError: when the image cannot be read.
    """
    config = dataclasses.replace(config, **overrides) if config else ExplainConfig(**overrides)
    if not config.checkpoint or not config.image:
        raise ConfigError("explain needs a checkpoint and an image")
    checkpoint = first_fold(load_checkpoint(config.checkpoint, map_location="cpu"))  # a study: fold 1
    labels, image_size = list(checkpoint.labels), int(checkpoint.image_size)
    unknown = [name for name in config.label if name not in labels]
    if unknown:
        raise ConfigError(f"unknown label(s) {', '.join(unknown)}; the checkpoint has: {', '.join(labels)}")
    wanted = config.label or labels
    if config.dicom:  # before any work: a bad label or a non-DICOM image is refused with nothing written
        check_dicom_request([str(config.image)], wanted, "--dicom")
    image = _read_image(config.image, image_size, centre_crop(checkpoint.input))

    device = resolve_device(config.device)
    model = model_from_checkpoint(checkpoint, device)
    with torch.no_grad():
        logits = model(image.unsqueeze(0).to(device))
    temperatures = list(checkpoint.temperatures) if config.calibration and checkpoint.temperatures else None
    # The probabilities validate and predict report for this image: calibrated when the checkpoint is.
    probs = reported_probabilities(logits, temperatures)[0].tolist()
    probabilities = dict(zip(labels, probs, strict=True))
    scale = "calibrated" if temperatures else "raw"

    stem = image_stem(config.image)
    out = output_dir(config.out, checkpoint, f"explain_{stem}")
    pixels = image[0].numpy()
    files, dicom_files = {}, {}
    for name in wanted:
        heat = gradcam_heatmap(model, image, labels.index(name))
        fig = overlay_figure(pixels, heat, f"{name}: p = {probabilities[name]:.3f} ({scale})")
        path = save_figure(out / f"{stem}_{_safe(name)}_gradcam.png", fig)
        files[name] = str(path)
        if config.dicom:
            title = f"medclf Grad-CAM {name} p={probabilities[name]:.3f}"
            dicom_files[name] = str(write_overlay_capture(path.with_suffix(".dcm"), config.image, pixels, heat, title))
    calibrated = bool(temperatures)
    return {"image": str(config.image), "probabilities": probabilities, "calibrated": calibrated, "files": files,
            "dicom_files": dicom_files}  # fmt: skip


def image_stem(path: str | Path) -> str:
    """File name without its image suffix (``scan.nii.gz`` -> ``scan``)."""
    name = Path(path).name
    return name[: -len(".nii.gz")] if name.lower().endswith(".nii.gz") else Path(name).stem


def _read_image(path: str | Path, image_size: int, crop: bool = False) -> torch.Tensor:
    if not Path(path).is_file():
        raise ImageError(f"image not found: {path}")
    try:
        return load_image(path, image_size, crop)
    except Exception as e:  # any decoder, any format: all mean "this image is unusable"
        raise ImageError(f"cannot read image {path}: {plain_error(str(path), e)}") from None


def _safe(name: str) -> str:
    """A label name usable in a file name."""
    return re.sub(r"[^\w.-]+", "_", name).strip("_") or "label"
