"""What a reader needs from the evaluation figures: calibration bins and ECE checked against scikit-learn,
rows of the normalised confusion matrices, operating points on the ROC/PR curves, false positives and
false negatives picked apart, and every new figure rendering with 14 labels."""

from __future__ import annotations

import numpy as np
import pytest
from matplotlib.figure import Figure
from sklearn.calibration import calibration_curve
from sklearn.metrics import roc_curve

from medclf.metrics.curves import (
    calibration_bins,
    confident_errors_by_kind,
    confusion_counts,
    decisions,
    expected_calibration_error,
    normalised_confusion,
    operating_point_xy,
    roc_curve_points,
)
from medclf.metrics.metric_list import Facts, label_row, ratio
from medclf.reporting.figures import confusion_figure, figure_png, pr_figure, roc_figure
from medclf.reporting.figures_calibration import calibration_figure
from medclf.reporting.figures_errors import errors_figure
from medclf.reporting.html import PNG_SIGNATURE

LABELS = [
    "Atelectasis", "Cardiomegaly", "Effusion", "Infiltration", "Mass", "Nodule", "Pneumonia",
    "Pneumothorax", "Consolidation", "Edema", "Emphysema", "Fibrosis", "Pleural_Thickening", "Hernia",
]  # fmt: skip


