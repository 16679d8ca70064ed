"""torchrun with 2 CPU processes (gloo): the reported AUROC equals a single-process evaluation, and resume works."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

import pytest

from medclf import ValidateConfig, evaluate

ROOT = Path(__file__).resolve().parents[1]


def torchrun(csv_path: Path, out: Path, port: int, *extra: str) -> str:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--master-port", str(port),
               "-m", "medclf.train", "--csv", str(csv_path), "--out", str(out), "--image-size", "32",
               "--model", "densenet_tiny", "--batch-size", "8", "--device", "cpu", "--no-progress",
               "--num-workers", "0", "--figure-every", "0", "--seed", "3", *extra]  # fmt: skip
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout + done.stderr


def rows(path: Path) -> list[dict]:
    with open(path) as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def ddp_run(synthetic_csv: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("ddp") / "straight"
    output = torchrun(synthetic_csv, out, 29511, "--epochs", "2")
    assert "x 2 processes" in output
    assert output.count("epoch 2/2 train_loss") == 1  # only rank 0 reports
    return out


def test_reported_auroc_equals_single_process_evaluation(ddp_run: Path, synthetic_csv: Path, tmp_path: Path) -> None:
    history = rows(ddp_run / "metrics.csv")
    assert [int(r["epoch"]) for r in history] == [1, 2]
    common = dict(csv=str(synthetic_csv), split="VALIDATION", bootstrap=0, figures=False, progress=False,
                  num_workers=0, device="cpu")  # fmt: skip
    last = evaluate(ValidateConfig(checkpoint=str(ddp_run / "last.pt"), out=str(tmp_path / "last"), **common))
    assert repr(last.metrics["macro_auroc"]) == history[-1]["val_auroc"]  # exact, as written in metrics.csv
    best_epoch = int(history[-1]["best_epoch"])
    best = evaluate(ValidateConfig(checkpoint=str(ddp_run / "best.pt"), out=str(tmp_path / "best"), **common))
    assert repr(best.metrics["macro_auroc"]) == history[best_epoch - 1]["val_auroc"]


def test_resume_under_torchrun(ddp_run: Path, synthetic_csv: Path, tmp_path: Path) -> None:
    out = tmp_path / "resumed"
    torchrun(synthetic_csv, out, 29512, "--epochs", "1")
    output = torchrun(synthetic_csv, out, 29513, "--resume", str(out), "--epochs", "2")
    assert "resuming epoch 2" in output
    assert (out / "metrics.csv").read_bytes() == (ddp_run / "metrics.csv").read_bytes()


def test_crossval_under_torchrun(synthetic_csv: Path, tmp_path: Path) -> None:
    """Every rank trains every fold in one process group; rank 0 alone writes the study's files."""
    out = tmp_path / "cv"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--master-port", "29514",
               "-m", "medclf.crossval", "--csv", str(synthetic_csv), "--out", str(out), "--folds", "2",
               "--image-size", "32", "--model", "densenet_tiny", "--batch-size", "8", "--device", "cpu",
               "--no-progress", "--num-workers", "0", "--figure-every", "0", "--epochs", "1"]  # fmt: skip
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    output = done.stdout + done.stderr
    assert done.returncode == 0, output
    assert output.count("x 2 processes") == 2 and output.count("done: out-of-fold macro AUROC") == 1
    assert len(rows(out / "oof_predictions.csv")) == len(rows(out / "folds.csv"))
    assert all((out / f"fold_{k}" / "best.pt").is_file() for k in (1, 2))
