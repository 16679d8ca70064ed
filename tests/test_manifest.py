"""Manifest parsing and every validation error, each naming file, row and column."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from medclf import NIH_LABELS, Manifest, ManifestError

LABELS = ["effusion", "mass"]


def write_images(folder: Path, names: list[str]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for name in names:
        Image.fromarray(np.zeros((8, 8), np.uint8)).save(folder / name)


def write_csv(path: Path, text: str) -> Path:
    path.write_text(text.strip() + "\n")
    return path


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    write_images(tmp_path / "img", ["a.png", "b.png", "c.png", "d.png"])
    return tmp_path


def test_parses_and_resolves_relative_paths(folder: Path) -> None:
    csv = write_csv(
        folder / "m.csv",
        """
image,split,effusion,mass,age
img/a.png,train,1,0,61
img/b.png,Train,0,0,40
img/c.png,VALIDATION,0,1,33
img/d.png, test ,1,1,20
""",
    )
    m = Manifest.from_csv(csv, LABELS)
    assert list(m.frame["split"]) == ["TRAIN", "TRAIN", "VALIDATION", "TEST"]
    assert Path(m.frame["image"][0]) == folder / "img" / "a.png"
    assert m.positives("TRAIN").set_index("label")["positives"].to_dict() == {"effusion": 1, "mass": 0}
    assert m.label_matrix("TEST").tolist() == [[1, 1]]
    records = m.records("VALIDATION")
    assert records[0]["row"] == 4 and records[0]["index"] == 0
    assert records[0]["mass"].shape == (1,) and records[0]["mass"][0] == 1.0
    assert m.frame["age"].tolist() == ["61", "40", "33", "20"]  # extra columns are kept


def test_float_formatted_zero_one_are_accepted(folder: Path) -> None:
    csv = write_csv(folder / "m.csv", "image,split,effusion,mass\nimg/a.png,TRAIN,1.0,0.0\nimg/b.png,VALIDATION,0,1")
    counts = Manifest.from_csv(csv, LABELS).positives()
    assert counts[["split", "label", "positives", "negatives"]].values.tolist() == [
        ["TRAIN", "effusion", 1, 0],
        ["TRAIN", "mass", 0, 1],
        ["VALIDATION", "effusion", 0, 1],
        ["VALIDATION", "mass", 1, 0],
    ]


def test_every_problem_is_listed_with_row_and_column(folder: Path) -> None:
    csv = write_csv(
        folder / "m.csv",
        """
image,split,effusion,mass
img/a.png,TRAIN,2,0
img/missing.png,TRAIN,0,yes
img/b.png,TRAINING,-1,0.5
img/a.png,VALIDATION,0,1
""",
    )
    with pytest.raises(ManifestError) as info:
        Manifest.from_csv(csv, LABELS)
    message = str(info.value)
    assert str(csv) in message
    expected = [
        "row 2, column 'effusion': '2' is not 1, 0, -1 (uncertain) or blank (missing)",
        "row 3, column 'image': image file not found",
        "row 3, column 'mass': 'yes' is not 1, 0, -1",
        "row 4, column 'split': 'TRAINING' is not one of TRAIN, VALIDATION, TEST",
        "row 4, column 'mass': '0.5' is not 1, 0, -1",
        "row 5, column 'image': duplicate of row 2",
    ]
    for text in expected:
        assert text in message, text
    assert len(info.value.problems) == len(expected)


def test_missing_columns_are_named(folder: Path) -> None:
    csv = write_csv(folder / "m.csv", "path,split,Effusion\nimg/a.png,TRAIN,1")
    with pytest.raises(ManifestError) as info:
        Manifest.from_csv(csv, LABELS)
    message = str(info.value)
    assert "missing column 'image'" in message
    assert "missing label column 'effusion' (found 'Effusion'; names are case-sensitive)" in message
    assert "missing label column 'mass'" in message


def test_missing_split_column(folder: Path) -> None:
    csv = write_csv(folder / "m.csv", "image,effusion,mass\nimg/a.png,1,0")
    with pytest.raises(ManifestError, match="missing column 'split'"):
        Manifest.from_csv(csv, LABELS)
    # ... which inference lists do not need
    m = Manifest.from_csv(csv, LABELS, required_splits=())
    assert m.frame["split"].tolist() == [""]


@pytest.mark.parametrize("missing", ["TRAIN", "VALIDATION"])
def test_empty_required_split(folder: Path, missing: str) -> None:
    other = "VALIDATION" if missing == "TRAIN" else "TRAIN"
    csv = write_csv(folder / "m.csv", f"image,split,effusion,mass\nimg/a.png,{other},1,0\nimg/b.png,TEST,0,0")
    with pytest.raises(ManifestError, match=f"split {missing} has no rows"):
        Manifest.from_csv(csv, LABELS)


def test_unreadable_and_absent_files(tmp_path: Path) -> None:
    with pytest.raises(ManifestError, match="file not found"):
        Manifest.from_csv(tmp_path / "nope.csv")
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    with pytest.raises(ManifestError, match="cannot read the CSV"):
        Manifest.from_csv(empty)
    binary = tmp_path / "bin.csv"
    binary.write_bytes(bytes(range(256)) * 4)
    with pytest.raises(ManifestError, match="cannot read the CSV"):
        Manifest.from_csv(binary)
    header_only = write_csv(tmp_path / "h.csv", "image,split," + ",".join(NIH_LABELS))
    with pytest.raises(ManifestError, match="header but no rows"):
        Manifest.from_csv(header_only)


def test_duplicate_header_and_reserved_label(folder: Path) -> None:
    csv = write_csv(folder / "m.csv", "image,split,effusion,effusion\nimg/a.png,TRAIN,1,0")
    with pytest.raises(ManifestError, match="column 'effusion' appears more than once"):
        Manifest.from_csv(csv, ["effusion"])
    csv = write_csv(folder / "m2.csv", "image,split,labels\nimg/a.png,TRAIN,1")
    with pytest.raises(ManifestError, match="reserved"):
        Manifest.from_csv(csv, ["labels"])


def test_unlabeled_list_for_inference(folder: Path) -> None:
    csv = write_csv(folder / "m.csv", "image\nimg/a.png\n" + str(folder / "img" / "b.png"))
    m = Manifest.from_csv(csv, LABELS, required_splits=(), require_labels=False)
    assert not m.has_labels
    assert [r["image"] for r in m.records(None)] == [str(folder / "img" / "a.png"), str(folder / "img" / "b.png")]
    assert "effusion" not in m.records(None)[0]


def test_example_manifest_documents_the_format() -> None:
    example = Path(__file__).resolve().parents[1] / "data" / "dataset.csv.example"
    m = Manifest.from_csv(example, check_files=False)
    assert m.labels == NIH_LABELS
    assert set(m.frame["split"]) == {"TRAIN", "VALIDATION", "TEST"}
