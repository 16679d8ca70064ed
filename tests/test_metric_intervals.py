"""Bootstrap intervals of sensitivity, specificity, PPV and NPV: the same resamples as AUROC's, checked
against a slow loop over resamples; and every accuracy named with its thresholds."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.metrics import roc_auc_score

from medclf.metrics.bootstrap import bootstrap_auroc, bootstrap_resamples, percentile_interval, resample_counts
from medclf.metrics.curves import decisions
from medclf.metrics.summary import evaluation_report
from medclf.reporting.tables import evaluation_table, metrics_table, thresholds_phrase

N, B, SEED = 160, 40, 5
THRESHOLDS = [0.45, 0.5, 0.55, 0.5]
RATES = ("sensitivity", "specificity", "ppv", "npv")


def masked_example() -> tuple[torch.Tensor, torch.Tensor]:
    """(N, 4) float32 scores with ties and targets with NaN (unknown) entries; label 3 has few positives."""
    rng = np.random.default_rng(8)
    targets = (rng.random((N, 4)) < [0.3, 0.4, 0.25, 0.04]).astype(np.float32)
    probs = np.round(rng.random((N, 4)) * 0.7 + targets * 0.3, 2).astype(np.float32)
    targets[rng.random((N, 4)) < 0.15] = np.nan
    return torch.from_numpy(probs), torch.from_numpy(targets)


def slow_rates(probs: np.ndarray, targets: np.ndarray, draws: np.ndarray) -> dict[str, np.ndarray]:
    """Per resample and label the four rates, by indexing the drawn images one resample at a time.

    Returns ``{rate: (B, L + 1)}``: the labels, then the pooled (micro) rate; NaN for 0/0.
    """
    out = {rate: np.full((len(draws), probs.shape[1] + 1), np.nan) for rate in RATES}
    for b, drawn in enumerate(draws):
        p, t = probs[drawn].astype(np.float64), targets[drawn]
        tables = []
        for j, cut in enumerate(THRESHOLDS):
            known = ~np.isnan(t[:, j])
            truth, called = t[known, j] == 1, p[known, j] >= cut
            tables.append([np.sum(truth & called), np.sum(~truth & called), np.sum(~truth & ~called),
                           np.sum(truth & ~called)])  # fmt: skip
        tables.append(list(np.sum(tables, axis=0)))
        for j, (tp, fp, tn, fn) in enumerate(tables):
            for rate, (a, c) in zip(RATES, [(tp, fn), (tn, fp), (tp, fp), (tn, fn)], strict=True):
                if a + c:
                    out[rate][b, j] = a / (a + c)
    return out


def test_rate_intervals_equal_a_slow_loop_over_the_same_draws() -> None:
    probs, targets = masked_example()
    report = evaluation_report(probs, targets, list("abcd"), THRESHOLDS, n_bootstrap=B, seed=SEED)
    # The draws of the AUROC bootstrap, made here independently: one seeded generator, one chunk.
    draws = torch.randint(0, N, (B, N), generator=torch.Generator().manual_seed(SEED)).numpy()
    slow = slow_rates(probs.numpy(), targets.numpy(), draws)
    for rate in RATES:
        low, high = np.nanquantile(slow[rate], [0.025, 0.975], axis=0)
        for j, row in enumerate(report["per_label"]):
            assert row[f"{rate}_ci_low"] == pytest.approx(low[j], abs=1e-12), (rate, j)
            assert row[f"{rate}_ci_high"] == pytest.approx(high[j], abs=1e-12), (rate, j)
        defined = [j for j, row in enumerate(report["per_label"]) if row[rate] is not None]
        with np.errstate(all="ignore"):
            macro = np.nanmean(slow[rate][:, defined], axis=1)
        assert report["macro"][f"{rate}_ci_low"] == pytest.approx(np.nanquantile(macro, 0.025), abs=1e-12)
        assert report["macro"][f"{rate}_ci_high"] == pytest.approx(np.nanquantile(macro, 0.975), abs=1e-12)
        assert report["micro"][f"{rate}_ci_low"] == pytest.approx(low[-1], abs=1e-12)
        assert report["micro"][f"{rate}_ci_high"] == pytest.approx(high[-1], abs=1e-12)


def test_auroc_intervals_are_those_of_the_auroc_bootstrap() -> None:
    probs, targets = masked_example()
    report = evaluation_report(probs, targets, list("abcd"), THRESHOLDS, n_bootstrap=B, seed=SEED)
    samples = bootstrap_auroc(probs, targets, B, seed=SEED)  # AUROC's own code path, without thresholds
    low, high = percentile_interval(samples)
    (macro_low,), (macro_high,) = percentile_interval(samples.nanmean(dim=1, keepdim=True))
    assert [r["auroc_ci_low"] for r in report["per_label"]] == low
    assert [r["auroc_ci_high"] for r in report["per_label"]] == high
    assert (report["macro"]["auroc_ci_low"], report["macro"]["auroc_ci_high"]) == (macro_low, macro_high)
    # ... and those are the AUROCs of the drawn images, as before the rates shared the draws.
    draws = torch.randint(0, N, (B, N), generator=torch.Generator().manual_seed(SEED))
    for b in (0, 17, B - 1):
        for j in range(4):
            t, p = targets[draws[b], j], probs[draws[b], j]
            known = ~torch.isnan(t)
            assert float(samples[b, j]) == pytest.approx(roc_auc_score(t[known], p[known]), abs=1e-6)


def test_thresholds_change_no_draw_in_any_chunking() -> None:
    probs, targets = masked_example()
    small = 3 * N * 4  # three resamples per chunk
    alone = bootstrap_auroc(probs, targets, 10, seed=2, max_elements=small)
    calls = torch.from_numpy(decisions(probs.numpy(), THRESHOLDS))
    auroc, confusion = bootstrap_resamples(probs, targets, 10, seed=2, calls=calls, max_elements=small)
    assert torch.equal(alone.nan_to_num(-1), auroc.nan_to_num(-1))
    counts = torch.cat(list(resample_counts(N, 10, seed=2, chunk=3)))
    assert counts.shape == (10, N) and bool((counts.sum(dim=1) == N).all())
    known = ~torch.isnan(targets)
    # TP + FP + TN + FN of a label = the drawn images whose truth for it is known.
    assert torch.equal(confusion.sum(dim=1), counts @ known.float())


def test_masked_scores_do_not_matter_and_no_bootstrap_gives_none() -> None:
    probs, targets = masked_example()
    noisy = torch.where(torch.isnan(targets), torch.rand_like(probs), probs)
    first = evaluation_report(probs, targets, list("abcd"), THRESHOLDS, n_bootstrap=30)
    second = evaluation_report(noisy, targets, list("abcd"), THRESHOLDS, n_bootstrap=30)
    assert first["per_label"] == second["per_label"] and first["macro"] == second["macro"]
    bare = evaluation_report(probs, targets, list("abcd"), THRESHOLDS, n_bootstrap=0)
    for row in [*bare["per_label"], bare["macro"], bare["micro"]]:
        assert all(row[f"{rate}_ci_low"] is None and row[f"{rate}_ci_high"] is None for rate in RATES)


def test_undefined_rates_have_no_interval_and_csv_columns_follow_their_metric() -> None:
    probs, targets = masked_example()
    targets[:, 3] = torch.where(torch.isnan(targets[:, 3]), targets[:, 3], torch.zeros_like(targets[:, 3]))
    report = evaluation_report(probs, targets, list("abcd"), THRESHOLDS, n_bootstrap=30)
    row = report["per_label"][3]
    assert row["sensitivity"] is None and row["sensitivity_ci_low"] is None and row["auroc_ci_low"] is None
    assert row["specificity_ci_low"] <= row["specificity"] <= row["specificity_ci_high"]
    columns = list(evaluation_table(report)[0])
    start = columns.index("sensitivity")
    assert columns[start : start + 3] == ["sensitivity", "sensitivity_ci_low", "sensitivity_ci_high"]
    assert set(evaluation_table(report)[-2]) >= {"npv_ci_low", "auroc_ci_high"}  # the macro row


def test_every_accuracy_names_its_thresholds() -> None:
    probs, targets = masked_example()
    report = evaluation_report(probs, targets, list("abcd"), THRESHOLDS, n_bootstrap=0)
    assert report["accuracy_at_0.5"] == report["accuracy"]  # the old key keeps its meaning
    report["thresholds_from"] = "checkpoint (Youden's J on VALIDATION)"
    last = metrics_table(report).splitlines()[-1]
    micro, at_half = f"{report['micro']['accuracy']:.4f}", f"{report['accuracy_at_0.5']:.4f}"
    assert f"{micro} at the VALIDATION-chosen thresholds" in last
    assert f"{at_half} at 0.5 on the uncalibrated outputs" in last
    assert thresholds_phrase("fixed 0.3") == "at 0.3"
    assert thresholds_phrase("t.json").startswith("at the thresholds of t.json")
