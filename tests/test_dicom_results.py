"""DICOM results a PACS can show: predict --dicom-sr (Comprehensive SR) and explain --dicom (Secondary Capture)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pydicom
import pytest

from medclf.explain import main as explain_main
from medclf.predict import main as predict_main
from medclf.reporting.dicom_codes import PRIVATE_SCHEME, check_code_meaning, finding_code

from .conftest import SHARED
from .deploy_helpers import LABELS, dciodvfy_errors, make_checkpoint, write_source_dicom
from .test_failures import error_line

pytest.importorskip("highdicom")


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_checkpoint(tmp_path_factory.mktemp("dicom") / "best.pt", "densenet_tiny", size=32)


@pytest.fixture
def images(tmp_path: Path) -> Path:
    """Two DICOM studies and a PNG."""
    from PIL import Image

    folder = tmp_path / "images"
    folder.mkdir()
    write_source_dicom(folder / "a.dcm", seed=1)
    write_source_dicom(folder / "b.dcm", seed=2, bits=8)
    Image.new("L", (40, 40), 90).save(folder / "c.png")
    return folder


def _content(ds: pydicom.Dataset) -> list[pydicom.Dataset]:
    """Every content item of an SR, depth first."""
    found = []
    for item in ds.get("ContentSequence", []):
        found += [item, *_content(item)]
    return found


def predict(checkpoint: Path, images: Path, out: Path, *extra: str) -> int:
    args = ["--checkpoint", str(checkpoint), "--images", str(images), "--out", str(out / "pred")]
    return predict_main([*args, "--no-progress", "--num-workers", "0", *extra])


def test_predict_writes_one_sr_per_dicom_in_its_study(checkpoint: Path, images: Path, tmp_path: Path, capsys) -> None:
    assert predict(checkpoint, images, tmp_path, "--dicom-sr", str(tmp_path / "sr")) == 0
    printed = capsys.readouterr().out
    assert f"--dicom-sr: no SR for {images / 'c.png'}: an SR needs a DICOM source study" in printed
    rows = pd.read_csv(tmp_path / "pred" / "predictions.csv")
    assert sorted(p.name for p in (tmp_path / "sr").glob("*.dcm")) == ["a_SR.dcm", "b_SR.dcm"]
    for name in ("a", "b"):
        source, sr = pydicom.dcmread(images / f"{name}.dcm"), pydicom.dcmread(tmp_path / "sr" / f"{name}_SR.dcm")
        assert sr.SOPClassUID == "1.2.840.10008.5.1.4.1.1.88.33"  # Comprehensive SR
        assert sr.StudyInstanceUID == source.StudyInstanceUID and sr.SeriesInstanceUID != source.SeriesInstanceUID
        assert (sr.PatientID, str(sr.PatientName), sr.AccessionNumber) == (
            source.PatientID,
            "Doe^Jane",
            source.AccessionNumber,
        )
        evidence = sr.CurrentRequestedProcedureEvidenceSequence[0].ReferencedSeriesSequence[0]
        assert evidence.ReferencedSOPSequence[0].ReferencedSOPInstanceUID == source.SOPInstanceUID
        items = _content(sr)
        row = rows[rows["image"].str.endswith(f"{name}.dcm")].iloc[0]
        values = [float(i.MeasuredValueSequence[0].NumericValue) for i in items if i.ValueType == "NUM"]
        assert values == pytest.approx([row[f"prob_{label}"] for label in LABELS], abs=1e-6)
        calls = [
            i.ConceptCodeSequence[0].CodeMeaning
            for i in items
            if i.ValueType == "CODE"
            and i.ConceptNameCodeSequence[0].CodeMeaning in ("Atelectasis", "Pleural effusion", "pleural_thickening")
        ]
        assert calls == ["Present" if row[f"pred_{label}"] else "Absent" for label in LABELS]
        texts = [str(i.get("TextValue", "")) for i in items]
        assert any(t.startswith("checkpoint SHA-256 ") and len(t.split()[-1]) == 64 for t in texts)
        assert "medclf densenet_tiny" in texts
        assert dciodvfy_errors(tmp_path / "sr" / f"{name}_SR.dcm") == []


def test_png_only_input_asked_for_an_sr_gets_one_line(checkpoint: Path, tmp_path: Path, capsys) -> None:
    from PIL import Image

    (tmp_path / "png").mkdir()
    Image.new("L", (40, 40), 90).save(tmp_path / "png" / "c.png")
    assert predict(checkpoint, tmp_path / "png", tmp_path, "--dicom-sr", str(tmp_path / "sr")) == 2
    line = error_line(capsys)
    assert "--dicom-sr: a DICOM result needs a DICOM source study" in line and "c.png is not DICOM" in line
    assert not (tmp_path / "sr").exists() and not (tmp_path / "pred").exists()


def test_a_label_that_cannot_be_a_code_meaning_is_refused(images: Path, tmp_path: Path, capsys) -> None:
    checkpoint = make_checkpoint(tmp_path / "bad.pt", "densenet_tiny", labels=["effusion", "left\\right"])
    assert predict(checkpoint, images, tmp_path, "--dicom-sr", str(tmp_path / "sr")) == 2
    assert "label 'left\\\\right' cannot be a DICOM code meaning: it holds a backslash" in error_line(capsys)
    assert not (tmp_path / "sr").exists() and not (tmp_path / "pred").exists()


def test_finding_codes_are_snomed_where_one_exists() -> None:
    assert finding_code("Effusion") == ("60046008", "SCT", "Pleural effusion")
    value, scheme, meaning = finding_code("pleural_thickening")  # 18 characters: too long for a code value (SH)
    assert scheme == PRIVATE_SCHEME and meaning == "pleural_thickening" and len(value) == 16
    assert value == finding_code("pleural_thickening")[0]  # stable across runs
    assert finding_code("Nodule") == ("786838002", "SCT", "Nodule of lung")  # any nodule, not only a solitary one
    assert finding_code("mass") == ("309529002", "SCT", "Lung mass")
    assert finding_code("hernia") == ("HERNIA", PRIVATE_SCHEME, "hernia")
    with pytest.raises(Exception, match="longer than 64 characters"):
        check_code_meaning("x" * 65)


@pytest.mark.parametrize("source", ["generated", "shared"])
def test_explain_writes_the_overlay_as_a_secondary_capture(checkpoint: Path, tmp_path: Path, source: str) -> None:
    path = (
        write_source_dicom(tmp_path / "a.dcm", seed=4) if source == "generated" else SHARED / "nih" / "sample_cxr.dcm"
    )
    if not path.is_file():
        pytest.skip(f"shared DICOM test material not found: {path}")
    args = ["--checkpoint", str(checkpoint), "--image", str(path), "--label", "effusion", "--out", str(tmp_path / "x")]
    assert explain_main([*args, "--dicom"]) == 0
    (written,) = (tmp_path / "x").glob("*.dcm")
    sc, original = pydicom.dcmread(written), pydicom.dcmread(path)
    assert sc.SOPClassUID == "1.2.840.10008.5.1.4.1.1.7" and sc.PhotometricInterpretation == "RGB"
    assert sc.StudyInstanceUID == original.StudyInstanceUID and sc.SeriesInstanceUID != original.SeriesInstanceUID
    assert sc.pixel_array.shape == (32, 32, 3) and "effusion" in sc.SeriesDescription
    assert dciodvfy_errors(written) == []


def test_explain_dicom_of_a_png_gets_one_line(checkpoint: Path, tmp_path: Path, capsys) -> None:
    from PIL import Image

    Image.new("L", (40, 40), 90).save(tmp_path / "c.png")
    args = ["--checkpoint", str(checkpoint), "--image", str(tmp_path / "c.png"), "--out", str(tmp_path / "x")]
    assert explain_main([*args, "--dicom"]) == 2
    assert "--dicom: a DICOM result needs a DICOM source study" in error_line(capsys)
    assert not (tmp_path / "x").exists()


def test_an_sr_on_a_real_source_with_a_bare_age_is_valid(tmp_path: Path) -> None:
    from medclf.reporting.dicom_sr import Findings, findings_sr, write_dicom

    path = SHARED / "nih" / "sample_cxr.dcm"
    if not path.is_file():
        pytest.skip(f"shared DICOM test material not found: {path}")
    source = pydicom.dcmread(path)
    assert source.PatientAge == "62"  # invalid for AS; the SR must not copy it as is
    findings = Findings(LABELS, [0.1, 0.5, 0.9], [0, 1, 1], [0.3, 0.4, 0.5], "densenet121", "0.3.0", "ab" * 32)
    write_dicom(tmp_path / "sr.dcm", findings_sr(source, findings))
    sr = pydicom.dcmread(tmp_path / "sr.dcm")
    assert sr.PatientAge == "062Y" and sr.StudyInstanceUID == source.StudyInstanceUID
    assert dciodvfy_errors(tmp_path / "sr.dcm") == []
