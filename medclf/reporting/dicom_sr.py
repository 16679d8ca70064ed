"""A DICOM Comprehensive SR of one image's findings (TID 1500 measurement report, written with highdicom).

The SR joins the source image's study (same Study Instance UID; patient and study modules copied by
highdicom from the source), in a new series, and references the source SOP instance. Per label it holds
one measurement group: the finding's code, the probability, the call at the checkpoint's threshold
(present / absent) and the algorithm identification (medclf, its version, the checkpoint's SHA-256 and the
threshold).
"""

from __future__ import annotations

import io
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from medclf.reporting.dicom_codes import ABSENT, PRESENT, PRIVATE_SCHEME, PRIVATE_SCHEME_NAME, PROBABILITY, finding_code
from medclf.reporting.files import write_bytes

MANUFACTURER = "medclf"


@dataclass
class Findings:
    """One image's results for the SR.

    Attributes:
        labels, probabilities, calls, thresholds: Per label (calls: 0/1 at ``thresholds``, on sigmoid(logit)).
        model_name: The architecture.
        version: medclf's version.
        checkpoint_sha256: SHA-256 of the checkpoint file.
    """

    labels: Sequence[str]
    probabilities: Sequence[float]
    calls: Sequence[int]
    thresholds: Sequence[float]
    model_name: str
    version: str
    checkpoint_sha256: str


def _code(hd: Any, value: tuple[str, str, str]) -> Any:
    return hd.sr.CodedConcept(value=value[0], scheme_designator=value[1], meaning=value[2])


def _group(hd: Any, findings: Findings, j: int, source: Any) -> Any:
    """The measurement group of label ``j``: probability, call, algorithm."""
    label = findings.labels[j]
    algorithm = hd.sr.AlgorithmIdentification(
        name=f"medclf {findings.model_name}", version=findings.version,
        parameters=[f"checkpoint SHA-256 {findings.checkpoint_sha256}", f"threshold {findings.thresholds[j]:.6g}"],
    )  # fmt: skip
    finding = _code(hd, finding_code(label))
    probability = hd.sr.Measurement(
        name=_code(hd, PROBABILITY), value=round(float(findings.probabilities[j]), 6),
        unit=hd.sr.CodedConcept(value="1", scheme_designator="UCUM", meaning="no units"), algorithm_id=algorithm,
    )  # fmt: skip
    call = hd.sr.QualitativeEvaluation(name=finding, value=_code(hd, PRESENT if findings.calls[j] else ABSENT))
    return hd.sr.MeasurementsAndQualitativeEvaluations(
        tracking_identifier=hd.sr.TrackingIdentifier(uid=hd.UID(), identifier=label[:64]), finding_type=finding,
        algorithm_id=algorithm, measurements=[probability], qualitative_evaluations=[call],
        source_images=[hd.sr.SourceImageForMeasurementGroup.from_source_image(source)],
    )  # fmt: skip


def findings_sr(source: Any, findings: Findings, series_number: int = 901) -> Any:
    """The SR dataset of ``findings`` on the pydicom dataset ``source``."""
    import highdicom as hd
    from pydicom.dataset import Dataset

    device = hd.sr.ObserverContext(
        observer_type=hd.sr.CodedConcept(value="121007", scheme_designator="DCM", meaning="Device"),
        observer_identifying_attributes=hd.sr.DeviceObserverIdentifyingAttributes(
            uid=hd.UID(), name="medclf", manufacturer_name=MANUFACTURER, model_name=findings.model_name
        ),
    )
    report = hd.sr.MeasurementReport(
        observation_context=hd.sr.ObservationContext(observer_device_context=device),
        procedure_reported=hd.sr.CodedConcept(value="363680008", scheme_designator="SCT",
                                              meaning="Radiographic imaging procedure"),
        imaging_measurements=[_group(hd, findings, j, source) for j in range(len(findings.labels))],
    )  # fmt: skip
    sr = hd.sr.ComprehensiveSR(
        evidence=[source], content=report, series_instance_uid=hd.UID(), series_number=series_number,
        sop_instance_uid=hd.UID(), instance_number=1, manufacturer=MANUFACTURER, is_complete=True,
        series_description="medclf findings",
    )  # fmt: skip
    scheme = Dataset()
    scheme.CodingSchemeDesignator, scheme.CodingSchemeName = PRIVATE_SCHEME, PRIVATE_SCHEME_NAME
    scheme.CodingSchemeResponsibleOrganization = "medclf"
    sr.CodingSchemeIdentificationSequence = [scheme]
    fix_copied_values(sr)
    return sr


def fix_copied_values(dataset: Any) -> None:
    """Make values copied from a source that break their VR valid: an age in plain years (``62``, as some
    exports write it) becomes ``062Y``; another invalid age is left out (Patient's Age is optional)."""
    age = str(dataset.get("PatientAge", "") or "")
    if age and not re.fullmatch(r"\d{3}[DWMY]", age):
        if age.isdigit() and int(age) < 1000:
            dataset.PatientAge = f"{int(age):03d}Y"
        else:
            del dataset.PatientAge


def write_dicom(path: str | Path, dataset: Any) -> Path:
    """Write a pydicom dataset (with its file meta) atomically."""
    buffer = io.BytesIO()
    dataset.save_as(buffer, enforce_file_format=True)
    return write_bytes(path, buffer.getvalue())
