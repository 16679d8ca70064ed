"""NIH ChestX-ray14 manifest preparation (data.prepare.nih, medclf-prepare nih and aliases), on the real label file."""

from __future__ import annotations

import importlib.util
import re
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from medclf.data.manifest import NIH_LABELS, Manifest
from medclf.data.prepare.nih import MANIFEST_COLUMNS, NIH_FINDINGS, prepare_nih_manifest
from medclf.errors import ConfigError, ManifestError
from medclf.reporting.manifest_csv import write_manifest as write_nih_manifest

from .conftest import ROOT, shared_path

N_ROWS = 112_120
HEADER = "Image Index,Finding Labels,Follow-up #,Patient ID,Patient Age,Patient Gender,View Position\n"


def _load_script():
    spec = importlib.util.spec_from_file_location("prepare_nih_script", ROOT / "scripts" / "prepare_nih.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def data_entry() -> Path:
    return shared_path("nih", "Data_Entry_2017_v2020.csv.gz")


@pytest.fixture(scope="module")
def raw(data_entry: Path) -> pd.DataFrame:
    """The label file read directly, independently of medclf.data.prepare.nih."""
    return pd.read_csv(data_entry, dtype=str, keep_default_na=False)


def _patient_splits(frame: pd.DataFrame) -> pd.Series:
    return frame.groupby("patient_id")["split"].nunique()


def _write_entry(path: Path, rows: list[str]) -> Path:
    path.write_text(HEADER + "".join(r + "\n" for r in rows))
    return path


def test_full_file_random_split(data_entry: Path, raw: pd.DataFrame, tmp_path: Path) -> None:
    start = time.perf_counter()
    frame, stats = prepare_nih_manifest(data_entry, tmp_path / "images")
    out = write_nih_manifest(frame, tmp_path / "nih.csv")
    seconds = time.perf_counter() - start
    print(f"full NIH file: prepared and written in {seconds:.2f} s")
    assert seconds < 15

    assert len(frame) == N_ROWS == stats["n_output"] == stats["n_input"]
    assert list(frame.columns) == list(MANIFEST_COLUMNS)
    assert set(frame["image"].map(lambda p: Path(p).name)) == set(raw["Image Index"])
    # Positives per label, counted straight from the raw text.
    for name, label in NIH_FINDINGS.items():
        expected = int(raw["Finding Labels"].str.contains(name, regex=False).sum())
        assert int(frame[label].sum()) == expected, name
        assert sum(stats["positives"][s][label] for s in ("TRAIN", "VALIDATION", "TEST")) == expected
    no_finding = raw["Finding Labels"].eq("No Finding").to_numpy()
    assert (frame.loc[no_finding, list(NIH_LABELS)].to_numpy() == 0).all()
    assert (frame.loc[~no_finding, list(NIH_LABELS)].to_numpy().sum(axis=1) > 0).all()
    assert set(np.unique(frame[list(NIH_LABELS)].to_numpy())) == {0, 1}

    assert (_patient_splits(frame) == 1).all()
    fractions = frame["split"].value_counts(normalize=True)
    for split, target in (("TRAIN", 0.7), ("VALIDATION", 0.1), ("TEST", 0.2)):
        assert abs(fractions[split] - target) <= 0.02, (split, fractions[split])
        assert stats["images"][split] == int((frame["split"] == split).sum())
        assert stats["patients"][split] == frame.loc[frame["split"] == split, "patient_id"].nunique()

    manifest = Manifest.from_csv(out, check_files=False)
    assert len(manifest.frame) == N_ROWS
    counts = manifest.positives()
    assert counts.loc[counts["label"] == "hernia", "positives"].sum() == int(frame["hernia"].sum())
    # The images folder lies inside the CSV's folder, so paths are written relative to it.
    assert pd.read_csv(out, nrows=1)["image"].iat[0].startswith("images/")
    assert Path(manifest.frame["image"].iat[0]).parent == (tmp_path / "images").resolve()


def test_official_test_list(data_entry: Path, raw: pd.DataFrame, tmp_path: Path) -> None:
    is_test = raw["Patient ID"].astype(int) % 5 == 0
    test_list = tmp_path / "test_list.txt"
    test_list.write_text("\n".join(raw.loc[is_test, "Image Index"]) + "\n")
    frame, stats = prepare_nih_manifest(data_entry, tmp_path, test_list=test_list, seed=3)

    names = frame["image"].map(lambda p: Path(p).name)
    assert set(names[frame["split"] == "TEST"]) == set(raw.loc[is_test, "Image Index"])
    assert len(frame) == N_ROWS
    assert (_patient_splits(frame) == 1).all()
    val_patients = set(frame.loc[frame["split"] == "VALIDATION", "patient_id"])
    assert val_patients
    assert not val_patients & set(frame.loc[frame["split"] != "VALIDATION", "patient_id"])
    assert abs(stats["images"]["VALIDATION"] / N_ROWS - 0.1) <= 0.02

    # With a train/val list, images in neither list are dropped.
    train_val = tmp_path / "train_val_list.txt"
    kept = ~is_test & (raw["Patient ID"].astype(int) % 5 != 1)
    train_val.write_text("\n".join(raw.loc[kept, "Image Index"]))
    frame2, stats2 = prepare_nih_manifest(data_entry, tmp_path, test_list=test_list, train_val_list=train_val)
    assert len(frame2) == int((is_test | kept).sum())
    assert stats2["dropped"]["not_in_lists"] == N_ROWS - len(frame2)


def test_inconsistent_test_list_is_an_error(data_entry: Path, tmp_path: Path) -> None:
    test_list = tmp_path / "test_list.txt"
    test_list.write_text("00000001_000.png\n")  # patient 1 also has 00000001_001.png and _002.png
    with pytest.raises(ManifestError, match=r"patient 1 has 1 image\(s\) in the test list and 2 outside"):
        prepare_nih_manifest(data_entry, tmp_path, test_list=test_list)


def test_views_and_script(data_entry: Path, raw: pd.DataFrame, tmp_path: Path, capsys) -> None:
    script = _load_script()
    out = tmp_path / "data" / "nih_pa.csv"
    args = ["--data-entry", str(data_entry), "--images", str(tmp_path / "img"), "--out", str(out)]
    assert script.main([*args, "--views", "PA", "--seed", "1"]) == 0
    printed = capsys.readouterr().out
    assert "hernia" in printed and "wrote" in printed

    written = pd.read_csv(out, dtype=str, keep_default_na=False)
    assert list(written.columns) == list(MANIFEST_COLUMNS)
    assert set(written["view"]) == {"PA"}
    assert len(written) == int((raw["View Position"] == "PA").sum())
    assert written["image"].iat[0].startswith(str((tmp_path / "img").resolve()))  # outside data/: absolute
    assert (written.groupby("patient_id")["split"].nunique() == 1).all()


def test_require_images(data_entry: Path, raw: pd.DataFrame, tmp_path: Path) -> None:
    images = tmp_path / "images"
    images.mkdir()
    present = list(raw["Image Index"].iloc[[0, 10, 500, 70_000, N_ROWS - 1]])
    for name in [*present, "not_listed.png"]:
        (images / name).touch()
    (images / raw["Image Index"].iat[20]).mkdir()  # a folder is not an image
    frame, stats = prepare_nih_manifest(data_entry, images, require_images=True)
    assert sorted(frame["image"].map(lambda p: Path(p).name)) == sorted(present)
    assert stats["dropped"]["missing_image"] == N_ROWS - len(present)
    assert stats["n_output"] == len(present)


def test_unknown_finding_names_the_row(tmp_path: Path) -> None:
    entry = _write_entry(
        tmp_path / "Data_Entry.csv",
        [
            "00000001_000.png,Cardiomegaly,0,1,57,M,PA",
            "00000002_000.png,Effusion|Pneumonitis,0,2,80,M,AP",
            "00000003_000.png,No Finding,0,3,40,F,PA",
        ],
    )
    with pytest.raises(ManifestError) as info:
        prepare_nih_manifest(entry, tmp_path)
    message = str(info.value)
    assert "row 3 (00000002_000.png)" in message and "'Pneumonitis'" in message
    assert "row 2" not in message and "row 4" not in message


@pytest.mark.parametrize(
    ("findings", "expected"),
    [("No Finding|Mass", "combines 'No Finding'"), ("Mass||Edema", "empty finding"), ("", "blank")],
)
def test_malformed_findings(tmp_path: Path, findings: str, expected: str) -> None:
    entry = _write_entry(tmp_path / "d.csv", ["a.png,Mass,0,1,5,M,PA", f"b.png,{findings},0,2,5,F,PA"])
    with pytest.raises(ManifestError, match=expected):
        prepare_nih_manifest(entry, tmp_path)


def test_small_file_labels_and_settings(tmp_path: Path) -> None:
    entry = _write_entry(
        tmp_path / "d.csv",
        ["a.png,Pleural_Thickening|Hernia,0,1,5,M,PA", "b.png,No Finding,0,2,6,F,ap", "c.png,Mass,1,2,7,F,AP"],
    )
    frame, _ = prepare_nih_manifest(entry, tmp_path, split_fractions=(1.0, 0.0, 0.0))
    assert frame["split"].tolist() == ["TRAIN"] * 3
    assert frame.loc[0, ["pleural_thickening", "hernia"]].tolist() == [1, 1]
    assert frame[list(NIH_LABELS)].to_numpy().sum() == 3
    assert frame["view"].tolist() == ["PA", "AP", "AP"]
    for bad in [(0.5, 0.5), (0.7, 0.2, 0.2), (0.0, 0.5, 0.5), (0.9, -0.1, 0.2)]:
        with pytest.raises(ConfigError):
            prepare_nih_manifest(entry, tmp_path, split_fractions=bad)
    with pytest.raises(ManifestError, match="no image is left"):
        prepare_nih_manifest(entry, tmp_path, views=("LL",))


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(sizes=st.lists(st.integers(1, 12), min_size=1, max_size=60), seed=st.integers(0, 2**16))
def test_random_split_is_patientwise_and_seeded(tmp_path: Path, sizes: list[int], seed: int) -> None:
    rows = [f"{p:08d}_{k:03d}.png,Mass,{k},{p},50,M,PA" for p, n in enumerate(sizes, 1) for k in range(n)]
    entry = _write_entry(tmp_path / "d.csv", rows)
    frame, stats = prepare_nih_manifest(entry, tmp_path, seed=seed)
    again, _ = prepare_nih_manifest(entry, tmp_path, seed=seed)
    assert len(frame) == len(rows)
    assert (_patient_splits(frame) == 1).all()
    assert frame["split"].tolist() == again["split"].tolist()
    assert sum(stats["images"].values()) == len(rows)


def test_script_bad_input_returns_2(tmp_path: Path, capsys) -> None:
    script = _load_script()
    out = tmp_path / "nih.csv"
    base = ["--images", str(tmp_path), "--out", str(out)]
    assert script.main(["--data-entry", str(tmp_path / "missing.csv.gz"), *base]) == 2
    printed = capsys.readouterr().out
    assert printed.startswith("error: ") and "file not found" in printed and "Traceback" not in printed
    assert not out.exists()

    entry = _write_entry(tmp_path / "d.csv", ["a.png,Mass,0,1,5,M,PA"])
    assert script.main(["--data-entry", str(entry), *base, "--split", "0.7,x,0.2"]) == 2
    assert "--split" in capsys.readouterr().out
    assert script.main(["--data-entry", str(entry), *base, "--test-list", str(tmp_path / "nope.txt")]) == 2
    assert "nope.txt" in capsys.readouterr().out
    assert not out.exists()


def test_prepare_command_nih_writes_what_the_alias_writes(tmp_path: Path, capsys) -> None:
    from medclf.prepare import main as prepare_main
    from medclf.prepare_nih import main as alias_main

    rows = [f"{p:08d}_{k:03d}.png,{'Mass|Hernia' if k else 'No Finding'},{k},{p},50,M,PA" for p in range(1, 30)
            for k in range(p % 3 + 1)]  # fmt: skip
    entry = _write_entry(tmp_path / "d.csv", rows)
    args = ["--data-entry", str(entry), "--images", str(tmp_path / "img"), "--seed", "4"]
    assert prepare_main(["nih", *args, "--out", str(tmp_path / "new" / "nih.csv")]) == 0
    new = capsys.readouterr().out
    assert alias_main([*args, "--out", str(tmp_path / "old" / "nih.csv")]) == 0
    old = capsys.readouterr().out
    assert (tmp_path / "new" / "nih.csv").read_bytes() == (tmp_path / "old" / "nih.csv").read_bytes()
    assert "hernia" in new and _same_output(new, tmp_path / "new") == _same_output(old, tmp_path / "old")
    # Bad input: one error line naming the file, exit 2, nothing written.
    assert prepare_main(["nih", "--data-entry", str(tmp_path / "missing.csv"), "--images", ".", "--out",
                         str(tmp_path / "x.csv")]) == 2  # fmt: skip
    printed = capsys.readouterr().out
    assert printed.startswith("error: ") and "missing.csv" in printed and not (tmp_path / "x.csv").exists()


def _same_output(printed: str, folder: Path) -> str:
    """The console output with the output folder and the timing taken out."""
    return re.sub(r" in \d+\.\d+ s", "", printed.replace(str(folder), "OUT"))


def test_prepare_command_help_lists_the_data_sets_and_their_flags(capsys) -> None:
    from medclf.prepare import DATA_SETS, main

    with pytest.raises(SystemExit) as done:
        main(["--help"])
    assert done.value.code == 0
    text = capsys.readouterr().out
    assert all(f"\n  {name} " in text for name in ("nih", "chexpert", "mimic-cxr")) and "NAME --help" in text
    for name, flag in (("nih", "--data-entry"), ("chexpert", "--valid-csv"), ("mimic-cxr", "--split-csv")):
        with pytest.raises(SystemExit) as done:
            main([name, "--help"])
        text = capsys.readouterr().out
        assert done.value.code == 0 and f"usage: python -m medclf.prepare {name} " in text and flag in text
    for argv, message in (([], "required: NAME"), (["nhi"], "invalid choice: 'nhi'")):
        with pytest.raises(SystemExit) as done:
            main(argv)
        assert done.value.code == 2 and message in capsys.readouterr().err
    # Registered once: each entry names a settings dataclass and a workflow that exist.
    from medclf import config
    from medclf.workflows import prepare

    for data_set in DATA_SETS.values():
        assert callable(getattr(prepare, data_set.workflow)) and hasattr(getattr(config, data_set.settings), "out")


def test_prepare_command_help_loads_nothing_heavy() -> None:
    import subprocess
    import sys

    code = (
        "import sys\nfrom medclf.prepare import main\ntry:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
        "heavy = [m for m in ('torch', 'monai', 'pandas', 'medclf.config', 'medclf.workflows') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
