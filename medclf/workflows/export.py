"""``export_checkpoint``: a checkpoint as TorchScript, ONNX, a MONAI bundle and a Triton entry, with parity.

The files are written as one result set (:func:`~medclf.reporting.result_folder.new_result_set`): into a
hidden sibling folder, checked for parity there, and only then moved into place, so a failed export leaves
nothing half-written and an earlier export untouched.
"""

from __future__ import annotations

import dataclasses
import io
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from medclf import __version__
from medclf.config import ExportConfig
from medclf.errors import ConfigError, ExportError
from medclf.model.checkpoint import Checkpoint, load_checkpoint, model_from_checkpoint
from medclf.model.export import INPUT_NAME, OUTPUT_NAMES, DeployedNet, onnx_bytes, torchscript_bytes, trace
from medclf.model.input_convention import centre_crop
from medclf.model.registry import architecture
from medclf.reporting.bundle import BundleFacts, write_bundle
from medclf.reporting.files import write_bytes, write_json
from medclf.reporting.provenance import sha256_file
from medclf.reporting.result_folder import CONTENTS, new_result_set
from medclf.reporting.triton import write_triton_entry
from medclf.workflows.export_card import training_section, validation_section
from medclf.workflows.parity import measure_parity, parity_paths, scratch_folder

log = logging.getLogger(__name__)


@dataclass
class ExportResult:
    """What :func:`export_checkpoint` returns; plain values only."""

    out: str
    files: list[str]
    parity: dict[str, float] = field(default_factory=dict)
    parity_images: list[str] = field(default_factory=list)


def check_export_folder(out: str | Path) -> Path:
    """``out`` as an export destination: new, empty, or an earlier export (which is replaced).

    Raises:
        ConfigError: when it exists and holds something else.
    """
    path = Path(out)
    if path.is_dir() and any(path.iterdir()) and not (path / "export.json").is_file():
        names = sorted(p.name for p in path.iterdir())
        shown = ", ".join(names[:5]) + (", ..." if len(names) > 5 else "")
        raise ConfigError(
            f"--out {path} exists and holds other files ({shown}); export into a new or empty folder "
            "(an earlier export there is replaced); nothing was written"
        )
    if path.is_dir() and (path / "export.json").is_file() and not (path / CONTENTS).is_file():
        raise ConfigError(f"--out {path} holds an export.json that medclf did not write; nothing was written")
    return path


def input_spec(checkpoint: Checkpoint) -> dict[str, Any]:
    """The exported models' input and outputs, as export.json and docs/deployment.md state them."""
    size, n = checkpoint.image_size, len(checkpoint.labels)
    crop = " (first the centred square of the long side)" if centre_crop(checkpoint.input) else ""
    return {
        "input": {"name": INPUT_NAME, "dtype": "float32", "shape": ["N", 1, size, size],
                  "intensity": architecture(checkpoint.model_name).input.intensity,
                  "preprocessing": "one channel (RGB(A): BT.601 luma; alpha dropped); area resize to "
                  f"{size}x{size}{crop}; per-image min/max to [0, 255] (8-bit source) or [0, 65535] (deeper, and "
                  "windowed DICOM), rounded; divided by 255 or 65535"},
        "convention": {"crop": "centre" if crop else "none", "intensity_inside_the_model":
                       list((checkpoint.input or {}).get("intensity", [0.0, 1.0]))},
        "outputs": {name: {"dtype": "float32", "shape": ["N", n]} for name in OUTPUT_NAMES},
    }  # fmt: skip


