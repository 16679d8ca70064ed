"""Settings: one dataclass per command, settings files, and the fixed vocabularies they use.

The bottom layer of medclf (with :mod:`medclf.errors`): it imports nothing from ``data``, ``model``,
``engine``, ``metrics``, ``reporting`` or ``workflows``. Choices that belong to a lower-level concern
(the model names of ``medclf.model.registry``) are checked where they are used.
"""

from medclf.config.choices import CACHES, DEVICES, NIH_LABELS, SPLITS, UNCERTAIN_POLICIES
from medclf.config.commands import HELP_GROUPS, CompareConfig, ExplainConfig, PredictConfig, ValidateConfig
from medclf.config.export import ExportConfig
from medclf.config.fields import parse_label_map
from medclf.config.files import field_types, load_settings, make_settings, read_settings_file, settings_dict
from medclf.config.prepare import PrepareChexpertConfig, PrepareMimicCxrConfig, PrepareNihConfig
from medclf.config.study import CrossvalConfig, LearningCurveConfig, parse_fractions
from medclf.config.train import TrainConfig
from medclf.config.weights import ImportWeightsConfig

__all__ = [
    "CACHES",
    "DEVICES",
    "HELP_GROUPS",
    "NIH_LABELS",
    "SPLITS",
    "UNCERTAIN_POLICIES",
    "CompareConfig",
    "CrossvalConfig",
    "ExplainConfig",
    "ExportConfig",
    "ImportWeightsConfig",
    "LearningCurveConfig",
    "PredictConfig",
    "PrepareChexpertConfig",
    "PrepareMimicCxrConfig",
    "PrepareNihConfig",
    "TrainConfig",
    "ValidateConfig",
    "field_types",
    "load_settings",
    "make_settings",
    "parse_fractions",
    "parse_label_map",
    "read_settings_file",
    "settings_dict",
]
