"""Metrics agree with scikit-learn and never let an undefined label turn the macro AUROC into NaN."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from sklearn.metrics import roc_auc_score, roc_curve

from medclf.metrics.auroc import accuracy, classification_metrics, roc_auc, youden_thresholds


def random_predictions(n: int = 300, n_labels: int = 5, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    rng = np.random.default_rng(seed)
    targets = (rng.random((n, n_labels)) < 0.3).astype(np.float32)
    scores = np.clip(targets * 0.3 + rng.random((n, n_labels)) * 0.7, 0, 1)
    scores = np.round(scores, 2)  # ties, as real sigmoid outputs have at low precision
    return torch.from_numpy(scores.astype(np.float32)), torch.from_numpy(targets)


def test_auroc_matches_sklearn_per_label_and_macro() -> None:
    probs, targets = random_predictions()
    labels = [f"l{i}" for i in range(5)]
    metrics = classification_metrics(probs, targets, labels)
    expected = [roc_auc_score(targets[:, j], probs[:, j]) for j in range(5)]
    for name, value in zip(labels, expected, strict=True):
        assert metrics["auroc"][name] == pytest.approx(value, abs=1e-12)
    assert metrics["macro_auroc"] == pytest.approx(roc_auc_score(targets, probs, average="macro"), abs=1e-12)
    assert metrics["labels_averaged"] == 5
    assert metrics["positives"]["l0"] == int(targets[:, 0].sum())
    assert metrics["negatives"]["l0"] == 300 - int(targets[:, 0].sum())


def test_label_without_positives_or_negatives_is_left_out() -> None:
    probs, targets = random_predictions()
    targets[:, 1] = 0  # no positives in this split (like hernia in the NIH starter VALIDATION split)
    targets[:, 3] = 1  # no negatives
    labels = [f"l{i}" for i in range(5)]
    metrics = classification_metrics(probs, targets, labels)
    assert metrics["auroc"]["l1"] is None and metrics["auroc"]["l3"] is None
    assert metrics["labels_averaged"] == 3
    defined = [0, 2, 4]
    expected = np.mean([roc_auc_score(targets[:, j], probs[:, j]) for j in defined])
    assert math.isfinite(metrics["macro_auroc"])
    assert metrics["macro_auroc"] == pytest.approx(expected, abs=1e-12)


def test_single_defined_label_and_none_defined() -> None:
    probs, targets = random_predictions(n_labels=2)
    targets[:, 1] = 0
    assert roc_auc(probs, targets)[1] is None
    assert roc_auc(probs, targets)[0] == pytest.approx(roc_auc_score(targets[:, 0], probs[:, 0]))
    targets[:, 0] = 0
    metrics = classification_metrics(probs, targets, ["a", "b"])
    assert metrics["macro_auroc"] is None and metrics["labels_averaged"] == 0


def test_accuracy_is_elementwise() -> None:
    probs = torch.tensor([[0.9, 0.2], [0.4, 0.7], [0.6, 0.1]])
    targets = torch.tensor([[1.0, 0.0], [1.0, 1.0], [0.0, 0.0]])
    assert accuracy(probs, targets) == pytest.approx(4 / 6)
    assert accuracy(probs[:, :1], targets[:, :1]) == pytest.approx(1 / 3)  # one label: torchmetrics' binary task


def test_youden_threshold_maximises_j() -> None:
    probs, targets = random_predictions(n_labels=3, seed=3)
    thresholds = youden_thresholds(probs, targets)
    for j in range(3):
        fpr, tpr, _ = roc_curve(targets[:, j], probs[:, j])
        best = np.max(tpr - fpr)
        predicted = probs[:, j] >= thresholds[j]
        positives = targets[:, j] == 1
        j_ours = predicted[positives].double().mean() - predicted[~positives].double().mean()
        assert float(j_ours) == pytest.approx(best, abs=1e-9)
    targets[:, 0] = 0
    assert youden_thresholds(probs, targets)[0] == 0.5
