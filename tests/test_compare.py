"""Model comparison: DeLong's test (medclf.metrics.delong), the paired comparison of two prediction tables
and the ``python -m medclf.compare`` command."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from sklearn.metrics import roc_auc_score

from medclf.compare import main, positional_to_flags
from medclf.errors import ComparisonError
from medclf.metrics.bootstrap import bootstrap_auroc
from medclf.metrics.comparison import (
    PredictionTable,
    align_predictions,
    bootstrap_p_value,
    compare_predictions,
)
from medclf.metrics.curves import decisions
from medclf.metrics.delong import delong_covariance, delong_test, midranks, structural_components
from medclf.reporting.tables import write_predictions
from tests.test_failures import FAST, error_line

COLUMNS = ["label", "n", "auroc_a", "auroc_b", "difference", "ci_low", "ci_high", "p_delong"]


def pairwise_delong(scores: np.ndarray, truth: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """DeLong et al. (1988) written out directly: O(m n) comparisons of every positive with every negative."""
    positives, negatives = scores[:, truth == 1], scores[:, truth == 0]
    m, n = positives.shape[1], negatives.shape[1]
    psi = (positives[:, :, None] > negatives[:, None, :]) + 0.5 * (positives[:, :, None] == negatives[:, None, :])
    v10, v01 = psi.mean(axis=2), psi.mean(axis=1)
    auroc = psi.mean(axis=(1, 2))
    k = scores.shape[0]
    s10 = np.array([[np.sum((v10[r] - v10[r].mean()) * (v10[s] - v10[s].mean())) for s in range(k)] for r in range(k)])
    s01 = np.array([[np.sum((v01[r] - v01[r].mean()) * (v01[s] - v01[s].mean())) for s in range(k)] for r in range(k)])
    return auroc, v10, v01, s10 / (m - 1) / m + s01 / (n - 1) / n


def correlated_scores(rng: np.random.Generator, n: int, gain_b: float = 1.0) -> tuple[np.ndarray, ...]:
    """Truth and two models' scores sharing a latent signal (so their AUROCs are correlated)."""
    truth = (rng.random(n) < 0.4).astype(float)
    latent = truth + rng.normal(0.0, 1.0, n)
    return truth, latent + rng.normal(0.0, 0.7, n), gain_b * latent + rng.normal(0.0, 0.7, n)


# ---------------------------------------------------------------------------------------------------------
# DeLong's test


def test_midranks_share_the_mean_rank_of_ties() -> None:
    np.testing.assert_allclose(midranks(np.array([3.0, 1.0, 3.0, 2.0, 3.0])), [4.0, 1.0, 4.0, 2.0, 4.0])
    np.testing.assert_allclose(midranks(np.array([[0.5, 0.5], [2.0, 1.0]])), [[1.5, 1.5], [2.0, 1.0]])


def test_worked_example_by_hand() -> None:
    # Positives 0.9, 0.6 and negatives 0.6, 0.2, 0.1 (A, a tie counted half); B: 0.8, 0.3 vs 0.5, 0.4, 0.1.
    # A: V10 = (1, 5/6), V01 = (3/4, 1, 1) -> AUROC 11/12, var = (1/72)/2 + (1/48)/3 = 1/72.
    # B: V10 = (1, 1/3), V01 = (1/2, 1/2, 1) -> AUROC 2/3, var = (2/9)/2 + (1/12)/3 = 5/36.
    # cov = (1/18)/2 + (1/48)/3 = 5/144, so var(B - A) = 1/72 + 5/36 - 10/144 = 1/12.
    truth = np.array([1, 1, 0, 0, 0])
    a = np.array([0.9, 0.6, 0.6, 0.2, 0.1])
    b = np.array([0.8, 0.3, 0.5, 0.4, 0.1])
    _, v10, v01 = structural_components(np.stack([a, b]), truth)
    np.testing.assert_allclose(v10, [[1, 5 / 6], [1, 1 / 3]])
    np.testing.assert_allclose(v01, [[3 / 4, 1, 1], [1 / 2, 1 / 2, 1]])
    result = delong_test(a, b, truth)
    assert result.auroc_a == pytest.approx(11 / 12) and result.auroc_b == pytest.approx(2 / 3)
    assert result.variance_a == pytest.approx(1 / 72) and result.variance_b == pytest.approx(5 / 36)
    assert result.covariance == pytest.approx(5 / 144)
    assert result.difference == pytest.approx(-1 / 4) and result.se == pytest.approx(math.sqrt(1 / 12))
    z = -0.25 * math.sqrt(12)
    assert result.z == pytest.approx(z)
    assert result.p_value == pytest.approx(math.erfc(abs(z) / math.sqrt(2)))
    assert result.p_value == pytest.approx(0.38648, abs=1e-5)


