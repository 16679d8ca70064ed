"""Several data sets in one run: the union of manifests, a `source` column, masked absent labels."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from medclf.cli import build_parser
from medclf.config import TrainConfig, ValidateConfig, load_settings
from medclf.data.sources import read_manifests
from medclf.errors import ConfigError, ManifestError

from .conftest import STARTER, shared_path

LABELS = ("effusion", "mass", "edema")


def _write(folder: Path, name: str, text: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for line in text.strip().splitlines()[1:]:
        image = folder / line.split(",")[0]
        image.parent.mkdir(parents=True, exist_ok=True)
        image.write_bytes(b"")
    path = folder / name
    path.write_text(text.strip() + "\n")
    return path


def test_union_tags_sources_resolves_paths_per_csv_and_masks_absent_labels(tmp_path: Path) -> None:
    a = _write(
        tmp_path / "nih", "nih.csv", "image,split,effusion,mass,edema\nx.png,TRAIN,1,0,0\ny.png,VALIDATION,0,1,1"
    )
    b = _write(tmp_path / "chex", "chexpert.csv", "image,split,effusion,edema\nx.png,TRAIN,-1,1\nz.png,TEST,,0")
    m = read_manifests([a, b], LABELS)
    assert m.files == (a, b)
    assert m.frame["source"].tolist() == ["nih", "nih", "chexpert", "chexpert"]
    # Each CSV's relative paths resolve against its own folder: x.png twice is two different images.
    assert (
        Path(m.frame["image"][0]).parent == tmp_path / "nih" and Path(m.frame["image"][2]).parent == tmp_path / "chex"
    )
    targets = m.targets("TRAIN")
    assert targets[0].tolist() == [1, 0, 0]
    assert np.isnan(targets[1, 0]) and np.isnan(targets[1, 1]) and targets[1, 2] == 1  # -1 ignored, mass absent
    counts = m.positives("TRAIN").set_index("label")
    assert counts.loc["mass"].tolist() == ["TRAIN", 0, 1, 0, 1]
    assert counts.loc["effusion"].tolist() == ["TRAIN", 1, 0, 1, 0]
    assert m.absent_labels == ()


def test_source_column_of_the_csv_is_kept_and_clashing_names_get_their_folder(tmp_path: Path) -> None:
    a = _write(
        tmp_path / "site1", "train.csv", "image,split,effusion,source\na.png,TRAIN,1,hospital A\nb.png,VALIDATION,0,"
    )
    b = _write(tmp_path / "site2", "train.csv", "image,split,effusion\nc.png,TRAIN,0")
    m = read_manifests([a, b], ("effusion",))
    assert m.frame["source"].tolist() == ["hospital A", "site1/train", "site2/train"]


def test_a_label_in_none_of_the_sets_and_an_image_in_two_are_errors(tmp_path: Path) -> None:
    a = _write(tmp_path, "a.csv", "image,split,effusion\nx.png,TRAIN,1\ny.png,VALIDATION,0")
    b = _write(tmp_path, "b.csv", "image,split,effusion\nx.png,TEST,1")
    with pytest.raises(ManifestError) as error:
        read_manifests([a, b], ("effusion", "mass"))
    text = str(error.value)
    assert "label column 'mass' is in none of the manifests" in text
    assert f"{b} row 2: image {tmp_path / 'x.png'} is also in {a} (row 2)" in text


def test_required_splits_may_come_from_different_sets(tmp_path: Path) -> None:
    a = _write(tmp_path, "a.csv", "image,split,effusion\nx.png,TRAIN,1")
    b = _write(tmp_path, "b.csv", "image,split,effusion\ny.png,VALIDATION,0")
    assert len(read_manifests([a, b], ("effusion",)).frame) == 2
    c = _write(tmp_path, "c.csv", "image,split,effusion\nz.png,TEST,1")
    with pytest.raises(ManifestError, match="split VALIDATION has no rows in any of the manifests"):
        read_manifests([a, c], ("effusion",))


def test_csv_flag_repeats_or_takes_several_paths_and_config_files_may_list_them(tmp_path: Path) -> None:
    parser = build_parser(TrainConfig, "medclf.train", "")
    assert parser.parse_args(["--csv", "a.csv", "--csv", "b.csv"]).csv == ["a.csv", "b.csv"]
    assert parser.parse_args(["--csv", "a.csv", "b,c.csv"]).csv == ["a.csv", "b,c.csv"]  # no comma split
    assert TrainConfig(csv="one.csv").csv == ["one.csv"]  # a plain string still works (0.1.0 scripts)
    assert ValidateConfig(checkpoint="c.pt", csv="x.csv").csv == ["x.csv"]
    (tmp_path / "c.json").write_text(json.dumps({"csv": ["a.csv", "b.csv"]}))
    (tmp_path / "old.json").write_text(json.dumps({"csv": "a.csv"}))  # config.json of a 0.1.0 run
    assert load_settings(TrainConfig, tmp_path / "c.json").csv == ["a.csv", "b.csv"]
    assert load_settings(TrainConfig, tmp_path / "old.json").csv == ["a.csv"]


def test_training_on_two_real_sets_masks_the_labels_one_lacks(tmp_path: Path, caplog) -> None:
    """The NIH starter set cut in two; the second half loses three findings, as another hospital's would."""
    from medclf import train

    source = pd.read_csv(shared_path("nih", "starter256", "dataset.csv"), dtype=str, keep_default_na=False)
    source["image"] = [str((STARTER / p).resolve()) for p in source["image"]]
    half = len(source) // 2
    a, b = tmp_path / "site_a.csv", tmp_path / "site_b.csv"
    source.iloc[:half].to_csv(a, index=False)
    source.iloc[half:].drop(columns=["hernia", "edema", "fibrosis"]).to_csv(b, index=False)
    caplog.set_level(logging.INFO, logger="medclf")
    result = train(
        csv=[str(a), str(b)], out=str(tmp_path / "run"), image_size=32, epochs=1, batch_size=32,
        model="densenet_tiny", progress=False, figure_every=0, cache_workers=1, num_workers=0,
    )  # fmt: skip
    log_text = caplog.text
    assert np.isfinite(result.history[-1]["train_loss"])
    counts = pd.read_csv(tmp_path / "run" / "label_counts.csv")
    frame = read_manifests([a, b]).frame
    for split in ("TRAIN", "VALIDATION"):
        row = counts[(counts["split"] == split) & (counts["label"] == "hernia")].iloc[0]
        b_rows = int(((frame["source"] == "site_b") & (frame["split"] == split)).sum())
        assert row["missing"] == b_rows > 0
    assert "data sets: site_a: 135 TRAIN, 47 VALIDATION, 51 TEST; site_b: 145 TRAIN" in log_text
    assert "has no column(s) edema, fibrosis, hernia: unknown (masked) for its 233 images" in log_text
    saved = json.loads((tmp_path / "run" / "config.json").read_text())
    assert saved["csv"] == [str(a), str(b)]


