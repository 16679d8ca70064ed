"""Subgroup analysis: the spec, group assignment, per-group AUROC/CI/rates, largest gaps, the forest plot."""

from __future__ import annotations

import json
import logging
import math

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.metrics import roc_auc_score

from medclf.errors import ConfigError
from medclf.metrics.subgroups import (
    MACRO,
    MIN_PER_CLASS,
    MISSING,
    OUTSIDE,
    SubgroupSpec,
    assign_groups,
    largest_gaps,
    parse_subgroups,
    subgroup_analysis,
    subgroup_table,
)
from medclf.reporting.figures import figure_png
from medclf.reporting.forest import forest_figure
from tests.conftest import shared_path

ROW_KEYS = {"attribute", "group", "label", "n", "positives", "auroc", "ci_low", "ci_high", "ci_note", "tpr", "fpr"}


def _scores(targets: np.ndarray, signal: float | np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Probabilities that separate the classes by ``signal`` (per image when an array); NaN targets: noise."""
    truth = np.nan_to_num(targets, nan=0.0)
    return 1.0 / (1.0 + np.exp(-(signal * (2 * truth - 1) + rng.normal(size=targets.shape))))


def _row(rows: list[dict], group: str, label: str, attribute: str | None = None) -> dict:
    found = [r for r in rows if r["group"] == group and r["label"] == label and attribute in (None, r["attribute"])]
    assert len(found) == 1, (group, label, found)
    return found[0]


# ---------------------------------------------------------------------------------------------------------
# The spec


def test_parse_the_issue_example() -> None:
    specs = parse_subgroups("sex, view ,age=0-40,40-60,60-")
    assert specs == [
        SubgroupSpec("sex"),
        SubgroupSpec("view"),
        SubgroupSpec("age", ((0.0, 40.0), (40.0, 60.0), (60.0, None))),
    ]
    assert specs[2].bin_names() == ["age 0-40", "age 40-60", "age 60+"]


def test_parse_open_start_decimals_negatives_and_columns_after_bins() -> None:
    specs = parse_subgroups("age=-18,18-65.5,65.5-,source,z=-2--0.5,-0.5-0")
    assert specs[0] == SubgroupSpec("age", ((None, 18.0), (18.0, 65.5), (65.5, None)))
    assert specs[0].bin_names() == ["age <18", "age 18-65.5", "age 65.5+"]
    assert specs[1] == SubgroupSpec("source")
    assert specs[2] == SubgroupSpec("z", ((-2.0, -0.5), (-0.5, 0.0)))


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("", "empty"),
        ("  ", "empty"),
        ("sex,,view", "empty item"),
        ("sex,", "empty item"),
        ("age=", "not a bin"),
        ("=0-40", "not 'column=lo-hi'"),
        ("a=b=c", "not 'column=lo-hi'"),
        ("age=young", "not a bin"),
        ("age=0-40,4o-60", "not a bin"),
        ("age=-", "not a bin"),
        ("age=40-20", "empty"),
        ("age=40-40", "empty"),
        ("age=0-40,30-60", "overlap or are out of order"),
        ("age=40-60,0-40", "overlap or are out of order"),
        ("age=0-,40-60", "last bin"),
        ("age=0-40,-60", "first bin"),
        ("0-40", "follows no 'column='"),
        ("sex,40-60", "follows no 'column='"),
        ("sex,view,sex", "more than once: sex"),
    ],
)
def test_bad_specs_are_config_errors(spec: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_subgroups(spec)


# ---------------------------------------------------------------------------------------------------------
# Groups


def test_bins_are_half_open_with_missing_and_outside_rows() -> None:
    frame = pd.DataFrame({"age": ["39.9", "40", "59.99", "60", "100", "", None, "-3", " 7 "], "csv_row": range(2, 11)})
    groups = assign_groups(frame, parse_subgroups("age=0-40,40-60,60-")[0])
    assert list(groups) == [
        "age 0-40", "age 40-60", "age 40-60", "age 60+", "age 60+", MISSING, MISSING, OUTSIDE, "age 0-40",
    ]  # fmt: skip
    assert list(groups.cat.categories) == ["age 0-40", "age 40-60", "age 60+", OUTSIDE, MISSING]
    # An empty bin stays a category, so the table reports it (n=0) instead of leaving it out.
    empty = assign_groups(frame, parse_subgroups("age=0-40,200-300")[0])
    assert "age 200-300" in empty.cat.categories and (empty == "age 200-300").sum() == 0
    # With a gap between bins, each bin's upper edge is outside it.
    gapped = assign_groups(pd.DataFrame({"age": [40, 49.5, 50, 60]}), parse_subgroups("age=0-40,50-60")[0])
    assert list(gapped) == [OUTSIDE, OUTSIDE, "age 50-60", OUTSIDE]


def test_text_groups_missing_values_and_order() -> None:
    frame = pd.DataFrame({"sex": [" M", "F", "", None, float("nan"), "M"], "age": [61.0, 10.0, 9.0, 61.0, np.nan, 5.5]})
    sex = assign_groups(frame, SubgroupSpec("sex"))
    assert list(sex) == ["M", "F", MISSING, MISSING, MISSING, "M"]
    assert list(sex.cat.categories) == ["F", "M", MISSING]
    age = assign_groups(frame, SubgroupSpec("age"))  # no bins: each value is a group, numbers in numeric order
    assert list(age.cat.categories) == ["5.5", "9", "10", "61", MISSING]


def test_non_numeric_binned_value_and_absent_column_name_the_problem() -> None:
    frame = pd.DataFrame({"age": ["50", "sixty", "70"], "csv_row": [2, 3, 4]})
    with pytest.raises(ConfigError, match=r"'age'.*'sixty' at CSV row 3"):
        assign_groups(frame, parse_subgroups("age=0-60,60-")[0])
    with pytest.raises(ConfigError, match=r"'race' is not in the manifest; its columns are: age, csv_row"):
        assign_groups(frame, SubgroupSpec("race"))


# ---------------------------------------------------------------------------------------------------------
# The table


@pytest.fixture(scope="module")
def two_groups() -> dict:
    """400 images, 3 labels with unknown targets, groups a (strong signal) and b (weak), one label one-class in b."""
    rng = np.random.default_rng(7)
    n = 400
    group = np.where(np.arange(n) < 250, "a", "b")
    targets = (rng.random((n, 3)) < 0.3).astype(np.float64)
    targets[rng.random((n, 3)) < 0.15] = np.nan
    targets[group == "b", 2] = np.where(np.isnan(targets[group == "b", 2]), np.nan, 0.0)  # no positives in b
    signal = np.where(group == "a", 2.0, 0.3)[:, None]
    probs = _scores(targets, signal, rng)
    labels = ["x", "y", "z"]
    thresholds = [0.5, 0.4, 0.6]
    out = subgroup_analysis(probs, targets, {"site": group}, labels, thresholds, n_bootstrap=400, seed=3)
    return {"probs": probs, "targets": targets, "group": group, "labels": labels, "thresholds": thresholds, **out}


def test_rows_cover_every_group_and_label_and_are_json_ready(two_groups: dict) -> None:
    rows = two_groups["rows"]
    assert [(r["group"], r["label"]) for r in rows] == [(g, lab) for g in "ab" for lab in ["x", "y", "z", MACRO]]
    assert all(set(r) == ROW_KEYS and r["attribute"] == "site" for r in rows)
    json.dumps({key: two_groups[key] for key in ("rows", "gaps", "bootstrap")})
    for row in rows:
        for key in ("auroc", "ci_low", "ci_high", "tpr", "fpr"):
            assert row[key] is None or type(row[key]) is float
        assert type(row["n"]) is int and type(row["positives"]) is int


def test_auroc_counts_and_rates_match_sklearn_and_a_hand_count(two_groups: dict) -> None:
    probs, targets, group = two_groups["probs"], two_groups["targets"], two_groups["group"]
    for g in "ab":
        for j, label in enumerate(two_groups["labels"]):
            row = _row(two_groups["rows"], g, label)
            known = (group == g) & ~np.isnan(targets[:, j])
            truth, scores = targets[known, j], probs[known, j]
            assert row["n"] == known.sum() and row["positives"] == (truth == 1).sum()
            called = scores >= two_groups["thresholds"][j]
            positives, negatives = (truth == 1).sum(), (truth == 0).sum()
            assert row["fpr"] == pytest.approx((called & (truth == 0)).sum() / negatives)
            if positives:
                assert row["auroc"] == pytest.approx(roc_auc_score(truth, scores), abs=1e-9)
                assert row["tpr"] == pytest.approx((called & (truth == 1)).sum() / positives)


def test_undefined_groups_are_reported_not_dropped(two_groups: dict) -> None:
    row = _row(two_groups["rows"], "b", "z")
    assert row["positives"] == 0 and row["n"] > 0
    assert row["auroc"] is None and row["ci_low"] is None and row["ci_high"] is None and row["tpr"] is None
    assert row["fpr"] is not None
    macro_b = _row(two_groups["rows"], "b", MACRO)
    defined = [_row(two_groups["rows"], "b", lab)["auroc"] for lab in ("x", "y")]
    assert macro_b["auroc"] == pytest.approx(sum(defined) / 2)  # mean over the labels defined in b
    assert macro_b["n"] == (two_groups["group"] == "b").sum() and macro_b["tpr"] is None and macro_b["fpr"] is None


def test_empty_and_one_class_groups_stay_in_the_table() -> None:
    frame = pd.DataFrame({"age": ["30", "35", "50", "55", "52"]})
    groups = {"age": assign_groups(frame, parse_subgroups("age=0-40,40-60,60-")[0])}
    targets = np.array([[0.0], [0.0], [0.0], [1.0], [np.nan]])
    rows = subgroup_table(np.linspace(0.1, 0.9, 5)[:, None], targets, groups, ["x"], [0.5], n_bootstrap=50)
    assert [(r["group"], r["label"], r["n"], r["positives"]) for r in rows] == [
        ("age 0-40", "x", 2, 0), ("age 0-40", MACRO, 2, 0),
        ("age 40-60", "x", 2, 1), ("age 40-60", MACRO, 3, 1),
        ("age 60+", "x", 0, 0), ("age 60+", MACRO, 0, 0),
    ]  # fmt: skip
    assert rows[2]["auroc"] == 1.0 and rows[0]["auroc"] is None and rows[4]["auroc"] is None


def test_intervals_contain_the_point_and_narrow_with_n() -> None:
    rng = np.random.default_rng(1)
    sizes = {"small": 80, "large": 3000}
    targets = np.concatenate([(rng.random((n, 2)) < 0.3).astype(float) for n in sizes.values()])
    group = np.repeat(list(sizes), list(sizes.values()))
    probs = _scores(targets, 1.0, rng)
    rows = subgroup_table(torch.from_numpy(probs), torch.from_numpy(targets), {"g": group}, ["x", "y"], [0.5, 0.5],
                          n_bootstrap=300)  # fmt: skip
    for row in rows:
        assert row["ci_low"] <= row["auroc"] <= row["ci_high"]
    for label in ("x", "y", MACRO):
        small, large = _row(rows, "small", label), _row(rows, "large", label)
        assert large["ci_high"] - large["ci_low"] < 0.5 * (small["ci_high"] - small["ci_low"])


def test_seed_determines_the_intervals(two_groups: dict) -> None:
    args = (two_groups["probs"], two_groups["targets"], {"site": two_groups["group"]}, two_groups["labels"])
    again = subgroup_table(*args, two_groups["thresholds"], n_bootstrap=400, seed=3)
    other = subgroup_table(*args, two_groups["thresholds"], n_bootstrap=400, seed=4)
    assert again == two_groups["rows"]
    assert [r["ci_low"] for r in other] != [r["ci_low"] for r in again]
    # A group's stream depends on its names, not on which other attributes were asked for.
    more = subgroup_table(*args[:2], {"other": two_groups["group"][::-1], "site": two_groups["group"]},
                          args[3], two_groups["thresholds"], n_bootstrap=400, seed=3)  # fmt: skip
    assert [r for r in more if r["attribute"] == "site"] == again


def test_groups_too_small_for_an_interval_say_so_instead_of_a_zero_width_interval(
    caplog: pytest.LogCaptureFixture,
) -> None:
    targets = np.array([[1.0], [0.0]] * 2 + [[1.0], [0.0]] * 40)  # group "two": 2 images, "big": 80
    group = np.array(["two"] * 2 + ["tiny"] * 2 + ["big"] * 80)
    probs = np.where(targets == 1, 0.8, 0.2) + np.random.default_rng(0).normal(0, 0.3, targets.shape)
    out = subgroup_analysis(probs, targets, {"g": group}, ["x"], [0.5], n_bootstrap=200)
    two, big = _row(out["rows"], "two", "x"), _row(out["rows"], "big", "x")
    assert two["auroc"] is not None and two["ci_low"] is None and two["ci_high"] is None
    assert two["ci_note"] == f"too few: 1 pos / 1 neg (an interval needs {MIN_PER_CLASS} of each)"
    assert _row(out["rows"], "two", MACRO)["ci_low"] is None and "too few" in _row(out["rows"], "two", MACRO)["ci_note"]
    assert big["ci_note"] == "" and big["ci_low"] < big["ci_high"]
    gap = out["gaps"][0]
    assert gap["difference"] is not None and gap["ci_low"] is None  # a gap to a too-small group: no interval
    assert _row(subgroup_table(probs, targets, {"g": group}, ["x"], [0.5], n_bootstrap=0), "two", "x")["ci_note"] == ""
    fig = forest_figure(out["rows"], ["x"])
    assert "no CI: 1 pos / 1 neg" in [t.get_text() for t in fig.axes[0].texts]
    from medclf.reporting.evaluation_page import _subgroup_section

    cells = {(r[1], r[2]): r[5] for r in _subgroup_section(out, "at the thresholds")[3]}
    assert cells[("two", "x")].startswith(f"{two['auroc']:.3f} n/a (too few: 1 pos / 1 neg")
    from medclf.workflows.validate import _log_analyses

    calibration = {"before": {"ece": {"macro": 0.1}, "brier": {"macro": 0.1}}, "after": None, "temperatures_from": ""}
    with caplog.at_level(logging.INFO, logger="medclf"):
        _log_analyses({"calibration": calibration, "tta": None, "subgroups": out})
    assert "[no interval: a group too small]" in caplog.text


# ---------------------------------------------------------------------------------------------------------
# Largest gaps


def test_largest_gap_picks_the_extremes_with_a_sensible_interval(two_groups: dict) -> None:
    gaps = {g["label"]: g for g in two_groups["gaps"]}
    assert list(gaps) == ["x", "y", "z", MACRO]
    for label in ("x", "y", MACRO):
        gap, a, b = gaps[label], _row(two_groups["rows"], "a", label), _row(two_groups["rows"], "b", label)
        assert (gap["high_group"], gap["low_group"]) == ("a", "b")  # a has the stronger signal
        assert gap["difference"] == pytest.approx(a["auroc"] - b["auroc"])
        assert gap["ci_low"] <= gap["difference"] <= gap["ci_high"]
        assert gap["ci_low"] > 0  # a clear gap: the interval excludes 0
        # Independent groups: the difference is at least as uncertain as the noisier group alone.
        assert gap["ci_high"] - gap["ci_low"] >= 0.9 * max(a["ci_high"] - a["ci_low"], b["ci_high"] - b["ci_low"])
    z = gaps["z"]  # defined only in a
    assert z["groups"] == 2 and z["groups_defined"] == 1
    assert all(z[k] is None for k in ("high_group", "low_group", "difference", "ci_low", "ci_high"))


def test_groups_are_resampled_independently() -> None:
    rng = np.random.default_rng(9)
    targets = (rng.random((300, 1)) < 0.4).astype(float)
    probs = _scores(targets, 1.0, rng)
    twice = np.concatenate([probs, probs]), np.concatenate([targets, targets])
    out = subgroup_analysis(*twice, {"copy": np.repeat(["p", "q"], 300)}, ["x"], [0.5], n_bootstrap=200)
    p, q = _row(out["rows"], "p", "x"), _row(out["rows"], "q", "x")
    assert p["auroc"] == q["auroc"] and p["ci_low"] != q["ci_low"]  # same data, own draws
    gap = out["gaps"][0]
    assert gap["difference"] == 0 and gap["ci_low"] < 0 < gap["ci_high"]


def test_gap_interval_covers_zero_without_a_real_difference() -> None:
    rng = np.random.default_rng(5)
    targets = (rng.random((1200, 1)) < 0.4).astype(float)
    probs = _scores(targets, 1.0, rng)
    group = rng.choice(["p", "q"], size=1200)
    (gap, macro) = largest_gaps(probs, targets, {"g": group}, ["x"], n_bootstrap=300)
    assert gap["ci_low"] < 0 < gap["ci_high"] and gap["difference"] >= 0
    assert macro["difference"] == pytest.approx(gap["difference"])


# ---------------------------------------------------------------------------------------------------------
# The forest plot and real data


def test_forest_figure_renders_14_labels_with_undefined_groups(two_groups: dict) -> None:
    labels = [f"finding_{i}" for i in range(14)]
    rng = np.random.default_rng(2)
    targets = (rng.random((600, 14)) < 0.2).astype(float)
    targets[:40, 13] = 0.0
    group = np.repeat(np.array([f"g{i}" for i in range(8)], dtype=object), 75)
    group[:40] = "tiny"
    rows = subgroup_table(_scores(targets, 1.0, rng), targets, {"site": group, "half": np.arange(600) % 2}, labels,
                          [0.5] * 14, n_bootstrap=100)  # fmt: skip
    assert _row(rows, "tiny", "finding_13")["auroc"] is None
    fig = forest_figure(rows, labels, overall={MACRO: 0.8})
    assert len(fig.axes) == 15
    texts = [t.get_text() for ax in fig.axes for t in ax.texts]
    assert any(t.startswith("undefined (n=40, pos=0)") for t in texts)
    png = figure_png(fig, dpi=60)
    assert png.startswith(b"\x89PNG") and len(png) > 10_000
    assert figure_png(forest_figure([], labels), dpi=40).startswith(b"\x89PNG")


def test_real_nih_manifest_covers_every_group() -> None:
    csv = shared_path("nih", "starter256", "dataset.csv")
    frame = pd.read_csv(csv, dtype=str, keep_default_na=False)
    assert {"sex", "age", "view"} <= set(frame.columns)
    labels = [c for c in frame.columns[2:] if set(frame[c]) <= {"0", "1"}]
    assert len(labels) == 14
    specs = parse_subgroups("sex,view,age=0-40,40-60,60-")
    groups = {spec.column: assign_groups(frame, spec) for spec in specs}
    targets = frame[labels].to_numpy(np.float64)
    probs = np.random.default_rng(0).random(targets.shape)
    out = subgroup_analysis(probs, targets, groups, labels, [0.5] * len(labels), n_bootstrap=200)
    for attribute, values in groups.items():
        expected = set(values.cat.categories)
        if attribute == "age":
            assert expected == {"age 0-40", "age 40-60", "age 60+"}
        else:
            assert expected == set(frame[attribute].replace("", MISSING))
        got = {(r["group"], r["label"]) for r in out["rows"] if r["attribute"] == attribute}
        assert got == {(g, lab) for g in expected for lab in [*labels, MACRO]}
        for g in expected:
            assert _row(out["rows"], g, MACRO, attribute)["n"] == (values == g).sum()
    assert sum(r["n"] for r in out["rows"] if r["attribute"] == "age" and r["label"] == MACRO) == len(frame)
    assert all(math.isfinite(r["auroc"]) for r in out["rows"] if r["auroc"] is not None)
    assert len(out["gaps"]) == len(groups) * (len(labels) + 1)
    json.dumps(out)
