"""One number, one computation: every count in metrics.csv equals what predictions.csv's columns give.

The calls (``pred_`` columns) are made once; the per-label TP/FP/TN/FN, the micro averages, the confusion
figure and the console all come from them. Recomputed here from the written files, on real radiographs,
for VALIDATION (where a Youden threshold sits exactly on an image's score) and TEST, with and without
temperature scaling.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from medclf import TrainConfig, ValidateConfig, evaluate, train
from medclf.config import ExplainConfig, PredictConfig
from medclf.workflows.explain import explain_image
from medclf.workflows.predict import predict_images

from .conftest import STARTER, shared_path


@pytest.fixture(scope="module")
def real_run(tmp_path_factory: pytest.TempPathFactory) -> str:
    csv_path = shared_path("nih", "starter256", "dataset.csv")
    config = TrainConfig(
        csv=str(csv_path), out=str(tmp_path_factory.mktemp("agree") / "run"), image_size=32,
        model="densenet_tiny", epochs=2, batch_size=16, device="cpu", progress=False, num_workers=0,
        figure_every=0, cache_workers=1,
    )  # fmt: skip
    return train(config).best_checkpoint


def _rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def _counts_from_predictions(rows: list[dict[str, str]], label: str) -> dict[str, int]:
    truth = np.array([np.nan if r[f"true_{label}"] == "" else float(r[f"true_{label}"]) for r in rows])
    called = np.array([r[f"pred_{label}"] == "1" for r in rows])
    known = ~np.isnan(truth)
    positive = known & (truth == 1)
    negative = known & (truth == 0)
    return {"tp": int((positive & called).sum()), "fn": int((positive & ~called).sum()),
            "fp": int((negative & called).sum()), "tn": int((negative & ~called).sum())}  # fmt: skip


@pytest.mark.parametrize("split", ["VALIDATION", "TEST"])
@pytest.mark.parametrize("calibration", [True, False])
def test_metrics_counts_equal_those_recomputed_from_predictions(
    real_run: str, split: str, calibration: bool, tmp_path: Path
) -> None:
    result = evaluate(ValidateConfig(
        checkpoint=real_run, csv=[str(STARTER / "dataset.csv")], split=split, out=str(tmp_path / "out"),
        calibration=calibration, bootstrap=50, figures=False, progress=False, num_workers=0,
    ))  # fmt: skip
    table = {r["label"]: r for r in _rows(tmp_path / "out" / "metrics.csv")}
    predictions = _rows(tmp_path / "out" / "predictions.csv")
    metrics = json.loads((tmp_path / "out" / "metrics.json").read_text())
    pooled = dict.fromkeys(("tp", "fn", "fp", "tn"), 0)
    for row in metrics["per_label"]:
        label = row["label"]
        recomputed = _counts_from_predictions(predictions, label)
        written = {k: int(table[label][k]) for k in recomputed}
        assert written == recomputed, label
        assert {k: row[k] for k in recomputed} == recomputed, label
        pooled = {k: pooled[k] + v for k, v in recomputed.items()}
        if not calibration:  # the written probability against the written threshold makes the same call
            probs = np.array([float(r[f"prob_{label}"]) for r in predictions])
            calls = np.array([r[f"pred_{label}"] == "1" for r in predictions])
            assert np.array_equal(probs >= float(table[label]["threshold"]), calls), label
    micro = metrics["micro"]
    assert micro["sensitivity"] == pytest.approx(pooled["tp"] / (pooled["tp"] + pooled["fn"]), abs=1e-12)
    assert micro["specificity"] == pytest.approx(pooled["tn"] / (pooled["tn"] + pooled["fp"]), abs=1e-12)
    assert float(table["micro average"]["sensitivity"]) == pytest.approx(micro["sensitivity"], abs=1e-12)
    assert result.metrics["micro"]["sensitivity"] == micro["sensitivity"]


def test_a_youden_threshold_on_an_image_score_calls_that_image_positive(real_run: str, tmp_path: Path) -> None:
    """On VALIDATION, each checkpoint threshold is the score of an image: that image is called positive."""
    evaluate(ValidateConfig(
        checkpoint=real_run, csv=[str(STARTER / "dataset.csv")], split="VALIDATION", out=str(tmp_path / "v"),
        calibration=False, bootstrap=0, figures=False, progress=False, num_workers=0,
    ))  # fmt: skip
    table = {r["label"]: r for r in _rows(tmp_path / "v" / "metrics.csv")}
    predictions = _rows(tmp_path / "v" / "predictions.csv")
    on_threshold = 0
    for label, row in table.items():
        if label in ("macro average", "micro average") or row["auroc"] == "":
            continue
        for r in predictions:
            if float(r[f"prob_{label}"]) == float(row["threshold"]):
                on_threshold += 1
                assert r[f"pred_{label}"] == "1", label
    assert on_threshold > 0  # the case that used to flip is really exercised


def test_explain_and_predict_show_the_same_calibrated_probability(real_run: str, tmp_path: Path) -> None:
    image = str(STARTER / _rows(STARTER / "dataset.csv")[0]["image"])
    listing = tmp_path / "one.csv"
    listing.write_text(f"image\n{image}\n", encoding="utf-8")
    predicted = predict_images(PredictConfig(
        checkpoint=real_run, csv=str(listing), out=str(tmp_path / "p"), progress=False, num_workers=0
    ))  # fmt: skip
    row = _rows(Path(predicted.predictions_csv))[0]
    explained = explain_image(ExplainConfig(checkpoint=real_run, image=image, out=str(tmp_path / "e")))
    assert explained["calibrated"] is True
    for label, p in explained["probabilities"].items():
        assert p == pytest.approx(float(row[f"prob_{label}"]), abs=1e-6), label
    raw = explain_image(ExplainConfig(checkpoint=real_run, image=image, out=str(tmp_path / "r"), calibration=False))
    assert raw["calibrated"] is False and raw["probabilities"] != explained["probabilities"]
