"""Parity of an export: the same images through medclf, TorchScript, ONNX Runtime and the MONAI bundle.

Images come from the VALIDATION split of the checkpoint's manifest when it can be read, otherwise they
are generated. Each format's probabilities are compared with medclf's own (``load_image``, the network,
:func:`~medclf.metrics.calibration.reported_probabilities`).
"""

from __future__ import annotations

import contextlib
import io
import logging
import sys
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import torch
from torch import nn

from medclf.data.manifest import Manifest
from medclf.data.synthetic import synthetic_image
from medclf.data.transforms import load_image
from medclf.errors import MedclfError
from medclf.metrics.calibration import reported_probabilities
from medclf.model.checkpoint import Checkpoint
from medclf.model.input_convention import centre_crop
from medclf.reporting.files import write_bytes

log = logging.getLogger(__name__)


def manifest_paths(checkpoint: Checkpoint, csv: str = "") -> list[str]:
    """``csv`` when given, else the manifests the checkpoint was trained on (one string in 0.1.0 files)."""
    saved = checkpoint.config.get("csv") or []
    return [csv] if csv else [saved] if isinstance(saved, str) else [str(p) for p in saved]


def validation_images(checkpoint: Checkpoint, csv: str, n: int) -> list[str]:
    """Up to ``n`` existing images of the VALIDATION split of ``csv`` (or the checkpoint's manifests); [] when
    none can be read."""
    manifests = manifest_paths(checkpoint, csv)
    for path in manifests:
        try:
            records = Manifest.from_csv(path, (), required_splits=(), require_labels=False).records("VALIDATION")
        except (MedclfError, OSError, ValueError) as e:
            log.info("parity: %s cannot be read (%s); trying the next source", path, str(e).splitlines()[0])
            continue
        found = [str(r["image"]) for r in records if Path(str(r["image"])).is_file()][:n]
        if found:
            return found
    return []


def generated_images(folder: Path, n: int, size: int) -> list[str]:
    """``n`` synthetic radiograph-like PNGs (8-bit, and 16-bit for every other one) of 1.5 x ``size``."""
    from PIL import Image

    rng = np.random.default_rng(0)
    paths = []
    for i in range(n):
        img = synthetic_image(rng.integers(0, 2, 4).tolist(), max(8, size * 3 // 2), rng)
        pil = Image.fromarray(img) if i % 2 == 0 else Image.fromarray(img.astype(np.uint16) * 251)
        buffer = io.BytesIO()
        pil.save(buffer, format="PNG")
        paths.append(str(write_bytes(folder / f"generated_{i}.png", buffer.getvalue())))
    return paths


@contextlib.contextmanager
def _bundle_importable(root: Path) -> Iterator[None]:
    """The bundle's ``scripts`` package importable (as ``monai.bundle run`` makes it), then forgotten again."""
    saved = {k: sys.modules.pop(k) for k in list(sys.modules) if k == "scripts" or k.startswith("scripts.")}
    sys.path.insert(0, str(root))
    try:
        yield
    finally:
        sys.path.remove(str(root))
        for k in [k for k in sys.modules if k == "scripts" or k.startswith("scripts.")]:
            del sys.modules[k]
        sys.modules.update(saved)


def bundle_probabilities(bundle: Path, paths: Sequence[str]) -> np.ndarray:
    """Probabilities of ``paths`` from the bundle's own ``inference.json`` predictor (CPU)."""
    from monai.bundle import ConfigParser

    parser = ConfigParser()
    parser.read_config(str(bundle / "configs" / "inference.json"))
    parser["bundle_root"], parser["device"] = str(bundle), "cpu"
    with _bundle_importable(bundle):
        predictor = parser.get_parsed_content("predictor")
        return predictor.probabilities([Path(p) for p in paths])[0]


def measure_parity(
    checkpoint: Checkpoint, net: nn.Module, folder: Path, paths: Sequence[str], bundle: bool
) -> dict[str, float]:
    """Largest absolute difference from medclf's probabilities, per format written in ``folder``."""
    import onnxruntime

    batch = torch.stack([load_image(p, checkpoint.image_size, centre_crop(checkpoint.input)) for p in paths])
    with torch.no_grad():
        reference = reported_probabilities(net(batch), list(checkpoint.temperatures) or None)
        scripted = torch.jit.load(str(folder / "model.ts"), map_location="cpu")(batch)[1].numpy()
    session = onnxruntime.InferenceSession(str(folder / "model.onnx"), providers=["CPUExecutionProvider"])
    found = {"torchscript": scripted, "onnx": session.run(["probabilities"], {"image": batch.numpy()})[0]}
    if bundle:
        found["bundle"] = bundle_probabilities(folder / "bundle", paths)
    return {name: float(np.abs(np.asarray(probs, np.float64) - reference).max()) for name, probs in found.items()}


def parity_paths(checkpoint: Checkpoint, csv: str, n: int, scratch: Path) -> tuple[list[str], str]:
    """The images of the parity check and where they come from."""
    found = validation_images(checkpoint, csv, n)
    if found:
        return found, "VALIDATION images of the manifest"
    return generated_images(scratch, n, checkpoint.image_size), "generated images (no manifest reachable)"


def scratch_folder() -> tempfile.TemporaryDirectory:
    """A temporary folder for generated parity images, removed afterwards."""
    return tempfile.TemporaryDirectory(prefix="medclf-parity-")