def test_fast_delong_matches_pairwise_definition_and_sklearn() -> None:
    rng = np.random.default_rng(7)
    for n, decimals in ((60, 1), (301, 2), (150, 8)):  # coarse rounding makes many ties
        truth, a, b = correlated_scores(rng, n)
        scores = np.round(np.stack([a, b, -a]), decimals)
        auroc, v10, v01 = structural_components(scores, truth)
        expected_auroc, expected_v10, expected_v01, expected_cov = pairwise_delong(scores, truth)
        np.testing.assert_allclose(auroc, expected_auroc, atol=1e-12)
        np.testing.assert_allclose(v10, expected_v10, atol=1e-12)
        np.testing.assert_allclose(v01, expected_v01, atol=1e-12)
        np.testing.assert_allclose(delong_covariance(scores, truth)[1], expected_cov, atol=1e-14)
        for row in range(3):
            assert auroc[row] == pytest.approx(roc_auc_score(truth, scores[row]), abs=1e-12)


def test_degenerate_inputs() -> None:
    truth = np.array([1, 0, 1, 0, 0])
    scores = np.array([0.9, 0.1, 0.7, 0.4, 0.3])
    same = delong_test(scores, scores**2, truth)  # the same ranking: no difference, p = 1
    assert same.difference == 0 and same.p_value == 1.0
    one_class = delong_test(scores, scores, np.ones(5))
    assert math.isnan(one_class.auroc_a) and math.isnan(one_class.p_value)
    single_positive = delong_test(scores, scores[::-1], np.array([1, 0, 0, 0, 0]))
    assert single_positive.auroc_a == 1.0 and math.isnan(single_positive.p_value)
    with pytest.raises(ValueError, match="0/1"):
        delong_test(scores, scores, np.array([1, 0, np.nan, 0, 1]))


def test_delong_variance_agrees_with_bootstrap_variance() -> None:
    rng = np.random.default_rng(3)
    truth, a, b = correlated_scores(rng, 4000, gain_b=1.3)
    result = delong_test(a, b, truth)
    assert result.covariance > 0.5 * math.sqrt(result.variance_a * result.variance_b)  # strongly correlated
    probs = torch.tensor(np.stack([a, b], axis=1), dtype=torch.float64)
    targets = torch.tensor(np.stack([truth, truth], axis=1), dtype=torch.float32)
    samples = bootstrap_auroc(probs, targets, n_resamples=1500, seed=1).double().numpy()
    boot = np.cov(samples, rowvar=False)
    assert boot[0, 0] == pytest.approx(result.variance_a, rel=0.15)
    assert boot[1, 1] == pytest.approx(result.variance_b, rel=0.15)
    assert boot[0, 1] == pytest.approx(result.covariance, rel=0.15)
    assert np.var(samples[:, 1] - samples[:, 0], ddof=1) == pytest.approx(result.se**2, rel=0.15)


def test_p_values_are_uniform_under_the_null() -> None:
    rng = np.random.default_rng(11)
    p = []
    for _ in range(2000):
        truth, a, b = correlated_scores(rng, 160)  # A and B equally good, correlated through the latent signal
        p.append(delong_test(a, b, truth).p_value)
    p = np.sort(np.array(p))
    assert 0.035 <= float(np.mean(p < 0.05)) <= 0.065
    assert 0.08 <= float(np.mean(p < 0.10)) <= 0.12
    ks = np.max(np.maximum(np.arange(1, p.size + 1) / p.size - p, p - np.arange(p.size) / p.size))
    assert ks < 0.04, ks  # the 1% critical value of Kolmogorov-Smirnov for 2000 draws is 0.036


