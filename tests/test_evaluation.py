"""The full evaluation report (intervals, operating points, plots, HTML) and predict on unlabeled images."""

from __future__ import annotations

import csv
import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch
from sklearn.metrics import average_precision_score, roc_auc_score

from medclf import TrainConfig, ValidateConfig, evaluate, train
from medclf.config import PredictConfig
from medclf.metrics.bootstrap import bootstrap_auroc, rank_auroc
from medclf.metrics.calibration import scale_thresholds
from medclf.workflows.predict import predict_images

from .conftest import shared_path

FILES = ["metrics.json", "metrics.csv", "predictions.csv", "roc_curves.png", "pr_curves.png",
         "confusion_matrices.png", "calibration.png", "most_confident_errors.png", "report.html"]  # fmt: skip


@pytest.fixture(scope="module")
def checkpoint(synthetic_csv: Path, tmp_path_factory: pytest.TempPathFactory) -> str:
    config = TrainConfig(
        csv=str(synthetic_csv), out=str(tmp_path_factory.mktemp("eval") / "run"), image_size=32,
        model="densenet_tiny", epochs=2, batch_size=16, device="cpu", progress=False, num_workers=0,
        figure_every=0,
    )  # fmt: skip
    return train(config).best_checkpoint


@pytest.fixture(scope="module")
def report(checkpoint: str, synthetic_csv: Path, tmp_path_factory: pytest.TempPathFactory):
    out = tmp_path_factory.mktemp("report")
    return evaluate(ValidateConfig(checkpoint=checkpoint, csv=str(synthetic_csv), split="TEST", out=str(out),
                                   bootstrap=300, progress=False, num_workers=0))  # fmt: skip


def read_predictions(path: str) -> list[dict]:
    with open(path) as f:
        return list(csv.DictReader(f))


def test_writes_every_file(report) -> None:
    out = Path(report.out_dir)
    for name in FILES:
        assert (out / name).is_file() and (out / name).stat().st_size > 0, name
    for name in FILES[3:8]:
        assert (out / name).read_bytes().startswith(b"\x89PNG")
    html = (out / "report.html").read_text()
    assert html.count("data:image/png;base64,") == 5 and 'id="metrics"' in html and "hernia" in html
    assert "Accuracy at 0.5" in html and "sensitivity [95% CI]" in html and html.count("<script") == 1


def test_metrics_agree_with_sklearn_and_intervals_contain_estimates(report) -> None:
    metrics = json.loads(Path(report.metrics_json).read_text())
    rows = read_predictions(report.predictions_csv)
    labels = [r["label"] for r in metrics["per_label"]]
    truth = np.array([[int(r[f"true_{n}"]) for n in labels] for r in rows])
    probs = np.array([[float(r[f"prob_{n}"]) for n in labels] for r in rows])
    assert metrics["bootstrap"]["resamples"] == 300
    for j, row in enumerate(metrics["per_label"]):
        if row["auroc"] is None:
            assert row["auroc_ci_low"] is None and row["positives"] in (0, len(rows))
            continue
        assert row["auroc"] == pytest.approx(roc_auc_score(truth[:, j], probs[:, j]), abs=1e-6)
        assert row["average_precision"] == pytest.approx(average_precision_score(truth[:, j], probs[:, j]), abs=1e-6)
        assert row["auroc_ci_low"] <= row["auroc"] <= row["auroc_ci_high"]
        predicted = probs[:, j] >= row["threshold"]
        tp = int((predicted & (truth[:, j] == 1)).sum())
        assert row["tp"] == tp and row["tp"] + row["fn"] == row["positives"]
        assert row["sensitivity"] == pytest.approx(tp / row["positives"])
        assert row["tn"] + row["fp"] == row["negatives"]
        for rate in ("sensitivity", "specificity", "ppv", "npv"):
            if row[rate] is not None:  # same resamples as AUROC's; percentile intervals of a proportion
                assert row[f"{rate}_ci_low"] <= row[rate] <= row[f"{rate}_ci_high"], rate
    macro = metrics["macro"]
    assert macro["auroc_ci_low"] <= metrics["macro_auroc"] <= macro["auroc_ci_high"]
    assert macro["sensitivity_ci_low"] <= macro["sensitivity"] <= macro["sensitivity_ci_high"]
    assert metrics["accuracy_at_0.5"] == metrics["accuracy"]  # at 0.5; macro/micro accuracy: at the thresholds
    assert metrics["micro"]["auroc"] == pytest.approx(roc_auc_score(truth.ravel(), probs.ravel()), abs=1e-9)
    assert metrics["thresholds_from"].startswith("checkpoint")
    with open(Path(report.out_dir) / "metrics.csv") as f:
        table = list(csv.DictReader(f))
    assert [r["label"] for r in table] == [*labels, "macro average", "micro average"]
    assert {"sensitivity_ci_low", "sensitivity_ci_high", "npv_ci_low", "npv_ci_high"} <= set(table[0])


def test_threshold_overrides(checkpoint: str, synthetic_csv: Path, tmp_path: Path) -> None:
    common = dict(checkpoint=checkpoint, csv=str(synthetic_csv), split="TEST", bootstrap=0, figures=False,
                  progress=False, num_workers=0)  # fmt: skip
    fixed = evaluate(ValidateConfig(**common, threshold=0.5, out=str(tmp_path / "a")))
    assert {r["threshold"] for r in fixed.metrics["per_label"]} == {0.5}
    assert fixed.metrics["per_label"][0]["auroc_ci_low"] is None  # no bootstrap asked
    given = tmp_path / "t.json"
    given.write_text(json.dumps({"effusion": 0.25}))
    custom = evaluate(ValidateConfig(**common, thresholds=str(given), out=str(tmp_path / "b")))
    assert next(r for r in custom.metrics["per_label"] if r["label"] == "effusion")["threshold"] == 0.25
    given.write_text(json.dumps({"tumour": 0.25}))
    with pytest.raises(Exception, match="unknown label"):
        evaluate(ValidateConfig(**common, thresholds=str(given), out=str(tmp_path / "c")))


