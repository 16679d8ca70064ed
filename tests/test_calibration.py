"""Temperature scaling: the fit, what it keeps (ranking, calls) and what it improves (ECE, Brier)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.metrics import brier_score_loss, roc_auc_score

from medclf.metrics.calibration import (
    apply_temperatures,
    brier_score,
    calibration_scores,
    fit_temperatures,
    scale_thresholds,
    small_set_warnings,
    too_few_to_fit,
)


def _miscalibrated(n: int = 4000, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Logits that are well ordered but over- (x4), under- (x0.3) and rightly (x1) scaled per label."""
    rng = np.random.default_rng(seed)
    true_logit = rng.normal(size=(n, 3)) * 2.0
    targets = (rng.random((n, 3)) < 1 / (1 + np.exp(-true_logit))).astype(np.float64)
    return true_logit * np.array([4.0, 0.3, 1.0]), targets, np.array([4.0, 0.3, 1.0])


def _torch_temperature(z: np.ndarray, y: np.ndarray) -> float:
    a = torch.tensor(1.0, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([a], max_iter=500, tolerance_grad=1e-12, tolerance_change=1e-15)
    zz, yy = torch.tensor(z), torch.tensor(y)

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = torch.nn.functional.binary_cross_entropy_with_logits(a * zz, yy)
        loss.backward()
        return loss

    opt.step(closure)
    return 1.0 / a.item()


def test_fit_recovers_the_scale_and_agrees_with_a_generic_optimiser() -> None:
    logits, targets, scale = _miscalibrated()
    temperatures = fit_temperatures(logits, targets)
    assert np.allclose(temperatures, scale, rtol=0.15)
    for j in range(3):
        assert temperatures[j] == pytest.approx(_torch_temperature(logits[:, j], targets[:, j]), rel=1e-5)


def test_unknown_truths_are_left_out_of_the_fit_and_one_class_labels_keep_one() -> None:
    logits, targets, _ = _miscalibrated()
    masked = targets.copy()
    masked[:1000, 0] = np.nan
    expected = _torch_temperature(logits[1000:, 0], targets[1000:, 0])
    assert fit_temperatures(logits, masked)[0] == pytest.approx(expected, rel=1e-5)
    masked[:, 1] = 0.0
    masked[:, 2] = np.nan
    assert fit_temperatures(logits, masked)[1:] == [1.0, 1.0]


def test_scaling_keeps_auroc_and_every_call_and_improves_ece_and_brier() -> None:
    logits, targets, _ = _miscalibrated()
    temperatures = fit_temperatures(logits, targets)
    raw = 1 / (1 + np.exp(-logits))
    calibrated = apply_temperatures(logits, temperatures)
    labels = ["over", "under", "right"]
    for j in range(3):
        assert roc_auc_score(targets[:, j], calibrated[:, j]) == pytest.approx(roc_auc_score(targets[:, j], raw[:, j]))
    thresholds = [0.2, 0.5, 0.8]
    moved = scale_thresholds(thresholds, temperatures)
    assert np.array_equal(raw >= np.array(thresholds), calibrated >= np.array(moved))
    before, after = calibration_scores(raw, targets, labels), calibration_scores(calibrated, targets, labels)
    for name in ("over", "under"):
        assert after["ece"][name] < before["ece"][name] / 2
        assert after["brier"][name] < before["brier"][name]
    assert after["ece"]["macro"] < before["ece"]["macro"]
    assert before["brier"]["over"] == pytest.approx(brier_score_loss(targets[:, 0], raw[:, 0]))


def test_brier_and_scores_skip_unknown_truths() -> None:
    probs = np.array([[0.9, 0.2], [0.1, 0.4], [0.7, 0.5]])
    targets = np.array([[1.0, np.nan], [0.0, np.nan], [np.nan, np.nan]])
    assert brier_score(probs[:, 0], targets[:, 0]) == pytest.approx((0.01 + 0.01) / 2)
    scores = calibration_scores(probs, targets, ["a", "b"])
    assert scores["brier"]["b"] is None and scores["ece"]["b"] is None
    assert scores["brier"]["macro"] == pytest.approx(scores["brier"]["a"])


def test_perfectly_separated_labels_get_a_bounded_temperature() -> None:
    logits = np.array([[-3.0], [-1.0], [2.0], [5.0]])
    targets = np.array([[0.0], [0.0], [1.0], [1.0]])
    (temperature,) = fit_temperatures(logits, targets, min_per_class=1)
    assert 0.01 <= temperature <= 0.02  # at the bound, where the loss has stopped changing
    assert np.all(np.isfinite(apply_temperatures(logits, [temperature])))


def test_labels_with_too_few_positives_or_negatives_keep_one_and_are_named() -> None:
    logits, targets, _ = _miscalibrated(n=400)
    few = targets.copy()
    few[:, 1] = 0.0
    few[:4, 1] = 1.0  # 4 positives: below MIN_PER_CLASS
    temperatures = fit_temperatures(logits, few)
    assert temperatures[1] == 1.0 and temperatures[0] != 1.0
    assert fit_temperatures(logits, few, min_per_class=1)[1] != 1.0  # it would have been fitted
    assert too_few_to_fit(few, ["a", "b", "c"]) == {"b": (4, 396)}
    (text,) = small_set_warnings(few, ["a", "b", "c"])
    assert "fewer than 5 positives or 5 negatives" in text and "b (4 pos / 396 neg)" in text
    assert small_set_warnings(targets, ["a", "b", "c"]) == []
    small = small_set_warnings(targets[:30], ["a", "b", "c"])
    assert small and "30 labelled image(s), fewer than 50" in small[0]


def test_calibrate_on_three_validation_images_warns_and_keeps_one(
    synthetic_csv: Path, tmp_path: Path, capsys: pytest.CaptureFixture, caplog: pytest.LogCaptureFixture
) -> None:
    from medclf import load_checkpoint, train, validate

    run = train(csv=str(synthetic_csv), out=str(tmp_path / "run"), image_size=32, model="densenet_tiny", epochs=1,
                batch_size=16, device="cpu", progress=False, num_workers=0, cache_workers=1)  # fmt: skip
    frame = pd.read_csv(synthetic_csv, dtype=str, keep_default_na=False)
    val = frame.index[frame["split"] == "VALIDATION"]
    small = frame.drop(val[3:])  # 3 VALIDATION images
    small["image"] = [str(synthetic_csv.parent / p) for p in small["image"]]
    small.to_csv(tmp_path / "small.csv", index=False)
    capsys.readouterr()
    # training warns too (the synthetic VALIDATION has 14 images) and keeps those labels at T = 1
    assert "VALIDATION, where temperature scaling is fitted at each best epoch: 14 labelled" in caplog.text
    assert load_checkpoint(run.best_checkpoint).temperatures[1] == 1.0  # cardiomegaly: 1 pos / 13 neg
    argv = ["--checkpoint", run.best_checkpoint, "--csv", str(tmp_path / "small.csv"), "--split", "TEST",
            "--calibrate", "--out", str(tmp_path / "val"), "--bootstrap", "0", "--no-progress",
            "--num-workers", "0", "--no-figures"]  # fmt: skip
    assert validate.main(argv) == 0
    captured = capsys.readouterr()
    warnings = [w for w in (captured.out + captured.err).splitlines() if "--calibrate on VALIDATION" in w]
    assert any("3 labelled image(s), fewer than 50" in w for w in warnings)
    assert any("their temperature is kept at 1.0" in w and "effusion (" in w for w in warnings)
    calibration = json.loads((tmp_path / "val" / "metrics.json").read_text())["calibration"]
    assert set(calibration["temperatures"].values()) == {1.0}
    assert "14 label(s) kept at T = 1" in calibration["temperatures_from"]
