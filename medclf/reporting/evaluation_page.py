"""The content of ``report.html`` for an evaluation: summary facts and tables from ``metrics.json``."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from medclf.metrics import metric_list
from medclf.reporting.html import render_report
from medclf.reporting.tables import interval_text, thresholds_phrase

Section = tuple[str, str, list[str], list[list[str]]]


def evaluation_page(metrics: dict[str, Any], pngs: Sequence[tuple[str, bytes]]) -> str:
    """The report page of ``validate``: facts, per-label metrics, calibration, TTA, subgroups, figures."""
    columns, rows, footer = _per_label_rows(metrics)
    at = thresholds_phrase(metrics.get("thresholds_from"))
    sections = [_calibration_section(metrics["calibration"])]
    if metrics.get("subgroups"):
        sections.append(_subgroup_section(metrics["subgroups"], at))
    title = f"medclf evaluation: {Path(metrics['checkpoint']).name} on {metrics['split']}"
    heading = f"Per-label metrics (sensitivity, specificity, PPV, NPV, F1 and accuracy {at})"
    return render_report(title, _facts(metrics), columns, rows, pngs, sections=sections, footer=footer, heading=heading)


def _facts(metrics: dict[str, Any]) -> list[tuple[str, str]]:
    macro, micro = metrics["macro"], metrics["micro"]
    ci = _interval(macro["auroc_ci_low"], macro["auroc_ci_high"])
    calibration, tta = metrics["calibration"], metrics.get("tta")
    at = thresholds_phrase(metrics.get("thresholds_from"))
    facts = [
        ("Checkpoint", f"{metrics['checkpoint']} (epoch {metrics['checkpoint_epoch']})"),
        ("Data", f"{metrics['csv']}, split {metrics['split']}: {metrics['n_images']} images"),
        ("Macro AUROC", f"{_num(metrics['macro_auroc'])} {ci} over "
                        f"{metrics['labels_averaged']}/{metrics['n_labels']} labels"),
        ("Micro AUROC", _num(micro["auroc"])),
        ("Macro average precision", _num(macro["average_precision"])),
        ("Thresholds", metrics["thresholds_from"]),
        (f"Macro sensitivity / specificity {at}",
         f"{_with_ci(macro, 'sensitivity')} / {_with_ci(macro, 'specificity')} (mean over labels)"),
        (f"Accuracy {at}", f"{_num(micro['accuracy'])} over all labelled image x label decisions (micro); "
                           f"{_num(macro['accuracy'])} mean over labels (macro)"),
        ("Accuracy at 0.5", f"{_num(metrics.get('accuracy_at_0.5', metrics['accuracy']))} over all labelled "
                            "image x label decisions, on the uncalibrated outputs (training's val_acc)"),
        ("Calibration", "temperature scaling, " + calibration["temperatures_from"] if calibration["applied"]
         else calibration["temperatures_from"]),
        ("Test-time augmentation", "not used" if not tta else
         f"{tta['views']} views; macro AUROC {_num(tta['macro_auroc_without'])} without, "
         f"{_num(tta['macro_auroc_with'])} with (change {_signed(tta['macro_change'])})"),
        ("Confidence intervals", f"AUROC, sensitivity, specificity, PPV and NPV: the same "
                                 f"{metrics['bootstrap']['resamples']} bootstrap resamples of the "
                                 f"{metrics['bootstrap'].get('unit', 'images')}, "
                                 f"seed {metrics['bootstrap']['seed']}, percentile 95%"),
        ("Unreadable images", str(len(metrics["skipped_images"]))),
        ("Labels absent from the data", ", ".join(metrics["absent_labels"]) or "none"),
    ]  # fmt: skip
    return facts + _provenance_facts(metrics.get("provenance") or {})


def _provenance_facts(prov: dict[str, Any]) -> list[tuple[str, str]]:
    """Who made this page from what: versions, date, command, commit, device, hashes of the inputs."""
    if not prov:
        return []
    hashes = {**prov.get("manifests_sha256", {}), **prov.get("checkpoint_sha256", {})}
    return [
        ("Produced", f"{prov.get('date', '')} on {prov.get('host', '')} ({prov.get('device', '')})"),
        ("Software", f"medclf {prov.get('medclf')}, torch {prov.get('torch')}, MONAI {prov.get('monai')}, "
                     f"Python {prov.get('python')}; git commit {prov.get('git_commit') or 'n/a (not a checkout)'}"),
        ("Command", prov.get("command", "")),
        *[(f"SHA-256 of {Path(path).name}", digest or "unreadable") for path, digest in hashes.items()],
    ]  # fmt: skip


def _per_label_rows(metrics: dict[str, Any]) -> tuple[list[str], list[list[str]], list[list[str]]]:
    """Columns (the metrics with a page heading), one row per label, and the macro and micro rows (kept
    last when the table is sorted; blank where a metric is not averaged)."""
    shown = [m for m in metric_list.METRICS if m.page]
    columns = ["label", *(f"{m.page} [95% CI]" if m.interval else m.page for m in shown)]
    rows = [[row["label"], *(_cell(row, m) for m in shown)] for row in metrics["per_label"]]
    footer = [[f"{name} average", *(_cell(metrics[name], m) if m.averaged else "" for m in shown)]
              for name in ("macro", "micro")]  # fmt: skip
    return columns, rows, footer


def _cell(row: dict[str, Any], metric: metric_list.Metric) -> str:
    if metric.interval:
        return _with_ci(row, metric.key)
    return str(row[metric.key]) if metric.count else _num(row[metric.key])


def _with_ci(row: dict[str, Any], key: str) -> str:
    """``0.812 [0.780, 0.840]``: the value and, when there is one, its interval."""
    return f"{_num(row[key])} {_interval(row.get(f'{key}_ci_low'), row.get(f'{key}_ci_high'))}".strip()


def _calibration_section(calibration: dict[str, Any]) -> Section:
    before, after, temps = calibration["before"], calibration["after"], calibration["temperatures"] or {}
    columns = ["label", "temperature", "ECE before", "ECE after", "Brier before", "Brier after"]
    rows = [
        [name, _num(temps.get(name)), _num(before["ece"][name]), _num(after["ece"][name] if after else None),
         _num(before["brier"][name]), _num(after["brier"][name] if after else None)]
        for name in before["ece"]
    ]  # fmt: skip
    return ("calibration", "Calibration (expected calibration error, 10 bins; Brier score)", columns, rows)


def _subgroup_section(block: dict[str, Any], at: str) -> Section:
    columns = ["attribute", "group", "label", "n", "positives", "AUROC [95% CI]", "TPR", "FPR"]
    rows = []
    for row in block["rows"]:
        interval = f"n/a ({row['ci_note']})" if row.get("ci_note") else _interval(row["ci_low"], row["ci_high"])
        auroc = "undefined" if row["auroc"] is None else f"{row['auroc']:.3f} {interval}"
        rows.append([row["attribute"], str(row["group"]), row["label"], str(row["n"]), str(row["positives"]),
                     auroc.strip(), _num(row["tpr"]), _num(row["fpr"])])  # fmt: skip
    return ("subgroups", f"Subgroups (TPR and FPR {at})", columns, rows)


def _num(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def _signed(value: float | None) -> str:
    return "n/a" if value is None else f"{value:+.4f}"


def _interval(low: float | None, high: float | None) -> str:
    return interval_text(low, high, digits=3)
