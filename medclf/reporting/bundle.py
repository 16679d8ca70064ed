"""A MONAI bundle from a medclf checkpoint: configs, weights, TorchScript, model card, licence and scripts.

The layout follows the MONAI model zoo (``configs/metadata.json``, ``configs/inference.json``,
``models/model.pt``, ``models/model.ts``, ``docs/README.md``, ``LICENSE``). ``inference.json`` builds the
network from MONAI alone (``network_def``) and runs ``scripts/medclf_bundle.py``, which reproduces medclf's
preprocessing with MONAI's own dependencies, so the bundle runs where medclf is not installed.
"""

from __future__ import annotations

import importlib.metadata
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from medclf.reporting.files import write_bytes, write_json, write_text
from medclf.reporting.model_card import model_card

SCRIPTS = Path(__file__).with_name("bundle_scripts")
BUNDLE_VERSION = "1.0.0"
NO_LICENCE = (
    "No licence was given when this bundle was exported (python -m medclf.export --license FILE sets one).\n"
    "Ask the model's authors before using or sharing it.\n"
)


@dataclass
class BundleFacts:
    """What a bundle says about its model (plain values from the checkpoint and the export).

    Attributes:
        model_name: The registered architecture.
        network_def: The MONAI component that builds the network (``_target_`` and arguments).
        labels, thresholds, temperatures: Per label, in output order.
        image_size: Side length of the input.
        intensity: The input's intensity convention, in words.
        provenance: The checkpoint's provenance block, plus its SHA-256 and the exporting medclf.
        card: Extra model-card sections, title -> Markdown.
        authors, copyright, licence: Metadata text; ``licence`` is the LICENSE file's text.
        crop: Whether images are centre-cropped to a square before resizing (the weights' input convention).
        intensity_range: The range the [0, 1] input is mapped onto before the network (``[0, 1]``: none).
    """

    model_name: str
    network_def: dict[str, Any]
    labels: list[str]
    thresholds: list[float]
    temperatures: list[float]
    image_size: int
    intensity: str
    provenance: dict[str, Any] = field(default_factory=dict)
    card: dict[str, str] = field(default_factory=dict)
    authors: str = ""
    copyright: str = ""
    licence: str = NO_LICENCE
    crop: bool = False
    intensity_range: list[float] = field(default_factory=lambda: [0.0, 1.0])


def _version(package: str) -> str:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def channel_names(labels: Sequence[str]) -> dict[str, str]:
    """Output channel index -> label name, as ``channel_def`` lists them."""
    return dict(zip(map(str, range(len(labels))), labels, strict=True))


def network_data_format(facts: BundleFacts) -> dict[str, Any]:
    """The input and output spec of ``network_def``, the labels as the output's ``channel_def``."""
    n, size = len(facts.labels), facts.image_size
    image = {"type": "image", "format": "magnitude", "modality": "XR", "num_channels": 1, "spatial_shape": [size, size],
             "dtype": "float32", "value_range": facts.intensity_range, "is_patch_data": False,
             "channel_def": {"0": "image"},
             "description": f"{facts.intensity}; mapped onto {facts.intensity_range} by the predictor"}  # fmt: skip
    pred = {"type": "logits", "format": "classes", "num_channels": n, "spatial_shape": [n], "dtype": "float32",
            "value_range": [], "is_onehot": False, "channel_def": channel_names(facts.labels),
            "description": "probability: sigmoid(logit / temperature); call: sigmoid(logit) >= threshold"}  # fmt: skip
    return {"inputs": {"image": image}, "outputs": {"pred": pred}}


def metadata(facts: BundleFacts) -> dict[str, Any]:
    """``configs/metadata.json``: versions, task, the input and output spec, medclf's labels and provenance."""
    schema = "https://github.com/Project-MONAI/MONAI-extra-test-data/releases/download/0.8.1/meta_schema_20240725.json"
    return {
        "schema": schema,
        "version": BUNDLE_VERSION,
        "changelog": {BUNDLE_VERSION: f"exported by medclf {facts.provenance.get('exported_by', '')}"},
        "monai_version": _version("monai"),
        "pytorch_version": _version("torch"),
        "numpy_version": _version("numpy"),
        "required_packages_version": {p: _version(p) for p in ("pillow", "pydicom", "fire")},
        "name": f"medclf chest X-ray classifier ({facts.model_name})",
        "task": "Multi-label classification of frontal chest radiographs",
        "description": f"{facts.model_name} trained with medclf; one probability per label ({', '.join(facts.labels)})",
        "authors": facts.authors or "not given at export (python -m medclf.export --authors)",
        "copyright": facts.copyright or "not given at export (python -m medclf.export --copyright)",
        "license": "see LICENSE",
        "data_type": "png, jpeg, dicom",
        "intended_use": "Research use only; not a medical device. See docs/README.md",
        "network_data_format": network_data_format(facts),
        "medclf": {
            "labels": facts.labels,
            "thresholds": facts.thresholds,
            "temperatures": facts.temperatures,
            "image_size": facts.image_size,
            "model_name": facts.model_name,
            "provenance": facts.provenance,
        },
    }


def inference_config(facts: BundleFacts) -> dict[str, Any]:
    """``configs/inference.json``: MONAI's network plus the bundle script's predictor."""
    return {
        "imports": ["$import torch"],
        "bundle_root": ".",
        "dataset_dir": "$@bundle_root + '/images'",
        "output_dir": "$@bundle_root + '/eval'",
        "device": "$'cuda' if torch.cuda.is_available() else 'cpu'",
        "image_size": facts.image_size,
        "labels": facts.labels,
        "temperatures": facts.temperatures,
        "thresholds": facts.thresholds,
        "crop": facts.crop,
        "intensity": facts.intensity_range,
        "network_def": facts.network_def,
        "predictor": {
            "_target_": "scripts.medclf_bundle.Predictor",
            "network": "@network_def",
            "weights": "$@bundle_root + '/models/model.pt'",
            **{key: f"@{key}" for key in ("dataset_dir", "output_dir", "image_size", "labels", "temperatures")},
            **{key: f"@{key}" for key in ("thresholds", "device", "crop", "intensity")},
        },
        "initialize": [],
        "run": ["$@predictor()"],
        "finalize": [],
    }


def write_bundle(folder: str | Path, facts: BundleFacts, weights: bytes, torchscript: bytes) -> Path:
    """Write the bundle into ``folder`` (created by the caller's result set) and return it."""
    folder = Path(folder)
    for sub in ("configs", "models", "docs", "scripts"):
        (folder / sub).mkdir(parents=True, exist_ok=True)
    write_json(folder / "configs" / "metadata.json", metadata(facts))
    write_text(folder / "configs" / "inference.json", json.dumps(inference_config(facts), indent=2) + "\n")
    write_bytes(folder / "models" / "model.pt", weights)
    write_bytes(folder / "models" / "model.ts", torchscript)
    write_text(folder / "docs" / "README.md", model_card(facts))
    write_text(folder / "LICENSE", facts.licence)
    for name in ("__init__.py", "medclf_bundle.py"):
        write_bytes(folder / "scripts" / name, (SCRIPTS / name).read_bytes())
    return folder