def _data(n: int = 400, n_labels: int = 14, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Continuous probabilities (never on a bin edge) tied to the targets; 5% unknown (NaN) targets."""
    rng = np.random.default_rng(seed)
    targets = (rng.random((n, n_labels)) < rng.uniform(0.05, 0.4, n_labels)).astype(np.float64)
    logits = rng.normal(-1.5, 1.0, (n, n_labels)) + 2.0 * targets
    probs = 1.0 / (1.0 + np.exp(-logits))
    targets[rng.random((n, n_labels)) < 0.05] = np.nan
    return probs, targets


# ---------------------------------------------------------------------------------------------------------
# Calibration against scikit-learn


@pytest.mark.parametrize("n_bins", [5, 10, 15])
def test_calibration_bins_and_ece_match_sklearn(n_bins: int) -> None:
    probs, targets = _data(seed=n_bins)
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    assert np.min(np.abs(probs[..., None] - edges)) > 1e-9  # off the edges, where both bin alike
    for j in range(probs.shape[1]):
        known = ~np.isnan(targets[:, j])
        p, y = probs[known, j], targets[known, j]
        mean_pred, frac_pos, counts = calibration_bins(probs[:, j], targets[:, j], n_bins)
        assert counts.sum() == known.sum()  # unknown truth takes no part
        used = counts > 0
        ref_true, ref_pred = calibration_curve(y, p, n_bins=n_bins, strategy="uniform")  # drops empty bins
        np.testing.assert_allclose(frac_pos[used], ref_true, atol=1e-12)
        np.testing.assert_allclose(mean_pred[used], ref_pred, atol=1e-12)
        np.testing.assert_array_equal(counts, np.histogram(p, bins=edges)[0])
        ref_ece = np.sum(counts[used] * np.abs(ref_true - ref_pred)) / counts.sum()
        assert expected_calibration_error(probs[:, j], targets[:, j], n_bins) == pytest.approx(ref_ece, abs=1e-12)


def test_calibration_with_empty_bins_by_hand_and_like_sklearn() -> None:
    p = np.array([0.05, 0.12, 0.18, 0.71, 0.93, 0.97])
    y = np.array([0, 0, 1, 1, 1, 0])
    mean_pred, frac_pos, counts = calibration_bins(p, y, n_bins=5)  # bins [0, .2), [.2, .4), ... [.8, 1]
    assert counts.tolist() == [3, 0, 0, 1, 2]
    assert np.isnan(mean_pred[1:3]).all() and np.isnan(frac_pos[1:3]).all()
    ref_true, ref_pred = calibration_curve(y, p, n_bins=5)  # sklearn leaves the empty bins out
    np.testing.assert_allclose(frac_pos[counts > 0], ref_true)
    np.testing.assert_allclose(mean_pred[counts > 0], ref_pred)
    expected = (3 * abs(1 / 3 - 0.35 / 3) + 1 * abs(1 - 0.71) + 2 * abs(0.5 - 0.95)) / 6
    assert expected_calibration_error(p, y, 5) == pytest.approx(expected, abs=1e-12)


# ---------------------------------------------------------------------------------------------------------
# Normalised confusion, operating points, errors by kind


def test_normalised_confusion_rows_sum_to_one() -> None:
    probs, targets = _data(seed=3)
    counts = confusion_counts(probs, targets, np.linspace(0.2, 0.7, 14))
    shares = normalised_confusion(counts)
    assert shares.shape == (14, 2, 2)
    np.testing.assert_allclose(shares.sum(axis=-1), 1.0, atol=1e-12)
    j = 4
    tn, fp, fn, tp = counts[j].reshape(-1)
    point = label_row(Facts(tp, fp, tn, fn, ratio))
    assert shares[j, 0, 0] == pytest.approx(point["specificity"]) and shares[j, 1, 1] == pytest.approx(
        point["sensitivity"]
    )
    hand = normalised_confusion(np.array([[3, 1], [0, 0]]))  # no positives: that row is undefined
    np.testing.assert_allclose(hand[0], [0.75, 0.25])
    assert np.isnan(hand[1]).all()
    with pytest.raises(ValueError):
        normalised_confusion(np.zeros((2, 3)))


def test_operating_point_by_hand_and_on_the_curves() -> None:
    scores = np.array([0.9, 0.8, 0.6, 0.6, 0.4, 0.3, 0.2, 0.1, 0.7])
    truth = np.array([1, 0, 1, 0, 1, 0, 0, 0, np.nan])  # the unknown one (0.7) takes no part
    fpr, tpr, precision, recall = operating_point_xy(scores, truth, 0.6)
    # called positive (>= 0.6): 0.9 (pos), 0.8 (neg), 0.6 (pos), 0.6 (neg): TP 2, FP 2; 3 positives, 5 negatives
    assert (fpr, tpr, precision, recall) == pytest.approx((2 / 5, 2 / 3, 2 / 4, 2 / 3))
    known = ~np.isnan(truth)
    ref_fpr, ref_tpr, ref_thr = roc_curve(truth[known], scores[known], drop_intermediate=False)
    points = roc_curve_points(scores, truth)
    assert points is not None
    for cut in (0.9, 0.6, 0.3, 0.1):
        x, y, _, _ = operating_point_xy(scores, truth, cut)
        k = int(np.flatnonzero(ref_thr == cut)[0])
        assert (x, y) == pytest.approx((ref_fpr[k], ref_tpr[k]))
        assert (x, y) == pytest.approx((points[0][k], points[1][k]))
    assert operating_point_xy(scores, truth, 0.95)[2] is None  # no positive calls: precision undefined
    no_pos = operating_point_xy(np.array([0.2, 0.8]), np.array([0.0, 0.0]), 0.5)
    assert no_pos == (0.5, None, 0.0, None)


def test_errors_by_kind_on_a_hand_example() -> None:
    probs = np.array([0.95, 0.10, 0.70, 0.05, 0.99, 0.30, 0.70, 0.02, 0.60])
    truth = np.array([0, 1, 0, 1, np.nan, 1, 0, 0, 1])
    calls = decisions(probs[:, None], [0.5])[:, 0]
    false_pos, false_neg = confident_errors_by_kind(probs, truth, calls, count=5)
    assert false_pos == [0, 2, 6]  # negatives >= 0.5, highest first; the tie 0.70 keeps index order
    assert false_neg == [3, 1, 5]  # positives < 0.5, lowest first; 4 (unknown) and 8 (right) are not errors
    assert confident_errors_by_kind(probs, truth, calls, count=2) == ([0, 2], [3, 1])
    assert confident_errors_by_kind(probs, truth, calls, count=0) == ([], [])


# ---------------------------------------------------------------------------------------------------------
# Figures


def _titles(fig: Figure) -> list[str]:
    return [ax.get_title() for ax in fig.axes if ax.get_title()]


def test_roc_and_pr_show_interval_and_operating_point() -> None:
    probs, targets = _data(seed=5)
    thresholds = list(np.linspace(0.3, 0.6, 14))
    intervals = [(0.781, 0.840)] * 13 + [(None, None)]
    roc = roc_figure(probs, targets, LABELS, thresholds=thresholds, intervals=intervals,
                     shown_thresholds=[0.25] * 14)  # fmt: skip
    legend = [t.get_text() for t in roc.axes[0].get_legend().get_texts()]
    assert any(text.endswith(" [0.781, 0.840]") and text.startswith("AUROC ") for text in legend)
    assert not any("[" in t.get_text() for t in roc.axes[13].get_legend().get_texts())
    fpr, tpr, _, _ = operating_point_xy(probs[:, 0], targets[:, 0], thresholds[0])
    assert f"at t 0.250: TPR {tpr:.2f}, FPR {fpr:.2f}" in roc.axes[0].get_title()
    dots = [line for line in roc.axes[0].lines if line.get_marker() == "o"]
    assert len(dots) == 1 and dots[0].get_xydata()[0] == pytest.approx((fpr, tpr))
    pr = pr_figure(probs, targets, LABELS, thresholds=thresholds)
    _, _, precision, recall = operating_point_xy(probs[:, 1], targets[:, 1], thresholds[1])
    assert f"recall {recall:.2f}, precision {precision:.2f}" in pr.axes[1].get_title()
    for fig in (roc, pr):
        assert figure_png(fig, dpi=30).startswith(PNG_SIGNATURE)
    with pytest.raises(ValueError):
        roc_figure(probs, targets, LABELS, thresholds=[0.5])


def test_confusion_figure_writes_row_shares_and_counts() -> None:
    probs, targets = _data(seed=6)
    thresholds = [0.4] * 14
    counts = confusion_counts(probs, targets, thresholds)
    fig = confusion_figure(counts, LABELS, thresholds)
    shares = normalised_confusion(counts)
    texts = [t.get_text() for t in fig.axes[2].texts]
    assert f"sensitivity\n{shares[2, 1, 1]:.2f}\n({counts[2, 1, 1]})" in texts
    assert f"specificity\n{shares[2, 0, 0]:.2f}\n({counts[2, 0, 0]})" in texts
    assert counts[2].sum() == np.sum(~np.isnan(targets[:, 2]))  # unknown truth left out
    assert "threshold 0.400" in fig.axes[2].get_title()
    np.testing.assert_allclose(fig.axes[2].images[0].get_array(), shares[2])  # colour is the row share
    assert figure_png(fig, dpi=30).startswith(PNG_SIGNATURE)


def test_calibration_small_multiples_with_raw_curve() -> None:
    probs, targets = _data(seed=7)
    raw = 1.0 / (1.0 + np.exp(-2.0 * np.log(probs / (1.0 - probs))))  # sharper: overconfident
    fig = calibration_figure(probs, targets, LABELS, n_bins=10, raw_probs=raw)
    titles = _titles(fig)
    assert len(titles) == 14
    for j, title in enumerate(titles):
        before = expected_calibration_error(raw[:, j], targets[:, j], 10)
        after = expected_calibration_error(probs[:, j], targets[:, j], 10)
        assert title.startswith(LABELS[j]) and f"ECE raw {before:.3f} → calibrated {after:.3f}" in title
    assert figure_png(fig, dpi=30).startswith(PNG_SIGNATURE)
    plain = calibration_figure(probs, targets, LABELS)
    assert all("raw" not in title and "ECE " in title for title in _titles(plain))
    bars = [ax for ax in plain.axes if ax.get_yscale() == "log"]  # the twin axes: images per bin
    assert len(bars) == 14
    heights = [p.get_height() for p in bars[0].patches]
    _, _, counts = calibration_bins(probs[:, 0], targets[:, 0], 10)
    np.testing.assert_array_equal(np.nan_to_num(heights), counts)


def test_calibration_figure_for_one_label_and_an_unlabelled_one() -> None:
    probs, targets = _data(n=60, n_labels=2, seed=8)
    targets[:, 1] = np.nan
    fig = calibration_figure(probs, targets, ["Effusion", "Hernia"])
    assert "ECE n/a" in _titles(fig)[1]
    assert figure_png(fig, dpi=30).startswith(PNG_SIGNATURE)


def test_errors_figure_has_a_row_per_kind() -> None:
    rng = np.random.default_rng(9)
    fp = ([rng.random((16, 16)) for _ in range(8)], [f"fp{i}.png\np = 0.9" for i in range(8)])
    fn = ([rng.random((16, 16)) for _ in range(3)], [f"fn{i}.png\np = 0.1" for i in range(3)])
    fig = errors_figure(fp, fn, "Effusion: most confident errors at threshold 0.300", totals=(40, 3))
    headings = [sub.get_suptitle() for sub in fig.subfigs]
    assert headings[0].startswith("False positives") and "(8 of 40)" in headings[0]
    assert headings[1].startswith("False negatives") and "(3 of 3)" in headings[1]
    assert len(fig.subfigs[0].axes) == 8 and len(fig.subfigs[1].axes) == 3
    assert figure_png(fig, dpi=30).startswith(PNG_SIGNATURE)
    empty = errors_figure(([], []), fn, "Hernia")
    assert figure_png(empty, dpi=30).startswith(PNG_SIGNATURE)
    with pytest.raises(ValueError):
        errors_figure(fp, (fn[0], fn[1][:1]), "mismatch")
