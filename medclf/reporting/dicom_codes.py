"""Coded concepts of medclf's findings for DICOM objects: SNOMED CT where a standard code exists, otherwise
medclf's private coding scheme ``99MEDCLF`` (docs/deployment.md lists both).

A label becomes a code meaning (VR LO: at most 64 characters, no backslash, no control characters); a
label that cannot be one is refused with one line naming it.
"""

from __future__ import annotations

import hashlib
import re

from medclf.errors import ConfigError

PRIVATE_SCHEME = "99MEDCLF"
PRIVATE_SCHEME_NAME = "medclf findings and measurements"

#: SNOMED CT concepts of the findings medclf's data sets label, by normalised label name.
SNOMED: dict[str, tuple[str, str]] = {
    "atelectasis": ("46621007", "Atelectasis"),
    "cardiomegaly": ("8186001", "Cardiomegaly"),
    "effusion": ("60046008", "Pleural effusion"),
    "pleural_effusion": ("60046008", "Pleural effusion"),
    "infiltration": ("409609008", "Radiologic infiltrate of lung"),
    # Any nodule, not 427359005 "Solitary nodule of lung": NIH and CheXpert nodule labels include several.
    "nodule": ("786838002", "Nodule of lung"),
    "mass": ("309529002", "Lung mass"),
    "pneumonia": ("233604007", "Pneumonia"),
    "pneumothorax": ("36118008", "Pneumothorax"),
    "consolidation": ("95436008", "Lung consolidation"),
    "edema": ("19242006", "Pulmonary edema"),
    "emphysema": ("87433001", "Pulmonary emphysema"),
    "fibrosis": ("51615001", "Fibrosis of lung"),
}
#: Present / absent (SNOMED CT qualifier values), the value of each finding's call.
PRESENT = ("52101004", "SCT", "Present")
ABSENT = ("2667000", "SCT", "Absent")
#: The measurement of every finding: the model's probability (private code; UCUM "1", no units).
PROBABILITY = ("PROBABILITY", PRIVATE_SCHEME, "Probability of finding")
_CONTROL = re.compile(r"[\x00-\x1f\x7f\\]")


def _normalised(label: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", label.lower()).strip("_")


def check_code_meaning(label: str) -> str:
    """``label`` as a DICOM code meaning (LO).

    Raises:
        ConfigError: when it is empty, longer than 64 characters, or holds a backslash or control character.
    """
    if not label.strip() or len(label) > 64 or _CONTROL.search(label):
        why = "is empty" if not label.strip() else "is longer than 64 characters" if len(label) > 64 else (
            "holds a backslash or a control character")  # fmt: skip
        raise ConfigError(f"label {label!r} cannot be a DICOM code meaning: it {why} (VR LO); nothing was written")
    return label


def finding_code(label: str) -> tuple[str, str, str]:
    """(code value, coding scheme designator, code meaning) of a label: SNOMED CT when known, else private."""
    meaning = check_code_meaning(label)
    known = SNOMED.get(_normalised(label))
    if known is not None:
        return known[0], "SCT", known[1]
    value = _normalised(label).upper()
    if not value or len(value) > 16:  # SH: at most 16 characters
        value = "L" + hashlib.sha256(label.encode("utf-8")).hexdigest()[:15].upper()
    return value, PRIVATE_SCHEME, meaning
