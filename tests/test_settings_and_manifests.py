"""Settings and manifests that used to slip past validation: every numeric setting checked in one place,
one-image batches, spreadsheet CSV quirks, links and damaged images named in plain words."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from medclf.config import TrainConfig, ValidateConfig, load_settings
from medclf.data.checks import check_batches
from medclf.data.loaders import build_dataset, cached_errors
from medclf.data.manifest import Manifest
from medclf.data.transforms import preprocessing
from medclf.errors import ConfigError, ManifestError


@pytest.mark.parametrize(
    ("flag", "value", "expected"),
    [
        ("lr", float("nan"), "--lr (lr) must be a finite number; got nan"),
        ("lr", 0.0, "--lr (lr) must be > 0; got 0.0"),
        ("plateau_factor", 5.0, "--plateau-factor (plateau_factor) must be in (0, 1); got 5.0"),
        ("batch_size", 1, "--batch-size (batch_size) must be >= 2 (batch norm needs at least two images"),
        ("momentum", 1.0, "--momentum (momentum) must be in [0, 1); got 1.0"),
        ("weight_decay", float("inf"), "--weight-decay (weight_decay) must be a finite number; got inf"),
        ("cache_rate", 0.0, "--cache-rate (cache_rate) must be in (0, 1]; got 0.0"),
        ("image_size", 8, "--image-size (image_size) must be >= 32; got 8"),
        ("seed", -3, "--seed (seed) must be >= 0; got -3"),
    ],
)
def test_every_numeric_setting_is_checked_with_a_message_naming_it(flag: str, value: float, expected: str) -> None:
    with pytest.raises(ConfigError) as error:
        TrainConfig(csv="a.csv", **{flag: value})
    assert str(error.value).startswith(expected)


def test_settings_file_values_and_cli_flags_get_the_same_checks(tmp_path: Path, capsys) -> None:
    from medclf.train import main

    (tmp_path / "c.yaml").write_text("plateau_factor: 5\n")
    with pytest.raises(ConfigError, match=r"\(plateau_factor\) must be in \(0, 1\)"):
        load_settings(TrainConfig, tmp_path / "c.yaml")
    with pytest.raises(SystemExit) as exit_:
        main(["--csv", "x.csv", "--lr", "nan"])
    assert exit_.value.code == 2 and "--lr (lr) must be a finite number" in capsys.readouterr().err
    assert ValidateConfig(checkpoint="c.pt", csv="x.csv", batch_size=1).batch_size == 1  # eval: one image is fine
    with pytest.raises(ConfigError, match=r"--threshold \(threshold\) must be in \[0, 1\)"):
        ValidateConfig(checkpoint="c.pt", csv="x.csv", threshold=7.0)


def test_a_thresholds_file_with_text_or_out_of_range_values_is_refused(tmp_path: Path) -> None:
    from types import SimpleNamespace

    from medclf.workflows.inference import resolve_thresholds

    checkpoint = SimpleNamespace(labels=["effusion", "mass"], thresholds=[0.4, 0.6])
    for bad in ("abc", 7, None, True):
        (tmp_path / "t.json").write_text(json.dumps({"effusion": bad}))
        config = SimpleNamespace(thresholds=str(tmp_path / "t.json"), threshold=0.0)
        with pytest.raises(ConfigError, match=r"t.json: 'effusion' is .*; a threshold is a number in \[0, 1\]"):
            resolve_thresholds(config, checkpoint)
    (tmp_path / "t.json").write_text(json.dumps({"mass": 0.25}))
    raw, shown, _ = resolve_thresholds(SimpleNamespace(thresholds=str(tmp_path / "t.json"), threshold=0.0), checkpoint)
    assert raw == shown == [0.4, 0.25]


def test_one_image_batches_are_refused_or_said(caplog) -> None:
    caplog.set_level(logging.WARNING)
    with pytest.raises(ConfigError, match="TRAIN has 1 image"):
        check_batches(1, 32)
    check_batches(5, 32)
    assert "fewer than --batch-size 32: each epoch is one batch of 5" in caplog.text
    check_batches(65, 32)
    assert "merged into the batch before, which then holds 33" in caplog.text
    caplog.clear()
    check_batches(64, 32)
    assert caplog.text == ""


def _images(folder: Path, names: list[str]) -> None:
    for name in names:
        (folder / name).write_bytes(b"")


def test_a_trailing_delimiter_and_blank_lines_keep_columns_and_line_numbers(tmp_path: Path) -> None:
    _images(tmp_path, ["a.png", "b.png", "c.png"])
    text = "image,split,effusion,mass,\na.png,TRAIN,1,0,\n\nb.png,VALIDATION,0,1,\n\n\nc.png,TRAIN,yes,0,\n"
    (tmp_path / "m.csv").write_text(text)
    with pytest.raises(ManifestError) as error:
        Manifest.from_csv(tmp_path / "m.csv", ("effusion", "mass"))
    assert error.value.problems == ["row 7, column 'effusion': 'yes' is not 1, 0, -1 (uncertain) or blank (missing)"]
    (tmp_path / "m.csv").write_text(text.replace("yes", "1").replace("effusion,mass,\n", "effusion,mass\n"))
    manifest = Manifest.from_csv(tmp_path / "m.csv", ("effusion", "mass"))
    assert manifest.frame["csv_row"].tolist() == [2, 4, 7]
    assert manifest.label_matrix(None).tolist() == [[1, 0], [0, 1], [1, 0]]
    (tmp_path / "m.csv").write_text("image,split,effusion\na.png,TRAIN,1,0,1\n")
    with pytest.raises(ManifestError, match="row 2: 5 cells, but the header has 3 columns"):
        Manifest.from_csv(tmp_path / "m.csv", ("effusion",))


def test_links_and_folders_are_named_as_such(tmp_path: Path) -> None:
    os.symlink(tmp_path / "loop.png", tmp_path / "loop.png")
    os.symlink(tmp_path / "gone.png", tmp_path / "dangling.png")
    (tmp_path / "dir.png").mkdir()
    (tmp_path / "m.csv").write_text(
        "image,split,effusion\nloop.png,TRAIN,1\ndangling.png,TRAIN,0\ndir.png,VALIDATION,0\n"
    )
    with pytest.raises(ManifestError) as error:
        Manifest.from_csv(tmp_path / "m.csv", ("effusion",))
    problems = "\n".join(error.value.problems)
    assert "row 2, column 'image': symbolic link loop" in problems
    assert "row 3, column 'image': broken symbolic link (its target is missing)" in problems
    assert "row 4, column 'image': a folder, not an image file" in problems


def test_relative_manifest_paths_become_absolute(tmp_path: Path, monkeypatch) -> None:
    _images(tmp_path, ["a.png", "b.png"])
    (tmp_path / "m.csv").write_text("image,split,effusion\na.png,TRAIN,1\nb.png,VALIDATION,0\n")
    monkeypatch.chdir(tmp_path)
    manifest = Manifest.from_csv("m.csv", ("effusion",))
    assert manifest.frame["image"].tolist() == [str(tmp_path / "a.png"), str(tmp_path / "b.png")]


def test_damaged_images_are_described_in_plain_words(tmp_path: Path) -> None:
    Image.fromarray((np.random.default_rng(0).random((64, 64)) * 255).astype(np.uint8)).save(tmp_path / "ok.png")
    data = (tmp_path / "ok.png").read_bytes()
    (tmp_path / "cut.png").write_bytes(data[: len(data) // 2])
    (tmp_path / "empty.png").write_bytes(b"")
    (tmp_path / "text.png").write_text("not an image")
    records = [
        {"image": str(tmp_path / n), "row": i + 2, "index": i}
        for i, n in enumerate(["cut.png", "empty.png", "text.png"])
    ]
    errors = {
        Path(e["path"]).name: e["error"]
        for e in cached_errors(build_dataset(records, preprocessing(32), progress=False))
    }
    assert errors["cut.png"].startswith("truncated or damaged PNG file (struct.error: ")
    assert errors["empty.png"].startswith("empty file (")
    assert errors["text.png"].startswith("not a readable PNG file (unknown format or damaged header) (")
