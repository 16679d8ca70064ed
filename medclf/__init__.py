"""medclf: train and validate multi-label medical image classifiers with MONAI.

Library use::

    from medclf import Manifest, TrainConfig, train, evaluate, load_checkpoint

    result = train(TrainConfig(csv="data/dataset.csv", out="runs/exp1", epochs=10))
    report = evaluate(checkpoint=result.best_checkpoint, csv="data/dataset.csv", split="TEST")
    print(report.metrics["macro_auroc"])
"""

__version__ = "0.1.0"

from medclf.checkpoint import load_checkpoint, model_from_checkpoint
from medclf.config import ExplainConfig, PredictConfig, TrainConfig, ValidateConfig, load_settings
from medclf.errors import CheckpointError, ConfigError, ImageError, ManifestError, MedclfError, TrainingError
from medclf.evaluation import EvaluationResult, evaluate
from medclf.gradcam import explain_image, gradcam_heatmap
from medclf.manifest import NIH_LABELS, Manifest
from medclf.metrics import classification_metrics
from medclf.models import build_model
from medclf.prediction import PredictionResult, predict_images
from medclf.training import TrainResult, train
from medclf.transforms import load_image, preprocessing

__all__ = [
    "NIH_LABELS",
    "CheckpointError",
    "ConfigError",
    "EvaluationResult",
    "ExplainConfig",
    "ImageError",
    "Manifest",
    "ManifestError",
    "MedclfError",
    "PredictConfig",
    "PredictionResult",
    "TrainConfig",
    "TrainResult",
    "TrainingError",
    "ValidateConfig",
    "__version__",
    "build_model",
    "classification_metrics",
    "evaluate",
    "explain_image",
    "gradcam_heatmap",
    "load_checkpoint",
    "load_image",
    "load_settings",
    "model_from_checkpoint",
    "predict_images",
    "preprocessing",
    "train",
]
