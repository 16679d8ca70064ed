"""CheXpert and MIMIC-CXR manifest preparation, on small fixture files written in the published layouts."""

from __future__ import annotations

import csv
import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from medclf.data.prepare.chexpert import CXR_LABELS, CXR_OBSERVATIONS, prepare_chexpert_manifest
from medclf.data.prepare.mimic_cxr import prepare_mimic_cxr_manifest
from medclf.errors import ConfigError, ManifestError
from medclf.reporting.manifest_csv import write_manifest as write_chexpert_manifest

from .conftest import ROOT

CHEXPERT_HEADER = ["Path", "Sex", "Age", "Frontal/Lateral", "AP/PA", *CXR_OBSERVATIONS]
# Observation values cycled over the 14 columns: every kind of cell appears in each file.
VALUES = ["1.0", "0.0", "-1.0", "", "1", "0", "-1"]


def _write(path: Path, header: list[str], rows: list[list[str]]) -> Path:
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def _chexpert_row(patient: int, study: int, view: int, kind: str = "PA", shift: int = 0, part: str = "train"):
    frontal = "Lateral" if kind == "LL" else "Frontal"
    ap_pa = "" if kind == "LL" else kind
    image = f"CheXpert-v1.0-small/{part}/patient{patient:05d}/study{study}/view{view}_{frontal.lower()}.jpg"
    labels = [VALUES[(j + shift) % len(VALUES)] for j in range(len(CXR_OBSERVATIONS))]
    return [image, "Female" if patient % 2 else "Male", str(40 + patient), frontal, ap_pa, *labels]


def _chexpert_train(tmp_path: Path, n_patients: int = 30) -> Path:
    rows = []
    for p in range(1, n_patients + 1):
        rows.append(_chexpert_row(p, 1, 1, "PA" if p % 3 else "AP", shift=p))
        rows.append(_chexpert_row(p, 1, 2, "LL", shift=p + 1))
        if p % 2:
            rows.append(_chexpert_row(p, 2, 1, "AP", shift=p + 2))
    return _write(tmp_path / "train.csv", CHEXPERT_HEADER, rows)


def _chexpert_valid(tmp_path: Path, patients: range = range(64541, 64546)) -> Path:
    rows = [_chexpert_row(p, 1, 1, "AP", shift=p, part="valid") for p in patients]
    return _write(tmp_path / "valid.csv", CHEXPERT_HEADER, rows)


def _assert_patientwise(frame: pd.DataFrame) -> None:
    assert (frame.groupby("patient_id")["split"].nunique() == 1).all()


def test_chexpert_labels_mapped_and_values_kept(tmp_path: Path) -> None:
    train = _chexpert_train(tmp_path, n_patients=3)
    frame = prepare_chexpert_manifest(train, tmp_path / "data")
    assert list(frame.columns) == ["image", "split", *CXR_LABELS, "patient_id", "age", "sex", "view"]
    assert {"no_finding", "pleural_effusion", "lung_opacity", "support_devices"} <= set(CXR_LABELS)
    raw = pd.read_csv(train, dtype=str, keep_default_na=False)
    expected = {"1.0": "1", "1": "1", "0.0": "0", "0": "0", "-1.0": "-1", "-1": "-1", "": ""}
    for observation, label in zip(CXR_OBSERVATIONS, CXR_LABELS, strict=True):
        assert frame[label].tolist() == raw[observation].map(expected).tolist()
    assert set(frame[list(CXR_LABELS)].to_numpy().ravel()) == {"1", "0", "-1", ""}
    assert frame["image"].iat[0] == os.path.abspath(tmp_path / "data") + "/" + raw["Path"].iat[0]
    assert frame["patient_id"].iat[0] == "patient00001"
    assert set(frame["view"]) == {"PA", "AP", "LATERAL"}
    out = write_chexpert_manifest(frame, tmp_path / "out" / "chexpert.csv")
    written = pd.read_csv(out, dtype=str, keep_default_na=False)
    assert written["pleural_effusion"].tolist() == frame["pleural_effusion"].tolist()
    # medclf reads the prepared manifest: -1 and blank kept for --uncertain to decide at training time.
    from medclf import Manifest

    manifest = Manifest.from_csv(out, CXR_LABELS, required_splits=(), check_files=False)
    counts = manifest.label_counts(None)
    assert sum(c["uncertain"] for c in counts.values()) == int((frame[list(CXR_LABELS)] == "-1").to_numpy().sum())
    assert sum(c["missing"] for c in counts.values()) == int((frame[list(CXR_LABELS)] == "").to_numpy().sum())