@pytest.mark.skipif(shutil.which("chromium") is None, reason="Debian chromium is not installed")
def test_report_renders_in_headless_chromium(report, tmp_path: Path) -> None:
    command = ["chromium", "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
               "--disable-background-networking", "--disable-component-update", "--disable-sync",
               f"--user-data-dir={tmp_path / 'profile'}", "--dump-dom",
               Path(report.out_dir, "report.html").as_uri()]  # fmt: skip
    dom = subprocess.run(command, capture_output=True, text=True, timeout=120).stdout
    assert '<table id="metrics">' in dom and "macro average" in dom and "atelectasis" in dom
    assert dom.count("<img") == 5


def test_rank_auroc_matches_monai_and_sklearn_with_ties() -> None:
    from monai.metrics import compute_roc_auc

    rng = np.random.default_rng(5)
    targets = (rng.random((2000, 6)) < 0.15).astype(np.float32)
    probs = np.round(rng.random((2000, 6)) * 0.6 + targets * 0.3, 2).astype(np.float32)  # many ties
    targets[:, 5] = 0  # undefined label
    ours = rank_auroc(torch.from_numpy(probs), torch.from_numpy(targets))
    monai = compute_roc_auc(torch.from_numpy(probs[:, :5]).double(), torch.from_numpy(targets[:, :5]).double(), "none")
    for j in range(5):
        assert float(ours[j]) == pytest.approx(roc_auc_score(targets[:, j], probs[:, j]), abs=1e-9)
        assert float(ours[j]) == pytest.approx(monai[j], abs=1e-9)
    assert torch.isnan(ours[5])


def test_bootstrap_equals_resampling_by_hand() -> None:
    rng = np.random.default_rng(2)
    targets = torch.from_numpy((rng.random((300, 3)) < 0.3).astype(np.float32))
    probs = torch.from_numpy(np.round(rng.random((300, 3)), 2).astype(np.float32))
    samples = bootstrap_auroc(probs, targets, n_resamples=5, seed=11)
    generator = torch.Generator().manual_seed(11)
    draws = torch.randint(0, 300, (5, 300), generator=generator)  # the same stream, in one chunk
    for b in range(5):
        for j in range(3):
            expected = roc_auc_score(targets[draws[b], j], probs[draws[b], j])
            assert float(samples[b, j]) == pytest.approx(expected, abs=1e-6)


def test_predict_on_a_folder_of_unlabeled_images(checkpoint: str, synthetic_csv: Path, tmp_path: Path) -> None:
    folder = tmp_path / "incoming"
    (folder / "nested").mkdir(parents=True)
    for image in sorted((synthetic_csv.parent / "images").iterdir())[:4]:
        shutil.copy(image, folder / image.name)
    shutil.copy(shared_path("nih", "sample_cxr.dcm"), folder / "nested" / "scan.dcm")
    shutil.copy(shared_path("dicom", "chest_monochrome1_8bit.dcm"), folder / "nested" / "no_suffix")
    (folder / "broken.png").write_bytes(b"not a png")
    (folder / "notes.txt").write_text("not an image")
    result = predict_images(PredictConfig(checkpoint=checkpoint, images=str(folder), out=str(tmp_path / "p"),
                                          progress=False, num_workers=0))  # fmt: skip
    rows = read_predictions(result.predictions_csv)
    assert result.n_images == 6 and len(rows) == 7
    names = [Path(r["image"]).name for r in rows]
    assert "notes.txt" not in names and {"scan.dcm", "no_suffix", "broken.png"} <= set(names)
    broken = next(r for r in rows if r["image"].endswith("broken.png"))
    assert broken["error"] and broken["prob_effusion"] == ""
    good = next(r for r in rows if r["image"].endswith("scan.dcm"))
    state = torch.load(checkpoint, weights_only=True)
    # The checkpoint's thresholds (on raw outputs) move with the calibrated probabilities.
    assert result.thresholds == pytest.approx(scale_thresholds(state["thresholds"], state["temperatures"]))
    for j, label in enumerate(state["labels"]):
        assert int(good[f"pred_{label}"]) == int(float(good[f"prob_{label}"]) >= result.thresholds[j])


def test_predict_cli_on_a_csv_without_labels(checkpoint: str, synthetic_csv: Path, tmp_path: Path) -> None:
    from medclf.predict import main

    images = sorted((synthetic_csv.parent / "images").iterdir())[:3]
    worklist = tmp_path / "worklist.csv"
    worklist.write_text("image\n" + "\n".join(str(p) for p in images) + "\n")
    assert main(["--checkpoint", checkpoint, "--csv", str(worklist), "--out", str(tmp_path / "o"),
                 "--threshold", "0.5", "--no-progress", "--num-workers", "0"]) == 0  # fmt: skip
    rows = read_predictions(str(tmp_path / "o" / "predictions.csv"))
    assert [r["image"] for r in rows] == [str(p) for p in images]
    assert all(r["pred_mass"] == str(int(float(r["prob_mass"]) >= 0.5)) for r in rows)
    assert main(["--checkpoint", checkpoint, "--csv", str(worklist), "--images", str(tmp_path)]) == 2
    with pytest.raises(SystemExit) as info:
        main(["--help"])
    assert info.value.code == 0