def _facts(config: ExportConfig, checkpoint: Checkpoint, temperatures: list[float]) -> BundleFacts:
    arch = architecture(checkpoint.model_name)
    if arch.network_def is None:
        raise ExportError(f"{checkpoint.model_name} has no MONAI network definition; export it with --no-bundle")
    provenance = {**checkpoint.provenance, "checkpoint_sha256": sha256_file(checkpoint.path),
                  "checkpoint": Path(checkpoint.path).name, "exported_by": __version__}  # fmt: skip
    licence = Path(config.license).read_text(encoding="utf-8") if config.license else None
    return BundleFacts(
        model_name=checkpoint.model_name, network_def=arch.network_def(len(checkpoint.labels), checkpoint.in_channels),
        labels=list(checkpoint.labels), thresholds=[float(t) for t in checkpoint.thresholds],
        temperatures=temperatures, image_size=checkpoint.image_size, intensity=arch.input.intensity,
        provenance=provenance, card={"Training data": training_section(checkpoint),
              "Validation metrics": validation_section(checkpoint, config.csv)},
        authors=config.authors, copyright=config.copyright, **({"licence": licence} if licence else {}),
        crop=centre_crop(checkpoint.input), intensity_range=list((checkpoint.input or {}).get("intensity", [0.0, 1.0])),
    )  # fmt: skip


def export_checkpoint(config: ExportConfig | None = None, **overrides: Any) -> ExportResult:
    """Write ``model.ts``, ``model.onnx``, ``bundle/``, ``triton/`` and ``export.json`` into ``config.out``
    and check that each format gives medclf's probabilities.

    Raises:
        CheckpointError: a file that is not a medclf checkpoint.
        ConfigError: an ``out`` folder holding something else.
        ExportError: a format differs from medclf by more than ``config.tolerance``.
        StorageError: the folder cannot be written.
    """
    config = dataclasses.replace(config, **overrides) if config else ExportConfig(**overrides)
    checkpoint = load_checkpoint(config.checkpoint, map_location="cpu")
    out = check_export_folder(config.out)
    net = model_from_checkpoint(checkpoint)
    temperatures = [float(t) for t in checkpoint.temperatures] or [1.0] * len(checkpoint.labels)
    deployed = DeployedNet(net, temperatures)
    facts = _facts(config, checkpoint, temperatures) if config.bundle else None
    size = checkpoint.image_size
    traced = trace(deployed, size)
    formats = {"model.ts": torchscript_bytes(traced), "model.onnx": onnx_bytes(traced, size, config.opset)}
    parity: dict[str, float] = {}
    images: list[str] = []
    with new_result_set(out, "the export folder") as staging, scratch_folder() as scratch:
        for name, data in formats.items():
            write_bytes(staging / name, data)
        if facts is not None:
            weights = io.BytesIO()
            torch.save(net.state_dict(), weights)
            write_bundle(staging / "bundle", facts, weights.getvalue(), torchscript_bytes(traced.net))
        if config.triton:
            write_triton_entry(staging / "triton", formats["model.onnx"], size, checkpoint.labels)
        if config.parity_images:
            images, source = parity_paths(checkpoint, config.csv, config.parity_images, Path(scratch))
            parity = measure_parity(checkpoint, net, staging, images, bundle=facts is not None)
            _report_parity(parity, len(images), source, config.tolerance)
        write_json(staging / "export.json", {**input_spec(checkpoint), "labels": list(checkpoint.labels),
                   "thresholds": facts.thresholds if facts else list(checkpoint.thresholds),
                   "temperatures": temperatures, "parity": parity, "parity_images": images,
                   "checkpoint": str(Path(checkpoint.path).resolve()), "medclf_version": __version__})  # fmt: skip
        files = sorted(str(p.relative_to(staging)) for p in staging.rglob("*") if p.is_file())
    log.info("exported %s (%s, %d labels, %d px) to %s", checkpoint.path, checkpoint.model_name,
             len(checkpoint.labels), size, out)  # fmt: skip
    return ExportResult(str(out), files, parity, images)


def _report_parity(parity: dict[str, float], n: int, source: str, tolerance: float) -> None:
    """Log the largest difference per format; raise when one exceeds ``tolerance``."""
    for name, diff in parity.items():
        log.info("parity %-11s max |p - p_medclf| = %.3g over %d %s", name, diff, n, source)
    worse = {name: diff for name, diff in parity.items() if not diff <= tolerance}
    if worse:
        shown = ", ".join(f"{name} {diff:.3g}" for name, diff in worse.items())
        raise ExportError(f"exported probabilities differ from medclf's by more than {tolerance:g} ({shown}); "
                          "nothing was written")  # fmt: skip