def test_chexpert_patientwise_split_is_seeded(tmp_path: Path) -> None:
    train = _chexpert_train(tmp_path, n_patients=40)
    frame = prepare_chexpert_manifest(train, tmp_path, fractions=(0.6, 0.2, 0.2), seed=3)
    _assert_patientwise(frame)
    counts = frame["split"].value_counts()
    assert set(counts.index) == {"TRAIN", "VALIDATION", "TEST"}
    assert counts["TRAIN"] > counts["VALIDATION"]
    again = prepare_chexpert_manifest(train, tmp_path, fractions=(0.6, 0.2, 0.2), seed=3)
    pd.testing.assert_frame_equal(frame, again)
    other = prepare_chexpert_manifest(train, tmp_path, fractions=(0.6, 0.2, 0.2), seed=4)
    assert other["split"].tolist() != frame["split"].tolist()


def test_chexpert_valid_csv_becomes_test(tmp_path: Path) -> None:
    frame = prepare_chexpert_manifest(_chexpert_train(tmp_path), tmp_path, valid_csv=_chexpert_valid(tmp_path))
    _assert_patientwise(frame)
    test = frame[frame["split"] == "TEST"]
    assert len(test) == 5
    assert test["image"].str.contains("/valid/").all()
    assert set(frame["split"][~frame["image"].str.contains("/valid/")]) == {"TRAIN", "VALIDATION"}


def test_chexpert_view_filter_keeps_frontal_views(tmp_path: Path) -> None:
    train = _chexpert_train(tmp_path)
    pa = prepare_chexpert_manifest(train, tmp_path, views=["PA"])
    assert set(pa["view"]) == {"PA"}
    assert not pa["image"].str.contains("lateral").any()
    both = prepare_chexpert_manifest(train, tmp_path, views="pa,ap")
    assert set(both["view"]) == {"PA", "AP"}
    assert len(both) == len(prepare_chexpert_manifest(train, tmp_path)) - 30  # the 30 lateral images


def test_chexpert_patient_in_train_and_valid_is_leakage(tmp_path: Path) -> None:
    valid = _chexpert_valid(tmp_path, patients=range(1, 3))
    with pytest.raises(ManifestError, match="leakage") as info:
        prepare_chexpert_manifest(_chexpert_train(tmp_path), tmp_path, valid_csv=valid)
    assert any("patient00001" in p for p in info.value.problems)
    assert info.value.path == str(valid)


@pytest.mark.parametrize("value", ["2", "yes"])
def test_chexpert_bad_value_names_file_row_column(tmp_path: Path, value: str) -> None:
    rows = [_chexpert_row(1, 1, 1), _chexpert_row(2, 1, 1)]
    rows[1][CHEXPERT_HEADER.index("Edema")] = value
    train = _write(tmp_path / "train.csv", CHEXPERT_HEADER, rows)
    with pytest.raises(ManifestError) as info:
        prepare_chexpert_manifest(train, tmp_path)
    assert info.value.path == str(train)
    assert info.value.problems == [f"row 3, column 'Edema': {value!r} is not 1, 0, -1 or blank"]


def test_chexpert_duplicate_path_refused_naming_the_file_and_both_rows(tmp_path: Path) -> None:
    rows = [_chexpert_row(1, 1, 1), _chexpert_row(2, 1, 1), _chexpert_row(1, 1, 1, shift=3)]
    train = _write(tmp_path / "train.csv", CHEXPERT_HEADER, rows)
    with pytest.raises(ManifestError) as info:
        prepare_chexpert_manifest(train, tmp_path)
    assert info.value.path == str(train)
    assert info.value.problems == [f"row 4, column 'Path': {rows[0][0]!r} repeats row 2 (one image twice)"]


def test_chexpert_missing_file_or_column(tmp_path: Path) -> None:
    with pytest.raises(ManifestError, match="not found"):
        prepare_chexpert_manifest(tmp_path / "nope.csv", tmp_path)
    header = [c for c in CHEXPERT_HEADER if c != "Fracture"]
    train = _write(tmp_path / "train.csv", header, [])
    with pytest.raises(ManifestError, match="missing column 'Fracture'"):
        prepare_chexpert_manifest(train, tmp_path)
    with pytest.raises(ConfigError):
        prepare_chexpert_manifest(_chexpert_train(tmp_path), tmp_path, fractions=(0.5, 0.1, 0.1))


