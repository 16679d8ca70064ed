"""Figure builders (medclf.figures) and the self-contained HTML report (medclf.html_report)."""

from __future__ import annotations

import base64
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from matplotlib.figure import Figure
from sklearn.metrics import average_precision_score, precision_recall_curve, roc_auc_score, roc_curve

from medclf.metrics.bootstrap import auroc_1d as auroc
from medclf.metrics.curves import (
    average_precision,
    calibration_bins,
    confusion_counts,
    expected_calibration_error,
    pr_curve_points,
    roc_curve_points,
)
from medclf.reporting.figures import (
    confusion_figure,
    figure_png,
    pr_figure,
    roc_figure,
)
from medclf.reporting.figures_calibration import calibration_figure
from medclf.reporting.figures_errors import errors_figure
from medclf.reporting.html import PNG_SIGNATURE, render_report

NIH_LABELS = [
    "Atelectasis",
    "Cardiomegaly",
    "Effusion",
    "Infiltration",
    "Mass",
    "Nodule",
    "Pneumonia",
    "Pneumothorax",
    "Consolidation",
    "Edema",
    "Emphysema",
    "Fibrosis",
    "Pleural_Thickening",
    "Hernia",
]


def _data(n: int, n_labels: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Probabilities rounded to 2 decimals (many ties), loosely tied to the targets; label 2 has no
    positives and label 3 no negatives when there are enough labels."""
    rng = np.random.default_rng(seed)
    targets = (rng.random((n, n_labels)) < rng.uniform(0.05, 0.5, n_labels)).astype(np.int64)
    probs = np.clip(0.35 * targets + 0.65 * rng.random((n, n_labels)), 0, 1).round(2)
    if n_labels > 3:
        targets[:, 2] = 0
        targets[:, 3] = 1
    return probs, targets


def test_roc_and_auroc_match_sklearn_with_ties() -> None:
    probs, targets = _data(300, 6, seed=1)
    for j in range(6):
        positives = targets[:, j].sum()
        points = roc_curve_points(probs[:, j], targets[:, j])
        if positives in (0, len(targets)):
            assert points is None
            assert auroc(probs[:, j], targets[:, j]) is None
            continue
        fpr, tpr, thresholds = points
        ref_fpr, ref_tpr, ref_thr = roc_curve(targets[:, j], probs[:, j], drop_intermediate=False)
        np.testing.assert_allclose(fpr, ref_fpr, atol=1e-12)
        np.testing.assert_allclose(tpr, ref_tpr, atol=1e-12)
        np.testing.assert_array_equal(thresholds, ref_thr)
        assert auroc(probs[:, j], targets[:, j]) == pytest.approx(roc_auc_score(targets[:, j], probs[:, j]), abs=1e-9)


def test_pr_and_average_precision_match_sklearn_with_ties() -> None:
    probs, targets = _data(300, 6, seed=2)
    checked = 0
    for j in range(6):
        points = pr_curve_points(probs[:, j], targets[:, j])
        if targets[:, j].sum() == 0:
            assert points is None
            assert average_precision(probs[:, j], targets[:, j]) is None
            continue
        recall, precision, thresholds = points
        ref_precision, ref_recall, ref_thr = precision_recall_curve(targets[:, j], probs[:, j])
        np.testing.assert_allclose(recall, ref_recall[::-1], atol=1e-12)
        np.testing.assert_allclose(precision, ref_precision[::-1], atol=1e-12)
        np.testing.assert_array_equal(thresholds[1:], ref_thr[::-1])
        ap = average_precision(probs[:, j], targets[:, j])
        assert ap == pytest.approx(average_precision_score(targets[:, j], probs[:, j]), abs=1e-9)
        checked += 1
    assert checked == 5  # including the label without negatives (AP = 1, as in sklearn)


def test_curves_on_small_hand_example() -> None:
    scores = np.array([0.1, 0.4, 0.4, 0.35, 0.8, 0.9])
    truth = np.array([0, 1, 1, 0, 1, 0])
    assert auroc(scores, truth) == pytest.approx(roc_auc_score(truth, scores), abs=1e-12)
    # thresholds 0.9, 0.8, 0.4, 0.35, 0.1: recall 0, 1/3, 1, 1, 1; precision 0, 1/2, 3/4, 3/5, 1/2
    assert average_precision(scores, truth) == pytest.approx(1 / 3 * 1 / 2 + 2 / 3 * 3 / 4, abs=1e-12)


def test_confusion_counts_sum_to_n_per_label() -> None:
    probs, targets = _data(200, 14, seed=3)
    thresholds = np.linspace(0.2, 0.8, 14)
    counts = confusion_counts(probs, targets, thresholds)
    assert counts.shape == (14, 2, 2)
    np.testing.assert_array_equal(counts.sum(axis=(1, 2)), np.full(14, 200))
    np.testing.assert_array_equal(counts[:, 1, :].sum(axis=1), targets.sum(axis=0))  # true positives row
    j = 5
    predicted = probs[:, j] >= thresholds[j]
    assert counts[j, 1, 1] == np.sum(predicted & (targets[:, j] == 1))
    assert counts[j, 0, 1] == np.sum(predicted & (targets[:, j] == 0))
    # prob == threshold counts as positive
    assert confusion_counts(np.array([[0.5]]), np.array([[1]]), [0.5])[0, 1, 1] == 1


def test_calibration_bins_and_ece() -> None:
    probs = np.array([0.05, 0.05, 0.95, 0.95, 1.0])
    truth = np.array([0, 0, 1, 1, 1])
    mean_pred, frac_pos, counts = calibration_bins(probs, truth, n_bins=10)
    assert counts.tolist() == [2, 0, 0, 0, 0, 0, 0, 0, 0, 3]  # 1.0 falls in the last bin
    assert np.isnan(mean_pred[1]) and frac_pos[9] == 1.0
    expected = (2 * 0.05 + 3 * (1 - (0.95 + 0.95 + 1.0) / 3)) / 5
    assert expected_calibration_error(probs, truth, 10) == pytest.approx(expected)


@pytest.mark.parametrize(("n_labels", "labels"), [(14, NIH_LABELS), (1, ["Effusion"])])
def test_every_figure_builds(n_labels: int, labels: list[str]) -> None:
    probs, targets = _data(200, n_labels, seed=4)
    thresholds = [0.5] * n_labels
    rng = np.random.default_rng(0)
    images = [rng.random((32, 32)) for _ in range(min(n_labels, 6))]
    captions = [f"{labels[i]}\np=0.97, true 0\nimage_{i}.png" for i in range(len(images))]
    figures = [
        roc_figure(probs, targets, labels),
        pr_figure(probs, targets, labels),
        confusion_figure(confusion_counts(probs, targets, thresholds), labels, thresholds),
        calibration_figure(probs, targets, labels),
        errors_figure((images, captions), ([], []), "most confidently wrong"),
    ]
    for fig in figures:
        assert isinstance(fig, Figure)
    if n_labels == 14:
        assert len(figures[0].axes) == 14  # 4x4 grid, two cells removed
        assert figures[0].get_size_inches()[0] >= 12  # ~3.2 in per panel
    png = figure_png(figures[0], dpi=40)
    assert png.startswith(PNG_SIGNATURE)


def test_undefined_labels_get_a_note() -> None:
    probs, targets = _data(50, 4, seed=5)  # label 2: no positives, label 3: no negatives
    roc = roc_figure(probs, targets, ["a", "b", "none", "all"])
    texts = [t.get_text() for t in roc.axes[2].texts] + [t.get_text() for t in roc.axes[3].texts]
    assert "undefined: no positives" in texts and "undefined: no negatives" in texts
    pr = pr_figure(probs, targets, ["a", "b", "none", "all"])
    assert "undefined: no positives" in [t.get_text() for t in pr.axes[2].texts]


def test_empty_error_grid_and_bad_shapes() -> None:
    assert isinstance(errors_figure(([], []), ([], []), "nothing"), Figure)
    with pytest.raises(ValueError):
        roc_figure(np.zeros((3, 2)), np.zeros((3, 2)), ["only one name"])
    with pytest.raises(ValueError):
        errors_figure(([np.zeros((2, 2, 3))], ["rgb"]), ([], []), "t")


def _report(n_labels: int = 14) -> str:
    probs, targets = _data(120, n_labels, seed=6)
    labels = [*NIH_LABELS[: n_labels - 1], "<script>alert(1)</script>"]
    rows = []
    for j, name in enumerate(labels):
        value = auroc(probs[:, j], targets[:, j])
        rows.append([name, "n/a" if value is None else f"{value:.4f}", str(targets[:, j].sum())])
    figures = [
        ("ROC curves per label", figure_png(roc_figure(probs, targets, labels), dpi=50)),
        ("Calibration", figure_png(calibration_figure(probs, targets, labels), dpi=50)),
    ]
    summary = [("macro AUROC (95% CI)", "0.7412 [0.7010, 0.7800]"), ("images", "120")]
    return render_report("Evaluation <test> & report", summary, ["label", "AUROC", "positives"], rows, figures)


def test_render_report_contents() -> None:
    page = _report()
    assert page.startswith("<!DOCTYPE html>")
    assert '<meta charset="utf-8">' in page
    assert '<table id="metrics">' in page and "<thead>" in page
    assert "<td>Cardiomegaly</td>" in page
    assert page.count("<tr>") == 1 + 14
    assert "<script>" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "Evaluation &lt;test&gt; &amp; report" in page
    assert "<dt>macro AUROC (95% CI)</dt><dd>0.7412 [0.7010, 0.7800]</dd>" in page
    uris = re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', page)
    assert len(uris) == 2 and all(base64.b64decode(u).startswith(PNG_SIGNATURE) for u in uris)
    assert '<figure><img alt="ROC curves per label"' in page and "<figcaption>Calibration</figcaption>" in page
    assert "http://" not in page and "https://" not in page  # no external resources


def test_render_report_rejects_bad_input() -> None:
    with pytest.raises(ValueError):
        render_report("t", [], ["a", "b"], [["only one"]], [])
    with pytest.raises(ValueError):
        render_report("t", [], ["a"], [["x"]], [("not a png", b"GIF89a")])


CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def _chromium(binary: str, profile: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [binary, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_report_renders_in_headless_chromium(tmp_path: Path) -> None:
    binary = shutil.which("chromium")
    if binary is None:
        pytest.skip("chromium not installed (Debian: apt-get install chromium); headless rendering not checked")
    page = tmp_path / "report.html"
    page.write_text(_report(), encoding="utf-8")
    url = page.resolve().as_uri()

    dom = _chromium(binary, tmp_path / "profile-dom", "--dump-dom", url)
    assert dom.returncode == 0, dom.stderr[-2000:]
    assert '<table id="metrics">' in dom.stdout
    assert "Cardiomegaly" in dom.stdout
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in dom.stdout

    shot = tmp_path / "page.png"
    result = _chromium(binary, tmp_path / "profile-shot", f"--screenshot={shot}", "--window-size=1280,2000", url)
    assert result.returncode == 0, result.stderr[-2000:]
    assert shot.exists() and shot.stat().st_size > 10_000
    assert shot.read_bytes().startswith(PNG_SIGNATURE)


def test_forest_plot_of_cjk_hangul_and_tab_group_names_draws_without_any_warning(
    recwarn: pytest.WarningsRecorder, caplog: pytest.LogCaptureFixture
) -> None:
    import logging
    import warnings

    from medclf.metrics.subgroups import subgroup_table
    from medclf.reporting.figure_text import drawable, drawable_text
    from medclf.reporting.forest import forest_figure

    names = ["女性", "남성", "a\tb", "cost $5 $6"]
    rng = np.random.default_rng(0)
    targets = (rng.random((80, 1)) < 0.4).astype(float)
    rows = subgroup_table(rng.random((80, 1)), targets, {"性别\t": np.array(names * 20)}, ["x"], [0.5], n_bootstrap=20)
    assert {row["group"] for row in rows} == set(names)  # the data keep the real names
    caplog.set_level(logging.DEBUG, logger="matplotlib")
    warnings.simplefilter("always")
    fig = forest_figure(rows, ["x"])
    assert figure_png(fig, dpi=40).startswith(b"\x89PNG")
    assert not [w for w in recwarn if "Glyph" in str(w.message) or "font" in str(w.message).lower()], [
        str(w.message) for w in recwarn
    ]
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING and r.name.startswith("matplotlib")]
    shown = [t.get_text() for t in fig.axes[0].get_yticklabels()]
    assert "  a\\tb" in shown and "  cost $5 $6" in shown  # a tab shown escaped; $ kept, not mathtext
    assert all(drawable(ch) for text in shown for ch in text)
    assert drawable_text("女") in ("女", "\\u5973")  # the glyph where a font has it, else its escape
