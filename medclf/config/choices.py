"""Fixed vocabularies of the settings: label names, splits, uncertain-label policies, devices, caches.

They live in the settings layer so that the settings dataclasses and the data code below them share one
definition (``medclf.data.manifest`` imports them from here).
"""

from __future__ import annotations

#: The 14 findings of NIH ChestX-ray14, as manifest column names.
NIH_LABELS: tuple[str, ...] = (
    "atelectasis",
    "cardiomegaly",
    "effusion",
    "infiltration",
    "mass",
    "nodule",
    "pneumonia",
    "pneumothorax",
    "consolidation",
    "edema",
    "emphysema",
    "fibrosis",
    "pleural_thickening",
    "hernia",
)

SPLITS: tuple[str, ...] = ("TRAIN", "VALIDATION", "TEST")
#: How an uncertain (-1) label is used (Irvin et al., CheXpert, 2019): masked, positive or negative.
UNCERTAIN_POLICIES: tuple[str, ...] = ("ignore", "ones", "zeros")
DEVICES: tuple[str, ...] = ("auto", "cpu", "cuda")
CACHES: tuple[str, ...] = ("memory", "disk", "none")