def _mimic_files(tmp_path: Path) -> dict[str, Path]:
    """Three patients, one per official split; patient 10000032 has two studies, one of two images."""
    studies = [("10000032", "50414267"), ("10000032", "53189527"), ("11000011", "51234567"), ("19999987", "55555555")]
    label_rows = [[s, st, *(VALUES[(i + j) % len(VALUES)] for j in range(14))] for i, (s, st) in enumerate(studies)]
    label_header = ["subject_id", "study_id", *CXR_OBSERVATIONS]
    labels = _write(tmp_path / "mimic-cxr-2.0.0-chexpert.csv", label_header, label_rows)
    images = [
        ("d1", "10000032", "50414267", "PA", "train"),
        ("d2", "10000032", "50414267", "LATERAL", "train"),
        ("d3", "10000032", "53189527", "AP", "train"),
        ("d4", "11000011", "51234567", "PA", "validate"),
        ("d5", "19999987", "55555555", "AP", "test"),
    ]
    header = ["dicom_id", "subject_id", "study_id", "PerformedProcedureStepDescription", "ViewPosition", "Rows"]
    meta_rows = [[d, s, st, "CHEST (PA AND LAT)", v, "3056"] for d, s, st, v, _ in images]
    metadata = _write(tmp_path / "mimic-cxr-2.0.0-metadata.csv", header, meta_rows)
    split = _write(
        tmp_path / "mimic-cxr-2.0.0-split.csv",
        ["dicom_id", "study_id", "subject_id", "split"],
        [[d, st, s, sp] for d, s, st, _, sp in images],
    )
    return {"chexpert_csv": labels, "metadata_csv": metadata, "split_csv": split}


def test_mimic_official_split_labels_and_path_layout(tmp_path: Path) -> None:
    files = _mimic_files(tmp_path)
    frame = prepare_mimic_cxr_manifest(**files, root=tmp_path / "mimic")
    assert frame["dicom_id"].tolist() == ["d1", "d2", "d3", "d4", "d5"]
    assert frame["split"].tolist() == ["TRAIN", "TRAIN", "TRAIN", "VALIDATION", "TEST"]
    base = os.path.abspath(tmp_path / "mimic")
    assert frame["image"].iat[0] == f"{base}/files/p10/p10000032/s50414267/d1.jpg"
    assert frame["image"].iat[4] == f"{base}/files/p19/p19999987/s55555555/d5.jpg"
    assert frame["patient_id"].tolist() == ["10000032"] * 3 + ["11000011", "19999987"]
    assert frame["view"].tolist() == ["PA", "LATERAL", "AP", "PA", "AP"]
    # Both images of study 50414267 carry its labels; 1.0 -> "1", blank kept.
    assert frame[list(CXR_LABELS)].iloc[0].tolist() == frame[list(CXR_LABELS)].iloc[1].tolist()
    assert frame["no_finding"].tolist() == ["1", "1", "0", "-1", ""]
    dcm = prepare_mimic_cxr_manifest(**files, root=tmp_path, views=["AP"], suffix=".dcm")
    assert dcm["dicom_id"].tolist() == ["d3", "d5"]
    assert dcm["image"].str.endswith(".dcm").all()
    with pytest.raises(ConfigError):
        prepare_mimic_cxr_manifest(**files, root=tmp_path, suffix=".png")


def test_mimic_leakage_and_bad_values(tmp_path: Path) -> None:
    files = _mimic_files(tmp_path)
    text = files["split_csv"].read_text().replace("d3,53189527,10000032,train", "d3,53189527,10000032,test")
    files["split_csv"].write_text(text)
    with pytest.raises(ManifestError, match="leakage") as info:
        prepare_mimic_cxr_manifest(**files, root=tmp_path)
    assert info.value.problems[1] == "patient 10000032 is in splits TEST, TRAIN"
    files["split_csv"].write_text(text.replace(",test\n", ",holdout\n", 1))
    with pytest.raises(ManifestError, match=r"row 4, column 'split': 'holdout'"):
        prepare_mimic_cxr_manifest(**files, root=tmp_path)
    labels = files["chexpert_csv"].read_text().replace("1.0", "yes", 1)
    files["chexpert_csv"].write_text(labels)
    with pytest.raises(ManifestError) as info:
        prepare_mimic_cxr_manifest(**files, root=tmp_path)
    assert info.value.path == str(files["chexpert_csv"])
    assert info.value.problems == ["row 2, column 'No Finding': 'yes' is not 1, 0, -1 or blank"]


def _run(script: str, *args: object) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    command = [sys.executable, str(ROOT / "scripts" / script), *map(str, args)]
    return subprocess.run(command, capture_output=True, text=True, env=env, cwd=ROOT, timeout=60, check=False)


