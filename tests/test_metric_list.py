"""The one metric list (medclf.metrics.metric_list) and the one evaluation AUROC (label_aurocs).

Every output of an evaluation (metrics.json rows, metrics.csv columns, the console table, report.html's
per-label table) is built from ``METRICS``, so a new metric is one entry; the evaluation's rank AUROC
gives exactly the floats of the per-epoch MONAI AUROC, so ``validate`` reproduces ``val_auroc``.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from medclf.metrics import metric_list
from medclf.metrics.auroc import classification_metrics, roc_auc
from medclf.metrics.bootstrap import label_aurocs
from medclf.metrics.metric_list import METRICS, Metric
from medclf.metrics.summary import evaluation_report
from medclf.reporting.evaluation_page import evaluation_page
from medclf.reporting.tables import evaluation_table, metrics_table
from tests.test_report_sorting import metrics as report_metrics


def _example(seed: int, n: int = 400, labels: int = 6, unknown: float = 0.0) -> tuple[torch.Tensor, torch.Tensor]:
    rng = np.random.default_rng(seed)
    targets = (rng.random((n, labels)) < 0.2).astype(np.float32)
    probs = np.round(rng.random((n, labels)) * 0.7 + targets * 0.2, 3).astype(np.float32)  # ties
    targets[rng.random((n, labels)) < unknown] = np.nan
    if unknown:
        targets[:, 1] = np.nan  # a label with no labelled image at all
    targets[:, -1] = 0  # a label without positives
    return torch.from_numpy(probs), torch.from_numpy(targets)


@pytest.mark.parametrize("unknown", [0.0, 0.3])
def test_evaluation_auroc_is_the_per_epoch_monai_auroc_to_the_bit(unknown: float) -> None:
    for seed in range(5):
        probs, targets = _example(seed, unknown=unknown)
        assert label_aurocs(probs, targets) == roc_auc(probs, targets)  # ==, not approx: val_auroc is reproduced
        report = evaluation_report(probs, targets, list("abcdef"), [0.5] * 6, n_bootstrap=0)
        assert report["macro_auroc"] == classification_metrics(probs, targets, list("abcdef"))["macro_auroc"]


def test_every_output_follows_the_metric_list() -> None:
    data = report_metrics()
    keys = [m.key for m in METRICS]
    row = data["per_label"][0]
    assert [k for k in row if k != "label" and "_ci_" not in k] == keys
    assert list(evaluation_table(data)[0]) == list(row)
    page = evaluation_page(data, [])
    for metric in METRICS:
        assert (f">{metric.page}" in page) == (metric.page is not None), metric.key
    header = metrics_table(data).splitlines()[0].split()
    assert [h for h in header if h not in ("label", "95%", "CI")] == [m.console[0] for m in METRICS if m.console]


def test_a_new_metric_is_one_entry(monkeypatch: pytest.MonkeyPatch) -> None:
    def youden(f: metric_list.Facts) -> float | None:
        sensitivity, specificity = f.ratio(f.tp, f.tp + f.fn), f.ratio(f.tn, f.tn + f.fp)
        return None if sensitivity is None or specificity is None else sensitivity + specificity - 1

    j = Metric("youden_j", youden, averaged=True, page="Youden J", console=("J", 7))
    monkeypatch.setattr(metric_list, "METRICS", (*METRICS, j))
    data = report_metrics()
    first = data["per_label"][0]
    assert first["youden_j"] == pytest.approx(first["sensitivity"] + first["specificity"] - 1)
    assert data["per_label"][2]["youden_j"] is None  # hernia: no positives
    assert "youden_j" in data["macro"] and "youden_j" in data["micro"]
    assert list(evaluation_table(data)[0])[-1] == "youden_j"  # a metrics.csv column
    page = evaluation_page(data, [])
    assert ">Youden J</th>" in page and f'<td class="num">{first["youden_j"]:.3f}</td>' in page
    table = metrics_table(data).splitlines()
    assert table[0].endswith("      J") and table[1].endswith(f"{first['youden_j']:.4f}")
