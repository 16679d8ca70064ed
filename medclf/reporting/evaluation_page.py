"""The content of ``report.html`` for an evaluation: summary facts and tables from ``metrics.json``."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from medclf.reporting.html import render_report
from medclf.reporting.tables import interval_text

Section = tuple[str, str, list[str], list[list[str]]]


def evaluation_page(metrics: dict[str, Any], pngs: Sequence[tuple[str, bytes]]) -> str:
    """The report page of ``validate``: facts, per-label metrics, calibration, TTA, subgroups, figures."""
    columns, rows = _per_label_rows(metrics)
    sections = [_calibration_section(metrics["calibration"])]
    if metrics.get("subgroups"):
        sections.append(_subgroup_section(metrics["subgroups"]))
    title = f"medclf evaluation: {Path(metrics['checkpoint']).name} on {metrics['split']}"
    return render_report(title, _facts(metrics), columns, rows, pngs, sections=sections)


def _facts(metrics: dict[str, Any]) -> list[tuple[str, str]]:
    macro, micro = metrics["macro"], metrics["micro"]
    ci = _interval(macro["auroc_ci_low"], macro["auroc_ci_high"])
    calibration, tta = metrics["calibration"], metrics.get("tta")
    facts = [
        ("Checkpoint", f"{metrics['checkpoint']} (epoch {metrics['checkpoint_epoch']})"),
        ("Data", f"{metrics['csv']}, split {metrics['split']}: {metrics['n_images']} images"),
        ("Macro AUROC", f"{_num(metrics['macro_auroc'])} {ci} over "
                        f"{metrics['labels_averaged']}/{metrics['n_labels']} labels"),
        ("Micro AUROC", _num(micro["auroc"])),
        ("Macro average precision", _num(macro["average_precision"])),
        ("Thresholds", metrics["thresholds_from"]),
        ("Calibration", "temperature scaling, " + calibration["temperatures_from"] if calibration["applied"]
         else calibration["temperatures_from"]),
        ("Test-time augmentation", "not used" if not tta else
         f"{tta['views']} views; macro AUROC {_num(tta['macro_auroc_without'])} without, "
         f"{_num(tta['macro_auroc_with'])} with (change {_signed(tta['macro_change'])})"),
        ("Confidence intervals", f"{metrics['bootstrap']['resamples']} bootstrap resamples of the images, "
                                 f"seed {metrics['bootstrap']['seed']}, percentile 95%"),
        ("Unreadable images", str(len(metrics["skipped_images"]))),
        ("Labels absent from the data", ", ".join(metrics["absent_labels"]) or "none"),
    ]  # fmt: skip
    return facts


def _per_label_rows(metrics: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    columns = ["label", "AUROC [95% CI]", "AP", "positives", "negatives", "threshold", "sensitivity",
               "specificity", "PPV", "NPV", "F1", "accuracy"]  # fmt: skip
    rows = []
    for row in metrics["per_label"]:
        rows.append([
            row["label"], f"{_num(row['auroc'])} {_interval(row['auroc_ci_low'], row['auroc_ci_high'])}".strip(),
            _num(row["average_precision"]), str(row["positives"]), str(row["negatives"]), _num(row["threshold"]),
            _num(row["sensitivity"]), _num(row["specificity"]), _num(row["ppv"]), _num(row["npv"]),
            _num(row["f1"]), _num(row["accuracy"]),
        ])  # fmt: skip
    for name in ("macro", "micro"):
        avg = metrics[name]
        ci = _interval(avg.get("auroc_ci_low"), avg.get("auroc_ci_high"))
        rows.append([
            f"{name} average", f"{_num(avg['auroc'])} {ci}".strip(), _num(avg["average_precision"]), "", "", "",
            _num(avg["sensitivity"]), _num(avg["specificity"]), _num(avg["ppv"]), _num(avg["npv"]),
            _num(avg["f1"]), _num(avg["accuracy"]),
        ])  # fmt: skip
    return columns, rows


def _calibration_section(calibration: dict[str, Any]) -> Section:
    before, after, temps = calibration["before"], calibration["after"], calibration["temperatures"] or {}
    columns = ["label", "temperature", "ECE before", "ECE after", "Brier before", "Brier after"]
    rows = [
        [name, _num(temps.get(name)), _num(before["ece"][name]), _num(after["ece"][name] if after else None),
         _num(before["brier"][name]), _num(after["brier"][name] if after else None)]
        for name in before["ece"]
    ]  # fmt: skip
    return ("calibration", "Calibration (expected calibration error, 10 bins; Brier score)", columns, rows)


def _subgroup_section(block: dict[str, Any]) -> Section:
    columns = ["attribute", "group", "label", "n", "positives", "AUROC [95% CI]", "TPR", "FPR"]
    rows = []
    for row in block["rows"]:
        auroc = (
            "undefined" if row["auroc"] is None else f"{row['auroc']:.3f} {_interval(row['ci_low'], row['ci_high'])}"
        )
        rows.append([row["attribute"], str(row["group"]), row["label"], str(row["n"]), str(row["positives"]),
                     auroc.strip(), _num(row["tpr"]), _num(row["fpr"])])  # fmt: skip
    return ("subgroups", "Subgroups (TPR and FPR at the VALIDATION-chosen thresholds)", columns, rows)


def _num(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def _signed(value: float | None) -> str:
    return "n/a" if value is None else f"{value:+.4f}"


def _interval(low: float | None, high: float | None) -> str:
    return interval_text(low, high, digits=3)
