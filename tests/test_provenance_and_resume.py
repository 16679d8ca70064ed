"""Provenance in every output, saved paths that work from any folder, and a finished run left alone."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from medclf.model.checkpoint import load_checkpoint

from .conftest import STARTER, shared_path


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 2-epoch run started from the manifest's own folder with relative paths."""
    import os

    from medclf.train import main

    shared_path("nih", "starter256", "dataset.csv")
    out = tmp_path_factory.mktemp("prov") / "run"
    cwd = os.getcwd()
    os.chdir(STARTER)
    try:
        args = ["--csv", "dataset.csv", "--out", str(out), "--image-size", "32", "--epochs", "2"]
        args += ["--batch-size", "32", "--model", "densenet_tiny", "--no-progress", "--figure-every", "0"]
        assert main(args) == 0
    finally:
        os.chdir(cwd)
    return out


def test_config_and_checkpoint_hold_absolute_paths_and_provenance(run: Path) -> None:
    config = json.loads((run / "config.json").read_text())
    # resolve(): in CI ../shared is a symbolic link, and the working folder is reported resolved
    assert [Path(p).resolve() for p in config["csv"]] == [(STARTER / "dataset.csv").resolve()]
    assert Path(config["csv"][0]).is_absolute() and Path(config["out"]).is_absolute()
    prov = config["provenance"]
    assert {"medclf", "torch", "monai", "python", "date", "command", "git_commit", "device", "host"} <= set(prov)
    assert len(prov["manifests_sha256"][str((STARTER / "dataset.csv").resolve())]) == 64 and prov["command"]
    checkpoint = load_checkpoint(run / "best.pt")  # weights_only: provenance is plain values only
    assert checkpoint.provenance["manifests_sha256"] == prov["manifests_sha256"]


def test_best_pt_holds_what_inference_needs_and_last_pt_what_resume_needs(run: Path) -> None:
    best, last = load_checkpoint(run / "best.pt"), load_checkpoint(run / "last.pt")
    assert best.optimizer is None and best.scheduler is None and best.scaler is None and best.rng == {}
    assert last.optimizer and last.rng and last.optimizer["state"]
    assert best.provenance and best.thresholds and best.config["image_size"] == 32
    assert (run / "best.pt").stat().st_size < (run / "last.pt").stat().st_size


def test_resume_of_a_finished_run_says_so_and_trains_nothing(run: Path, tmp_path: Path, monkeypatch, capsys) -> None:
    from medclf.train import main

    monkeypatch.chdir(tmp_path)  # another folder: the saved relative manifest path must not matter
    before = (run / "last.pt").stat().st_mtime_ns
    assert main(["--resume", str(run), "--no-progress"]) == 0
    printed = capsys.readouterr().out
    assert "is finished: all 2 of 2 epochs are done (resume with a larger --epochs to go on)" in printed
    assert "resuming" not in printed and (run / "last.pt").stat().st_mtime_ns == before
    assert len(pd.read_csv(run / "metrics.csv")) == 2


def config_csv(run: Path) -> str:
    return json.loads((run / "config.json").read_text())["csv"][0]


def test_validate_records_provenance_and_warns_when_the_manifest_changed(run: Path, tmp_path: Path, capsys) -> None:
    from medclf.validate import main

    copy = tmp_path / "dataset.csv"
    frame = pd.read_csv(STARTER / "dataset.csv", dtype=str, keep_default_na=False)
    frame["image"] = [str(STARTER / p) for p in frame["image"]]
    frame.to_csv(copy, index=False)
    args = ["--checkpoint", str(run / "best.pt"), "--bootstrap", "0", "--no-progress", "--no-figures"]
    assert main([*args, "--csv", config_csv(run), "--out", str(tmp_path / "a")]) == 0
    metrics = json.loads((tmp_path / "a" / "metrics.json").read_text())
    assert str((run / "best.pt").resolve()) in metrics["provenance"]["checkpoint_sha256"]
    assert "changed since this checkpoint was trained" not in capsys.readouterr().out
    checkpoint = load_checkpoint(run / "best.pt")
    checkpoint.provenance["manifests_sha256"] = {str(copy.resolve()): "0" * 64}  # trained on another version
    from medclf.model.checkpoint import save_checkpoint

    save_checkpoint(tmp_path / "edited.pt", checkpoint)
    args[1] = str(tmp_path / "edited.pt")
    assert main([*args, "--csv", str(copy), "--out", str(tmp_path / "b")]) == 0
    assert f"{copy.resolve()} changed since this checkpoint was trained on it" in capsys.readouterr().out
