"""Patients with images in more than one split are refused before training (leakage), unless allowed."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from medclf.data.checks import check_patient_overlap
from medclf.data.sources import read_manifests
from medclf.errors import ManifestError


def _manifest(tmp_path: Path, rows: list[tuple[str, str, str]], column: str = "patient_id") -> Path:
    lines = [f"image,split,effusion,{column}"]
    for image, split, patient in rows:
        (tmp_path / image).write_bytes(b"")
        lines.append(f"{image},{split},0,{patient}")
    (tmp_path / "m.csv").write_text("\n".join(lines) + "\n")
    return tmp_path / "m.csv"


ROWS = [("a.png", "TRAIN", "p1"), ("b.png", "TEST", "p1"), ("c.png", "VALIDATION", "p2"), ("d.png", "TRAIN", "")]


def test_a_patient_in_two_splits_is_an_error_naming_it_and_its_rows(tmp_path: Path) -> None:
    manifest = read_manifests(_manifest(tmp_path, ROWS), ("effusion",))
    with pytest.raises(
        ManifestError, match=r"1 patient\(s\) of column 'patient_id' .* p1 in TEST, TRAIN \(rows 2, 3\)"
    ):
        check_patient_overlap(manifest)


def test_allowed_overlap_is_a_warning_and_a_clean_split_passes(tmp_path: Path, caplog) -> None:
    manifest = read_manifests(_manifest(tmp_path, ROWS), ("effusion",))
    caplog.set_level(logging.WARNING)
    check_patient_overlap(manifest, allow=True)
    assert "allowed by --allow-patient-overlap" in caplog.text
    clean = read_manifests(_manifest(tmp_path, [r for r in ROWS if r[0] != "b.png"]), ("effusion",))
    check_patient_overlap(clean)  # no error; blank patient ids are not grouped together


def test_training_refuses_leakage_and_honours_the_column_flag(tmp_path: Path, capsys) -> None:
    from medclf.train import main

    csv = _manifest(tmp_path, ROWS, column="subject")
    args = ["--csv", str(csv), "--labels", "effusion", "--out", str(tmp_path / "run"), "--no-progress"]
    # The default column (patient_id) is absent: nothing to check, so training goes on to read the (empty)
    # images; with --patient-column subject the leakage is found first.
    assert main([*args, "--patient-column", "subject"]) == 2
    assert "patient(s) of column 'subject' have images in more than one split" in capsys.readouterr().out