def test_a_manifest_given_twice_however_spelled_is_refused(tmp_path: Path, monkeypatch, capsys) -> None:
    a = _write(tmp_path, "a.csv", "image,split,effusion\nx.png,TRAIN,1\ny.png,VALIDATION,0\nz.png,TEST,1")
    (tmp_path / "link.csv").symlink_to(a)
    monkeypatch.chdir(tmp_path)
    for twice in ([a, a], [a, "a.csv"], ["a.csv", "./a.csv"], [a, tmp_path / "link.csv"]):
        with pytest.raises(ConfigError, match=r"--csv gives the manifest .*a\.csv twice.*would count twice"):
            read_manifests(twice, ("effusion",))
    assert len(read_manifests([a], ("effusion",)).frame) == 3  # once is fine
    from medclf.train import main

    assert main(["--csv", "a.csv", "--csv", "a.csv", "--labels", "effusion", "--out", "run", "--no-progress"]) == 2
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("error:")]
    assert lines == [f"error: --csv gives the manifest {a} twice: its images would count twice"]
    assert not (tmp_path / "run").exists()


def test_a_source_cell_equal_to_another_files_name_is_refused(tmp_path: Path) -> None:
    a = _write(tmp_path, "a.csv", "image,split,effusion,source\nx.png,TRAIN,1,b\ny.png,VALIDATION,0,b")
    b = _write(tmp_path, "b.csv", "image,split,effusion\nz.png,TRAIN,1")
    with pytest.raises(ManifestError) as error:
        read_manifests([a, b], ("effusion",))
    assert error.value.path == str(a)
    assert error.value.problems == [
        f"column 'source': 'b' is also the name of the data set {b} (its file name); rename one, e.g. give that "
        "CSV a source column"
    ]
    c = _write(tmp_path, "c.csv", "image,split,effusion,source\nw.png,TRAIN,1,b")  # both say so: one data set
    assert read_manifests([a, c], ("effusion",)).frame["source"].tolist() == ["b", "b", "b"]


def test_patient_ids_are_compared_within_each_source_unless_shared(tmp_path: Path, capsys) -> None:
    from medclf.data.checks import check_patient_overlap
    from medclf.train import main

    header = "image,split,effusion,patient_id\n"
    a = _write(tmp_path / "a", "a.csv", header + "x.png,TRAIN,1,1001\ny.png,VALIDATION,0,1002")
    b = _write(tmp_path / "b", "b.csv", header + "x.png,TEST,1,1001\ny.png,TRAIN,0,7")
    manifest = read_manifests([a, b], ("effusion",))
    check_patient_overlap(manifest)  # hospital A's 1001 is not hospital B's
    with pytest.raises(ManifestError, match=r"1001 in TEST, TRAIN \(rows a row 2, b row 2\)"):
        check_patient_overlap(manifest, shared_ids=True)
    leak = _write(tmp_path / "c", "c.csv", header + "x.png,TRAIN,1,7\ny.png,VALIDATION,0,7")
    with pytest.raises(ManifestError, match=r"7 in TRAIN, VALIDATION \(rows c row 2, c row 3\)"):
        check_patient_overlap(read_manifests([a, leak], ("effusion",)))  # still found within a source
    args = ["--csv", str(a), "--csv", str(b), "--labels", "effusion", "--out", str(tmp_path / "run"), "--no-progress"]
    assert main([*args, "--shared-patient-ids"]) == 2
    assert "1 patient(s) of column 'patient_id' have images in more than one split" in capsys.readouterr().out
    assert TrainConfig().shared_patient_ids is False
