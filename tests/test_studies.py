"""Studies on small data sets: patient-wise folds, cross-validation with its fold ensemble and resume,
learning curves, --train-fraction, --linear-probe, the patient bootstrap, and their bad inputs."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from medclf.crossval import main as crossval_main
from medclf.data.folds import assign_folds, train_subset
from medclf.errors import ConfigError
from medclf.explain import main as explain_main
from medclf.learning_curve import main as learning_curve_main
from medclf.metrics.bootstrap import cluster_resample_counts, resample_counts
from medclf.metrics.summary import evaluation_report
from medclf.model.checkpoint import load_checkpoint, model_from_checkpoint
from medclf.model.ensemble import FoldEnsemble
from medclf.predict import main as predict_main
from medclf.train import main as train_main
from medclf.validate import main as validate_main

FAST = ["--image-size", "32", "--model", "densenet_tiny", "--epochs", "1", "--batch-size", "16", "--device", "cpu",
        "--num-workers", "0", "--no-progress", "--figure-every", "0"]  # fmt: skip


def error_line(capsys: pytest.CaptureFixture) -> str:
    out = capsys.readouterr()
    lines = [line for line in (out.out + out.err).splitlines() if "error:" in line]
    assert len(lines) == 1, out.out + out.err
    return lines[0]


@pytest.fixture(scope="module")
def study(synthetic_csv: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("cv") / "cv"
    assert crossval_main(["--csv", str(synthetic_csv), "--folds", "2", "--out", str(out), *FAST]) == 0
    return out


# --- folds and subsets (pure) ---


def test_folds_are_patient_wise_even_per_label_and_seeded() -> None:
    rng = np.random.default_rng(0)
    patients = np.repeat(np.arange(60), 3).astype(str)  # three images per patient
    targets = np.repeat((rng.random((60, 3)) < [0.5, 0.2, 0.1]).astype(np.float32), 3, axis=0)
    folds = assign_folds(patients, targets, 4, seed=1)
    assert sorted(set(folds)) == [1, 2, 3, 4]
    assert pd.DataFrame({"p": patients, "f": folds}).groupby("p")["f"].nunique().max() == 1
    per_fold = np.array([targets[folds == k].sum(axis=0) / 3 for k in range(1, 5)])  # positive patients
    assert (per_fold.max(axis=0) - per_fold.min(axis=0) <= 1).all(), per_fold
    assert (assign_folds(patients, targets, 4, seed=1) == folds).all()
    assert not (assign_folds(patients, targets, 4, seed=2) == folds).all()
    with pytest.raises(ConfigError, match="more than the 60 patients"):
        assign_folds(patients, targets, 61, seed=1)


def test_a_label_too_rare_for_every_fold_is_named(caplog: pytest.LogCaptureFixture) -> None:
    patients = np.arange(20).astype(str)
    targets = np.zeros((20, 2), dtype=np.float32)
    targets[:10, 0], targets[:2, 1] = 1, 1  # label "rare": 2 positive patients for 4 folds
    folds = assign_folds(patients, targets, 4, seed=0, labels=["common", "rare"])
    assert len(set(folds[:2])) == 2  # its two patients in different folds
    assert "too few positive patients to reach all 4 folds: rare" in caplog.text
    assert "common" not in caplog.text


def test_train_subset_keeps_whole_patients_and_the_share() -> None:
    rng = np.random.default_rng(0)
    patients = np.repeat(np.arange(80), 2).astype(str)
    targets = np.repeat((rng.random((80, 2)) < [0.4, 0.1]).astype(np.float32), 2, axis=0)
    for fraction in (0.1, 0.25, 0.5):
        keep = train_subset(patients, targets, fraction, seed=0)
        assert keep.sum() == 2 * round(80 * fraction)
        assert pd.DataFrame({"p": patients, "k": keep}).groupby("p")["k"].nunique().max() == 1
        kept_pos = targets[keep].sum(axis=0) / 2
        assert (np.abs(kept_pos - fraction * targets.sum(axis=0) / 2) <= 1.5).all()
    assert train_subset(patients, targets, 1.0, seed=0).all()


def test_patient_bootstrap_resamples_whole_patients() -> None:
    clusters = torch.tensor([0, 0, 1, 2, 2, 2])
    counts = torch.cat(list(cluster_resample_counts(clusters, 50, seed=3, chunk=7)))
    assert counts.shape == (50, 6)
    assert (counts[:, 0] == counts[:, 1]).all() and (counts[:, 3] == counts[:, 5]).all()
    # one image per patient: the same draws as the image bootstrap
    single = torch.cat(list(cluster_resample_counts(torch.arange(6), 50, seed=3)))
    assert torch.equal(single, torch.cat(list(resample_counts(6, 50, seed=3))))
    probs, targets = torch.rand(6, 1), torch.tensor([[0.0], [1.0], [0.0], [1.0], [0.0], [1.0]])
    report = evaluation_report(probs, targets, ["a"], [0.5], n_bootstrap=20, clusters=clusters.numpy())
    assert report["bootstrap"]["unit"] == "patients" and "patients resampled" in report["bootstrap"]["method"]


# --- cross-validation ---


def test_study_folder_outputs(study: Path, synthetic_csv: Path) -> None:
    manifest = pd.read_csv(synthetic_csv)
    studied = manifest[manifest["split"].isin(["TRAIN", "VALIDATION"])]
    folds = pd.read_csv(study / "folds.csv")
    assert len(folds) == len(studied) and set(folds["fold"]) == {1, 2}
    assert folds.groupby("patient")["fold"].nunique().max() == 1
    oof = pd.read_csv(study / "oof_predictions.csv")
    assert len(oof) == len(studied)  # every TRAIN and VALIDATION image once, none of TEST
    assert not set(oof["image"]) & {
        str(synthetic_csv.parent / p) for p in manifest.loc[manifest.split == "TEST", "image"]
    }
    metrics = json.loads((study / "metrics.json").read_text())
    assert metrics["bootstrap"]["unit"] == "patients" and metrics["macro"]["auroc_ci_low"] is not None
    table = pd.read_csv(study / "folds_metrics.csv")
    assert list(table["fold"].astype(str)) == ["1", "2", "mean", "sd"]
    assert table["macro_auroc"].iloc[2] == pytest.approx(table["macro_auroc"].iloc[:2].mean())
    for name in ("report.html", "roc_curves.png", "folds_auroc.png", "fold_1/best.pt", "fold_2/metrics.csv",
                 "test_ensemble/metrics.json"):  # fmt: skip
        assert (study / name).is_file(), name
    saved = json.loads((study / "study.json").read_text())
    assert saved["complete"] and saved["format_version"] == 1 and saved["results"]["oof"]["macro_auroc"] is not None


def test_a_finished_study_says_so(study: Path, capsys: pytest.CaptureFixture) -> None:
    capsys.readouterr()
    assert crossval_main(["--resume", str(study)]) == 0
    out = capsys.readouterr().out
    assert "is finished" in out and "training densenet_tiny" not in out


def test_resume_continues_at_the_fold_where_the_study_stopped(study: Path, tmp_path: Path, capsys) -> None:
    copy = tmp_path / "cv"
    shutil.copytree(study, copy)
    shutil.rmtree(copy / "fold_2")  # stopped before fold 2's first checkpoint
    saved = json.loads((copy / "study.json").read_text())
    (copy / "study.json").write_text(json.dumps({**saved, "complete": False}))
    capsys.readouterr()
    assert crossval_main(["--resume", str(copy)]) == 0
    out = capsys.readouterr().out
    assert "fold_1 is finished" in out and out.count("training densenet_tiny") == 1 and "fold_2" in out
    assert json.loads((copy / "study.json").read_text())["complete"]
    assert len(pd.read_csv(copy / "oof_predictions.csv")) == len(pd.read_csv(study / "oof_predictions.csv"))


def test_study_folder_is_the_fold_ensemble(study: Path, synthetic_csv: Path, tmp_path: Path) -> None:
    ensemble = load_checkpoint(study)
    assert isinstance(model_from_checkpoint(ensemble), FoldEnsemble) and len(ensemble.folds) == 2
    args = ["--csv", str(synthetic_csv), "--split", "TEST", "--device", "cpu", "--num-workers", "0", "--no-progress"]
    assert predict_main(["--checkpoint", str(study), "--out", str(tmp_path / "ens"), *args]) == 0
    probs = []
    for k in (1, 2):
        assert predict_main(["--checkpoint", str(study / f"fold_{k}" / "best.pt"), "--out", str(tmp_path / f"f{k}"),
                             *args]) == 0  # fmt: skip
        probs.append(pd.read_csv(tmp_path / f"f{k}" / "predictions.csv").filter(like="prob_").to_numpy())
    together = pd.read_csv(tmp_path / "ens" / "predictions.csv").filter(like="prob_").to_numpy()
    np.testing.assert_allclose(together, np.mean(probs, axis=0), atol=2e-6)  # mean of calibrated probabilities
    out = tmp_path / "val"
    assert validate_main(["--checkpoint", str(study), "--csv", str(synthetic_csv), "--out", str(out), "--no-figures",
                          "--device", "cpu", "--num-workers", "0", "--no-progress"]) == 0  # fmt: skip
    tested = json.loads((study / "test_ensemble" / "metrics.json").read_text())
    assert json.loads((out / "metrics.json").read_text())["macro_auroc"] == tested["macro_auroc"]
    image = pd.read_csv(synthetic_csv)["image"].iloc[0]
    assert explain_main(["--checkpoint", str(study), "--image", str(synthetic_csv.parent / image), "--label",
                         "effusion", "--out", str(tmp_path / "explain"), "--device", "cpu"]) == 0  # fmt: skip


# --- bad input: one line each ---


def test_more_folds_than_patients(synthetic_csv: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert crossval_main(["--csv", str(synthetic_csv), "--folds", "500", "--out", str(tmp_path / "cv"), *FAST]) == 2
    assert "--folds 500 is more than the" in error_line(capsys)


@pytest.mark.parametrize("kind", ["patient in two folds", "image missing", "not a number"])
def test_bad_folds_file(study: Path, synthetic_csv: Path, tmp_path: Path, capsys, kind: str) -> None:
    folds = pd.read_csv(study / "folds.csv")
    if kind == "patient in two folds":
        folds = pd.concat([folds, folds.iloc[:1].assign(fold=2 if folds["fold"].iloc[0] == 1 else 1)])
        expected = "is in several folds"
    elif kind == "image missing":
        folds, expected = folds.iloc[1:], "have no fold"
    else:
        folds, expected = folds.astype({"fold": str}).assign(fold=lambda f: ["x", *f["fold"].iloc[1:]]), "not a fold"
    path = tmp_path / "folds.csv"
    folds.to_csv(path, index=False)
    args = ["--csv", str(synthetic_csv), "--folds-csv", str(path), "--out", str(tmp_path / "cv"), *FAST]
    assert crossval_main(args) == 2
    line = error_line(capsys)
    assert str(path) in line and expected in line


def test_study_from_an_older_medclf(study: Path, synthetic_csv: Path, tmp_path: Path, capsys) -> None:
    old = tmp_path / "old"
    shutil.copytree(study, old, ignore=shutil.ignore_patterns("test_ensemble", "*.png"))
    saved = json.loads((old / "study.json").read_text())
    (old / "study.json").write_text(json.dumps({**saved, "format_version": 0, "medclf_version": "0.1.0"}))
    assert validate_main(["--checkpoint", str(old), "--csv", str(synthetic_csv), "--device", "cpu"]) == 2
    assert "study from medclf 0.1.0 (study format 0)" in error_line(capsys)


@pytest.mark.parametrize(
    ("command", "args", "expected"),
    [
        (train_main, ["--train-fraction", "1.5"], "--train-fraction (train_fraction) must be in (0, 1]"),
        (train_main, ["--train-fraction", "0"], "--train-fraction (train_fraction) must be in (0, 1]"),
        (learning_curve_main, ["--fractions", "0.5,1.2"], "--fractions: 1.2 is outside (0, 1]"),
        (crossval_main, ["--fold", "2"], "--fold is train's"),
    ],
)
def test_bad_fraction_and_fold(command, args, expected: str, synthetic_csv: Path, tmp_path: Path, capsys) -> None:
    with pytest.raises(SystemExit) as stopped:  # a settings error exits as argparse does
        command(["--csv", str(synthetic_csv), "--out", str(tmp_path / "x"), *FAST, *args])
    assert stopped.value.code == 2
    assert expected in error_line(capsys)


# --- learning curve, --train-fraction, --linear-probe ---


def test_learning_curve_on_the_fixed_split(synthetic_csv: Path, tmp_path: Path) -> None:
    out = tmp_path / "lc"
    assert learning_curve_main(["--csv", str(synthetic_csv), "--fractions", "0.25,1", "--out", str(out), *FAST]) == 0
    curve = pd.read_csv(out / "learning_curve.csv")
    assert list(curve["fraction"]) == [0.25, 1.0]
    train_images = (pd.read_csv(synthetic_csv)["split"] == "TRAIN").sum()
    assert curve["train_images"].iloc[1] == train_images
    assert curve["train_images"].iloc[0] == pytest.approx(0.25 * train_images, abs=1)
    assert curve["macro_ci_low"].notna().all() and (out / "learning_curve.png").is_file()


def test_learning_curve_by_cross_validation(synthetic_csv: Path, tmp_path: Path) -> None:
    out = tmp_path / "lc"
    args = ["--csv", str(synthetic_csv), "--fractions", "0.5,1", "--folds", "2", "--out", str(out), *FAST]
    assert learning_curve_main(args) == 0
    curve = pd.read_csv(out / "learning_curve.csv")
    assert curve["train_images"].iloc[0] < curve["train_images"].iloc[1]
    assert json.loads((out / "fraction_0.5_repeat_1" / "study.json").read_text())["complete"]
    assert json.loads((out / "fraction_0.5_repeat_1" / "metrics.json").read_text())["bootstrap"]["unit"] == "patients"


def test_linear_probe_trains_only_the_classifier(synthetic_csv: Path, tmp_path: Path, capsys) -> None:
    runs = {}
    for epochs in ("1", "2"):
        runs[epochs] = tmp_path / f"probe{epochs}"
        args = ["--csv", str(synthetic_csv), "--out", str(runs[epochs]), *FAST, "--epochs", epochs, "--linear-probe"]
        assert train_main(args) == 0
    assert "linear probe: features of" in capsys.readouterr().out
    one, two = (load_checkpoint(runs[e] / "last.pt").model for e in ("1", "2"))
    changed = {name for name in one if not torch.equal(one[name], two[name])}
    assert changed == {"class_layers.out.weight", "class_layers.out.bias"}, changed
    history = pd.read_csv(runs["2"] / "metrics.csv")
    best = int(history["best_epoch"].iloc[-1])
    out = tmp_path / "val"
    assert validate_main(["--checkpoint", str(runs["2"] / "best.pt"), "--csv", str(synthetic_csv), "--split",
                          "VALIDATION", "--out", str(out), "--no-figures", "--bootstrap", "0", "--device", "cpu",
                          "--num-workers", "0"]) == 0  # fmt: skip
    macro = json.loads((out / "metrics.json").read_text())["macro_auroc"]
    assert macro == pytest.approx(history["val_auroc"].iloc[best - 1], abs=1e-6)


def test_an_unfinished_study_as_checkpoint(study: Path, synthetic_csv: Path, tmp_path: Path, capsys) -> None:
    copy = tmp_path / "cv"
    shutil.copytree(study, copy, ignore=shutil.ignore_patterns("test_ensemble", "*.png"))
    (copy / "fold_2" / "best.pt").unlink()
    assert predict_main(["--checkpoint", str(copy), "--csv", str(synthetic_csv), "--device", "cpu"]) == 2
    assert "unfinished study: fold 2 has no best.pt" in error_line(capsys)


def _rank_auroc(scores: np.ndarray, truth: np.ndarray) -> float:
    """Mann-Whitney AUROC with ties counted half, from scratch; scores compared as float32, as medclf (and
    medclf.compare) compare model outputs."""
    scores = scores.astype(np.float32)
    pos, neg = scores[truth == 1], scores[truth == 0]
    greater = (pos[:, None] > neg[None, :]).sum() + 0.5 * (pos[:, None] == neg[None, :]).sum()
    return float(greater / (len(pos) * len(neg)))


def test_pooled_auroc_is_that_of_the_written_out_of_fold_probabilities(study: Path) -> None:
    """Each fold has its own temperatures, so pooling ranks the reported probabilities; metrics.json, the
    study.json summary and medclf.compare on oof_predictions.csv give one number."""
    oof = pd.read_csv(study / "oof_predictions.csv")
    metrics = json.loads((study / "metrics.json").read_text())
    values = []
    for row in metrics["per_label"]:
        truth = oof[f"true_{row['label']}"]
        known = truth.notna()
        if row["auroc"] is None:
            continue
        recomputed = _rank_auroc(oof.loc[known, f"prob_{row['label']}"].to_numpy(), truth[known].to_numpy())
        assert row["auroc"] == pytest.approx(recomputed, abs=1e-6), row["label"]
        values.append(recomputed)
    assert metrics["macro_auroc"] == pytest.approx(np.mean(values), abs=1e-6)
    saved = json.loads((study / "study.json").read_text())
    assert saved["results"]["oof"]["macro_auroc"] == pytest.approx(metrics["macro_auroc"], abs=1e-12)