def test_bootstrap_p_value_matches_percentile_interval() -> None:
    assert bootstrap_p_value(np.zeros(100)) == 1.0
    assert bootstrap_p_value(np.full(99, 0.1)) == pytest.approx(2 / 100)
    assert bootstrap_p_value(np.r_[np.full(95, 0.1), np.full(5, -0.1)]) == pytest.approx(12 / 101)
    assert bootstrap_p_value(np.array([np.nan])) is None


# ---------------------------------------------------------------------------------------------------------
# Aligning two tables


def table(images: list[str], labels: list[str], probs: np.ndarray, truth: np.ndarray, source: str) -> PredictionTable:
    return PredictionTable(source, images, labels, np.asarray(probs, float), np.asarray(truth, float))


def test_align_reorders_and_masks_unknown_truths() -> None:
    rng = np.random.default_rng(0)
    probs, truth = rng.random((6, 2)), np.array([[1, 0], [0, 1], [1, np.nan], [0, 0], [1, 1], [0, 1]], float)
    a = table([f"i{k}" for k in range(6)], ["x", "y"], probs, truth, "a.csv")
    order = [5, 3, 1, 0, 2, 4]
    truth_b = truth[order].copy()
    truth_b[0, 0] = np.nan  # i5's x unknown in B only
    b = table(
        [f"i{k}" for k in order], ["y", "x", "z"], probs[order][:, ::-1], np.c_[truth_b[:, ::-1], truth_b[:, 0]], "b"
    )
    aligned = align_predictions(a, b)
    assert aligned.labels == ["x", "y"] and aligned.labels_only_b == ["z"] and aligned.labels_only_a == []
    np.testing.assert_array_equal(aligned.probs_b, probs)
    assert np.isnan(aligned.truth[5, 0]) and np.isnan(aligned.truth[2, 1])
    assert np.array_equal(aligned.truth[:5, 0], truth[:5, 0])


def test_compare_predictions_is_paired_and_seeded() -> None:
    rng = np.random.default_rng(5)
    truth, a, b = correlated_scores(rng, 300)
    aligned = align_predictions(
        table([str(i) for i in range(300)], ["x", "one"], np.c_[a, a], np.c_[truth, np.zeros(300)], "a"),
        table([str(i) for i in range(300)], ["x", "one"], np.c_[b, b], np.c_[truth, np.zeros(300)], "b"),
    )
    first = compare_predictions(aligned, n_bootstrap=300, seed=4)
    assert first == compare_predictions(aligned, n_bootstrap=300, seed=4)
    x, one = first["per_label"]
    assert one["auroc_a"] is None and one["ci_low"] is None and first["macro"]["labels_used"] == ["x"]
    assert x["difference"] == pytest.approx(roc_auc_score(truth, b) - roc_auc_score(truth, a))
    assert first["macro"]["difference"] == pytest.approx(x["difference"])
    # Paired resamples: the interval of the difference is much narrower than the models' own intervals.
    assert x["ci_high"] - x["ci_low"] < 0.8 * (x["auroc_a_ci"][1] - x["auroc_a_ci"][0])
    assert x["ci_low"] < x["difference"] < x["ci_high"]


# ---------------------------------------------------------------------------------------------------------
# The command


def write_run(folder: Path, images: list[str], labels: list[str], probs: np.ndarray, truth: np.ndarray, **kw) -> Path:
    folder.mkdir(parents=True)
    write_predictions(
        folder / "predictions.csv", images, list(range(len(images))), labels,
        torch.tensor(probs, dtype=torch.float32), torch.tensor(truth), decisions(probs, [0.5] * len(labels)), **kw,
    )  # fmt: skip
    return folder


@pytest.fixture
def two_runs(tmp_path: Path) -> tuple[Path, Path, dict]:
    rng = np.random.default_rng(2)
    n = 400
    images = [f"images/{i:04d}.png" for i in range(n)]
    truth_x, ax, bx = correlated_scores(rng, n)
    bx = bx + truth_x  # B separates x better
    truth_y, ay, by = correlated_scores(rng, n)
    truth = np.stack([truth_x, truth_y, np.zeros(n)], axis=1)
    truth[:30, 1] = np.nan  # unknown in both
    probs_a = 1 / (1 + np.exp(-np.stack([ax, ay, ay, ax], axis=1)))
    probs_b = 1 / (1 + np.exp(-np.stack([bx, by, by], axis=1)))
    truth_b = truth.copy()
    truth_b[30:40, 1] = np.nan  # known in A only: left out as well
    order = rng.permutation(n)
    run_a = write_run(
        tmp_path / "exp1" / "best_test", images, ["x", "y", "none", "extra"], probs_a,
        np.c_[truth, truth[:, 0]], skipped=[{"path": "images/broken.png", "row": n, "error": "cannot read"}],
    )  # fmt: skip
    run_b = write_run(
        tmp_path / "exp2" / "best_test", [images[i] for i in order], ["x", "y", "none"], probs_b[order], truth_b[order]
    )
    expected = {"truth": truth, "probs_a": probs_a, "probs_b": probs_b}
    return run_a, run_b, expected


