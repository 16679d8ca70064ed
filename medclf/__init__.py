"""medclf: train and validate multi-label medical image classifiers with MONAI.

Library use::

    from medclf import Manifest, TrainConfig, train, evaluate, load_checkpoint

    result = train(TrainConfig(csv="data/dataset.csv", out="runs/exp1", epochs=10))
    report = evaluate(checkpoint=result.best_checkpoint, csv="data/dataset.csv", split="TEST")
    print(report.metrics["macro_auroc"])

Names are imported on first use (PEP 562): ``import medclf`` itself loads neither torch, MONAI nor
matplotlib, and changes nothing in the importing process.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.2.0"

# public name -> module that defines it
_EXPORTS = {
    "CheckpointError": "medclf.errors",
    "CompareConfig": "medclf.config",
    "ComparisonError": "medclf.errors",
    "ConfigError": "medclf.errors",
    "CrossvalConfig": "medclf.config",
    "CrossvalResult": "medclf.workflows.crossval",
    "EvaluationResult": "medclf.workflows.validate",
    "ExplainConfig": "medclf.config",
    "ExportConfig": "medclf.config",
    "ExportResult": "medclf.workflows.export",
    "ImageError": "medclf.errors",
    "Manifest": "medclf.data.manifest",
    "LearningCurveConfig": "medclf.config",
    "LearningCurveResult": "medclf.workflows.learning_curve",
    "ManifestError": "medclf.errors",
    "MedclfError": "medclf.errors",
    "NIH_LABELS": "medclf.config.choices",
    "PredictConfig": "medclf.config",
    "PredictionResult": "medclf.workflows.predict",
    "TrainConfig": "medclf.config",
    "TrainResult": "medclf.workflows.train",
    "TrainingError": "medclf.errors",
    "ValidateConfig": "medclf.config",
    "build_model": "medclf.model.networks",
    "classification_metrics": "medclf.metrics.auroc",
    "compare_models": "medclf.workflows.compare",
    "delong_test": "medclf.metrics.delong",
    "evaluate": "medclf.workflows.validate",
    "explain_image": "medclf.workflows.explain",
    "export_checkpoint": "medclf.workflows.export",
    "gradcam_heatmap": "medclf.model.gradcam",
    "load_checkpoint": "medclf.model.checkpoint",
    "load_image": "medclf.data.transforms",
    "load_settings": "medclf.config",
    "model_from_checkpoint": "medclf.model.checkpoint",
    "predict_images": "medclf.workflows.predict",
    "preprocessing": "medclf.data.transforms",
    "train": "medclf.workflows.train",
}

__all__ = ["__version__", *sorted(_EXPORTS)]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'medclf' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