def test_scripts_end_to_end(tmp_path: Path) -> None:
    out = tmp_path / "out" / "chexpert.csv"
    train, valid = _chexpert_train(tmp_path), _chexpert_valid(tmp_path)
    args = ["--csv", train, "--valid-csv", valid, "--root", tmp_path, "--out", out, "--views", "PA,AP"]
    done = _run("prepare_chexpert.py", *args)
    assert done.returncode == 0, done.stderr
    assert "TEST" in done.stdout and "wrote" in done.stdout
    written = pd.read_csv(out, dtype=str, keep_default_na=False)
    assert (written["split"] == "TEST").sum() == 5
    assert set(written["view"]) == {"PA", "AP"}

    files = _mimic_files(tmp_path)
    out = tmp_path / "mimic.csv"
    args = [f"--{k.replace('_', '-')}" if i == 0 else v for k, v in files.items() for i in range(2)]
    done = _run("prepare_mimic_cxr.py", *args, "--root", tmp_path, "--out", out, "--suffix", ".dcm")
    assert done.returncode == 0, done.stderr
    written = pd.read_csv(out, dtype=str, keep_default_na=False)
    assert written["split"].tolist() == ["TRAIN", "TRAIN", "TRAIN", "VALIDATION", "TEST"]
    assert written["image"].iat[0] == "files/p10/p10000032/s50414267/d1.dcm"  # relative to the CSV's folder


def test_script_error_exits_2_with_one_line(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    spec = importlib.util.spec_from_file_location("prepare_chexpert_script", ROOT / "scripts" / "prepare_chexpert.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    rows = [_chexpert_row(1, 1, 1)]
    rows[0][CHEXPERT_HEADER.index("Fracture")] = "yes"
    train = _write(tmp_path / "train.csv", CHEXPERT_HEADER, rows)
    assert script.main(["--csv", str(train), "--root", str(tmp_path), "--out", str(tmp_path / "m.csv")]) == 2
    printed = capsys.readouterr().out
    assert printed.startswith("error: ") and f"{train}" in printed
    assert "row 2, column 'Fracture': 'yes' is not 1, 0, -1 or blank" in printed
    assert not (tmp_path / "m.csv").exists()


def test_mimic_duplicate_image_or_study_names_both_rows(tmp_path: Path) -> None:
    files = _mimic_files(tmp_path)
    lines = files["metadata_csv"].read_text().splitlines()
    files["metadata_csv"].write_text("\n".join([*lines, lines[2]]) + "\n")  # d2 again, as row 7
    with pytest.raises(ManifestError) as info:
        prepare_mimic_cxr_manifest(**files, root=tmp_path)
    assert info.value.path == str(files["metadata_csv"])
    assert info.value.problems == ["row 7, column 'dicom_id': 'd2' repeats row 3 (one image twice)"]


def test_prepare_command_writes_what_the_aliases_write(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from medclf.prepare import main as prepare_main
    from medclf.prepare_chexpert import main as chexpert_main
    from medclf.prepare_mimic_cxr import main as mimic_main

    train, valid = _chexpert_train(tmp_path), _chexpert_valid(tmp_path)
    files = _mimic_files(tmp_path)
    chexpert = ["--csv", train, "--valid-csv", valid, "--root", tmp_path, "--views", "PA,AP", "--seed", "5"]
    mimic = [f"--{k.replace('_', '-')}" if i == 0 else v for k, v in files.items() for i in range(2)]
    mimic += ["--root", tmp_path, "--suffix", ".dcm"]
    for name, alias, args in (("chexpert", chexpert_main, chexpert), ("mimic-cxr", mimic_main, mimic)):
        args = [str(a) for a in args]
        assert prepare_main([name, *args, "--out", str(tmp_path / "new" / "m.csv")]) == 0
        new = capsys.readouterr().out.replace(str(tmp_path / "new"), "OUT")
        assert alias([*args, "--out", str(tmp_path / "old" / "m.csv")]) == 0
        old = capsys.readouterr().out.replace(str(tmp_path / "old"), "OUT")
        assert (tmp_path / "new" / "m.csv").read_bytes() == (tmp_path / "old" / "m.csv").read_bytes(), name
        assert new == old and "TEST" in new, name
    # A leak between train.csv and valid.csv: one error line naming valid.csv, exit 2.
    leaky = _chexpert_valid(tmp_path, patients=range(1, 3))
    out = tmp_path / "leak.csv"
    args = ["--csv", str(train), "--valid-csv", str(leaky), "--root", ".", "--out", str(out)]
    assert prepare_main(["chexpert", *args]) == 2
    printed = capsys.readouterr().out
    assert printed.startswith("error: ") and str(leaky) in printed and "patient leakage" in printed
    assert not out.exists()