def test_command_writes_csv_json_and_png(two_runs, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    run_a, run_b, expected = two_runs
    monkeypatch.chdir(tmp_path)
    assert main([str(run_a), str(run_b), "--bootstrap", "400", "--seed", "1"]) == 0
    out = tmp_path / "compare_exp1_best_test_vs_exp2_best_test"  # default: named after both, in the cwd
    assert "label(s) only in exp1/best_test, not compared: extra" in capsys.readouterr().out
    with open(out / "comparison.csv", newline="") as f:
        reader = csv.reader(f)
        assert next(reader) == COLUMNS
        rows = {r[0]: dict(zip(COLUMNS, r, strict=True)) for r in reader}
    assert list(rows) == ["x", "y", "none", "macro"]
    truth, pa, pb = expected["truth"], expected["probs_a"].astype(np.float32), expected["probs_b"].astype(np.float32)
    known = np.arange(400) >= 40
    assert int(rows["y"]["n"]) == 360 and int(rows["x"]["n"]) == 400 and int(rows["macro"]["n"]) == 400
    auroc_y = roc_auc_score(truth[known, 1], pa[known, 1]), roc_auc_score(truth[known, 1], pb[known, 1])
    assert float(rows["y"]["auroc_a"]) == pytest.approx(auroc_y[0])
    assert float(rows["y"]["difference"]) == pytest.approx(auroc_y[1] - auroc_y[0])
    assert float(rows["x"]["difference"]) > 0 and float(rows["x"]["p_delong"]) < 0.05  # B is better on x
    assert all(rows["none"][c] == "" for c in COLUMNS[2:]) and rows["none"]["n"] == "400"
    assert rows["macro"]["p_delong"] == ""
    macro_a = np.mean([float(rows[n]["auroc_a"]) for n in ("x", "y")])
    assert float(rows["macro"]["auroc_a"]) == pytest.approx(macro_a)
    summary = json.loads((out / "comparison.json").read_text())
    assert summary["difference"] == "auroc_b - auroc_a" and summary["labels_only_a"] == ["extra"]
    assert summary["a"]["skipped_rows"] == 1 and summary["a"]["name"] == "exp1/best_test"
    assert 0 < summary["macro"]["p_bootstrap"] <= 1 and summary["macro"]["labels_used"] == ["x", "y"]
    assert summary["macro"]["ci_low"] == pytest.approx(float(rows["macro"]["ci_low"]))
    assert summary["settings"]["bootstrap"] == 400
    assert (out / "comparison.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_command_with_files_flags_and_no_figures(two_runs, tmp_path: Path) -> None:
    run_a, run_b, _ = two_runs
    out = tmp_path / "cmp"
    argv = ["--a", str(run_b / "predictions.csv"), "--b", str(run_a / "predictions.csv"), "--out", str(out)]
    assert main([*argv, "--bootstrap", "50", "--no-figures", "--name-a", "two", "--name-b", "one"]) == 0
    # .medclf-results.json names the files of the set, so that the next comparison replaces them whole
    assert sorted(p.name for p in out.iterdir()) == [".medclf-results.json", "comparison.csv", "comparison.json"]
    summary = json.loads((out / "comparison.json").read_text())
    assert summary["per_label"][0]["difference"] < 0 and summary["a"]["name"] == "two"  # A and B swapped


def test_positional_arguments_become_flags() -> None:
    assert positional_to_flags(["A", "B", "--seed", "3"]) == ["--a", "A", "--b", "B", "--seed", "3"]
    assert positional_to_flags(["--out", "o", "A", "--no-figures", "B"]) == [
        "--a", "A", "--b", "B", "--out", "o", "--no-figures",
    ]  # fmt: skip
    assert positional_to_flags(["--a", "A", "B"]) == ["--b", "B", "--a", "A"]


def test_errors_exit_2_with_counts_and_examples(two_runs, tmp_path: Path, capsys) -> None:
    run_a, _, expected = two_runs
    images = [f"images/{i:04d}.png" for i in range(400)]
    fewer = write_run(tmp_path / "fewer", images[3:], ["x"], expected["probs_b"][3:, :1], expected["truth"][3:, :1])
    assert main([str(run_a), str(fewer), "--out", str(tmp_path / "o1")]) == 2
    message = capsys.readouterr().out
    assert "3 image(s) only in A" in message and "images/0000.png, images/0001.png" in message
    assert "0 only in B" in message and not (tmp_path / "o1").exists()

    other = write_run(tmp_path / "other", images, ["p", "q"], expected["probs_b"][:, :2], expected["truth"][:, :2])
    assert main([str(run_a), str(other), "--out", str(tmp_path / "o2")]) == 2
    message = capsys.readouterr().out
    assert "no label in common" in message and "x, y, none, extra" in message and "p, q" in message

    flipped = expected["truth"][:, :1].copy()
    flipped[7, 0] = 1 - flipped[7, 0]
    conflict = write_run(tmp_path / "conflict", images, ["x"], expected["probs_b"][:, :1], flipped)
    assert main([str(run_a), str(conflict), "--out", str(tmp_path / "o3")]) == 2
    assert "disagree on 1 known truth value(s), e.g. images/0007.png / x" in capsys.readouterr().out

    assert main([str(run_a), str(tmp_path / "missing"), "--out", str(tmp_path / "o4")]) == 2
    assert "predictions not found" in capsys.readouterr().out
    with pytest.raises(ComparisonError, match="only in B"):
        align_predictions(
            table(["a", "b"], ["x"], np.zeros((2, 1)), np.zeros((2, 1)), "A"),
            table(["a", "a"], ["x"], np.zeros((2, 1)), np.zeros((2, 1)), "B"),
        )


# ---------------------------------------------------------------------------------------------------------
# predictions.csv as medclf.validate writes it, and nothing else


@pytest.fixture(scope="module")
def validated(synthetic_csv: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The validate output folder of a one-epoch run on the synthetic fixture (read-only: tests copy it)."""
    from medclf.train import main as train_main
    from medclf.validate import main as validate_main

    root = tmp_path_factory.mktemp("validated")
    assert train_main(["--csv", str(synthetic_csv), "--out", str(root / "run"), *FAST]) == 0
    out = root / "best_test"
    argv = ["--checkpoint", str(root / "run" / "best.pt"), "--csv", str(synthetic_csv), "--out", str(out)]
    assert validate_main([*argv, "--bootstrap", "0", "--no-figures", "--no-progress", "--device", "cpu"]) == 0
    return out


def copy_folder(folder: Path, to: Path) -> Path:
    to.mkdir(parents=True)
    (to / "predictions.csv").write_bytes((folder / "predictions.csv").read_bytes())
    return to


def test_a_predictions_csv_cut_in_its_last_number_is_refused(validated: Path, tmp_path: Path, capsys) -> None:
    text = (validated / "predictions.csv").read_bytes().decode("utf-8")
    header = text.split("\r\n", 1)[0].split(",")
    assert header[:2] == ["image", "row"] and header[-1].startswith("pred_")  # validate's layout, decisions last
    last = text.rstrip("\r\n").rsplit("\r\n", 1)[1]
    column = max(i for i, c in enumerate(header) if c.startswith("prob_"))
    cell = last.split(",")[column]
    assert float(cell) > 0 and len(cell) > 6
    # Cut in the middle of the last probability: no pred_ cells left in that row (an interrupted copy).
    cut = copy_folder(validated, tmp_path / "cut")
    kept = text[: text.rindex(last) + len(",".join(last.split(",")[:column])) + 5]
    (cut / "predictions.csv").write_text(kept, encoding="utf-8", newline="")
    line = text.count("\r\n")  # the last row's line number (header = line 1)
    assert main([str(validated), str(cut), "--out", str(tmp_path / "o")]) == 2
    message = error_line(capsys)
    assert f"{cut / 'predictions.csv'} line {line}, column {header[column]}: the file ends in this cell" in message
    assert "cut short" in message and not (tmp_path / "o").exists()
    # The same row given a line end afterwards: its missing cells are named.
    (cut / "predictions.csv").write_text(kept + "\r\n", encoding="utf-8", newline="")
    assert main([str(cut), str(validated), "--out", str(tmp_path / "o")]) == 2
    message = error_line(capsys)
    assert f"{cut / 'predictions.csv'} line {line}, column {header[column + 1]}: missing" in message


def test_identical_predictions_warn_and_the_same_file_twice_is_refused(
    validated: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    again = copy_folder(validated, tmp_path / "again")
    assert main([str(validated), str(again), "--out", str(tmp_path / "o"), "--bootstrap", "50", "--no-figures"]) == 0
    assert "hold identical predictions for every compared image and label: every difference is zero" in (
        capsys.readouterr().out
    )
    summary = json.loads((tmp_path / "o" / "comparison.json").read_text())
    assert all(row["difference"] in (0, None) for row in summary["per_label"])
    monkeypatch.chdir(validated.parent)
    (tmp_path / "link").symlink_to(validated)
    for other in (validated, f"{validated}/", "best_test", "./best_test/../best_test/predictions.csv",
                  tmp_path / "link"):  # fmt: skip
        assert main([str(validated), str(other), "--out", str(tmp_path / "o2")]) == 2
        message = error_line(capsys)
        assert f"A and B are the same file, {validated / 'predictions.csv'}" in message, other
    assert not (tmp_path / "o2").exists()


def small_predictions(path: Path, skipped: bool = True) -> Path:
    """A predictions.csv as validate writes it: 6 images, labels x and y, an unknown truth, an unreadable image."""
    truth = torch.tensor([[1, 0], [0, 1], [1, float("nan")], [0, 0], [1, 1], [0, 1]])
    probs = torch.tensor([[0.9, 0.2], [0.3, 0.8], [0.7, 0.5], [0.1, 0.4], [0.6, 0.9], [0.4, 0.6]])
    errors = [{"path": "images/broken.png", "row": 7, "error": "cannot read"}] if skipped else []
    path.parent.mkdir(parents=True, exist_ok=True)
    write_predictions(path, [f"images/{i}.png" for i in range(6)], list(range(1, 7)), ["x", "y"], probs, truth,
                      decisions(probs.numpy(), [0.5, 0.5]), skipped=errors)  # fmt: skip
    return path


def edited(path: Path, line: int, column: str, value: str) -> Path:
    """``path`` with the cell of ``column`` on ``line`` (header = 1) replaced by ``value``."""
    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.reader(f))
    rows[line - 1][rows[0].index(column)] = value
    with open(path, "w", newline="", encoding="utf-8") as f:
        csv.writer(f).writerows(rows)
    return path


def test_the_small_file_is_read_with_its_unreadable_image(tmp_path: Path) -> None:
    from medclf.reporting.comparison import read_predictions

    table_ = read_predictions(small_predictions(tmp_path / "p.csv"))
    assert table_.labels == ["x", "y"] and table_.skipped == 1 and len(table_.images) == 6
    assert math.isnan(table_.truth[2, 1]) and table_.probs[4, 1] == pytest.approx(0.9)


@pytest.mark.parametrize(
    ("line", "column", "value", "expected"),
    [
        (3, "prob_x", "1.5", "line 3, column prob_x: '1.5' is not a probability (a number in [0, 1])"),
        (4, "prob_y", "-0.2", "line 4, column prob_y: '-0.2' is not a probability"),
        (2, "prob_x", "nan", "line 2, column prob_x: 'nan' is not a probability"),
        (2, "prob_y", "inf", "line 2, column prob_y: 'inf' is not a probability"),
        (5, "prob_x", "high", "line 5, column prob_x: 'high' is not a probability"),
        (6, "prob_y", "", "line 6, column prob_y: blank (a missing cell)"),
        (2, "true_x", "2", "line 2, column true_x: truth must be 0, 1 or blank, got '2'"),
        (3, "true_y", "yes", "line 3, column true_y: truth must be 0, 1 or blank, got 'yes'"),
        (3, "true_y", "0.5", "line 3, column true_y: truth must be 0, 1 or blank, got '0.5'"),
        (7, "pred_y", "", "line 7, column pred_y: a decision must be 0 or 1, got ''"),
        (2, "image", " ", "line 2, column image: blank"),
        (5, "row", "", "line 5, column row: '' is not a manifest row number"),
        (8, "prob_x", "0.3", "line 8, column prob_x: '0.3' in the row of an unreadable image"),
        (1, "true_y", "truth_y", "line 1, column 4: 'truth_y' where medclf.validate writes 'true_y'"),
        (1, "image", "path", "line 1, column 1: 'path' where medclf.validate writes 'image'"),
        (1, "prob_y", "prob_x", "line 1: column prob_x appears more than once"),
        (1, "error", "notes", "line 1 (header): column 'notes' is unexpected"),
    ],
)
def test_a_bad_cell_or_header_is_refused_naming_line_and_column(
    tmp_path: Path, capsys, line: int, column: str, value: str, expected: str
) -> None:
    good = small_predictions(tmp_path / "a" / "predictions.csv")
    bad = edited(small_predictions(tmp_path / "b" / "predictions.csv"), line, column, value)
    assert main([str(good.parent), str(bad.parent), "--out", str(tmp_path / "o")]) == 2
    assert f"error: {bad} {expected}" in error_line(capsys)
    assert not (tmp_path / "o").exists()


def test_a_file_not_written_by_validate_is_refused(tmp_path: Path, capsys) -> None:
    from medclf.reporting.comparison import read_predictions

    good = small_predictions(tmp_path / "good.csv")
    text = good.read_text(encoding="utf-8")
    cases = {
        "metrics.csv": ("label,auroc\nx,0.5\n", "line 1, column 1: 'label' where medclf.validate writes 'image'"),
        "bom.csv": ("\ufeff" + text, "line 1, column 1: '\\ufeffimage' where medclf.validate writes 'image'"),
        "no_row.csv": (text.replace("image,row,", "image,"), "line 1, column 2: 'true_x' where"),
        "no_prob.csv": ("image,row,true_x\na.png,1,0\n", "line 1 (header): column 'true_x' is unexpected"),
        "pred_only_x.csv": (text.replace(",pred_y,", ",notes,"), "line 1, column 8: 'notes' where medclf.validate"),
        "long_row.csv": (text.replace("images/2.png,3,", "images/2.png,3,0,"), "line 4: 10 cells, but the header"),
        "empty.csv": ("", "is empty: not a predictions.csv as medclf.validate writes it"),
        "header_only.csv": (text.split("\n", 1)[0] + "\n", "has no predictions (0 row(s) of unreadable images)"),
        "only_unreadable.csv": (
            text.split("\n", 1)[0] + "\n" + text.rsplit("\n", 2)[1] + "\n",
            "has no predictions (1 row(s)",
        ),
    }
    for name, (content, expected) in cases.items():
        (tmp_path / name).write_text(content, encoding="utf-8", newline="")
        with pytest.raises(ComparisonError) as raised:
            read_predictions(tmp_path / name)
        assert f"{tmp_path / name} {expected}" in str(raised.value), name
    # predict's file (no truth) keeps its own advice
    predicted = tmp_path / "predict.csv"
    write_predictions(
        predicted,
        ["a.png", "b.png"],
        [1, 2],
        ["x"],
        torch.tensor([[0.2], [0.7]]),
        None,
        decisions(np.array([[0.2], [0.7]]), [0.5]),
    )
    with pytest.raises(ComparisonError, match=r"predictions without truth \(from medclf.predict\?\)"):
        read_predictions(predicted)
    assert main([str(good), str(predicted)]) == 2
    assert "cannot be compared" in error_line(capsys)


def test_every_cut_of_a_file_not_at_a_line_end_is_refused(tmp_path: Path) -> None:
    from medclf.reporting.comparison import read_predictions

    for skipped in (False, True):
        text = small_predictions(tmp_path / f"p{skipped}.csv", skipped).read_bytes().decode("utf-8")
        for k in range(1, len(text)):
            if text[k - 1] in "\r\n":
                continue  # a cut at a line end leaves a whole file of fewer rows (other images than B's)
            cut = tmp_path / "cut.csv"
            cut.write_text(text[:k], encoding="utf-8", newline="")
            with pytest.raises(ComparisonError, match=r"the file ends in this cell, without a line end: it was cut"):
                read_predictions(cut)
