"""The full evaluation summary behind ``validate``'s report, from the metrics of
:mod:`medclf.metrics.metric_list`. Pure functions."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from medclf.metrics.auroc import classification_metrics, defined_labels, mean_defined
from medclf.metrics.bootstrap import bootstrap_resamples, label_aurocs, percentile_interval
from medclf.metrics.curves import average_precision, confusion_from_calls, decisions
from medclf.metrics.metric_list import Facts, averaged, count_intervals, count_samples, label_row, ratio


def evaluation_report(
    probs: torch.Tensor,
    targets: torch.Tensor,
    labels: Sequence[str],
    thresholds: Sequence[float],
    *,
    calls: np.ndarray | None = None,
    n_bootstrap: int = 1000,
    seed: int = 0,
    level: float = 0.95,
    clusters: np.ndarray | None = None,
) -> dict[str, Any]:
    """Everything a results table needs, per label and averaged.

    Each row holds every metric of :data:`~medclf.metrics.metric_list.METRICS`, in its order. Per label:
    AUROC (the rank AUROC, the same floats as the per-epoch MONAI value) with a percentile bootstrap
    interval (images resampled, seeded), average precision, positives/negatives/labelled images (NaN
    targets are unknown and left out), and at the label's operating threshold (``thresholds``, as shown)
    the 2x2 counts of ``calls`` (made by :func:`medclf.metrics.curves.decisions` at ``thresholds`` when
    not given), sensitivity, specificity, PPV, NPV (each with an interval from the same resamples as
    AUROC's), F1 and accuracy. ``macro`` averages each averaged metric over the labels where it is
    defined (a macro interval is that of the per-resample macro mean); ``micro`` pools every image x
    label decision.
    With ``clusters`` (each image's patient index), the bootstrap resamples patients instead of images.

    Returns:
        ``classification_metrics`` keys plus ``accuracy_at_0.5`` (the same value as its ``accuracy``:
        labelled image x label decisions at threshold 0.5), ``per_label`` (list of dicts), ``macro``,
        ``micro`` and ``bootstrap`` (settings and the number of usable resamples).
    """
    base = classification_metrics(probs, targets, labels, auroc=label_aurocs)
    probs_np = probs.detach().double().cpu().numpy()
    targets_np = targets.detach().cpu().numpy()
    calls = decisions(probs_np, thresholds) if calls is None else np.asarray(calls, dtype=bool)
    counts = confusion_from_calls(calls, targets_np)
    per_label = []
    for j, name in enumerate(labels):
        tn, fp, fn, tp = (int(v) for v in counts[j].reshape(-1))
        facts = Facts(tp, fp, tn, fn, ratio, auroc=base["auroc"][name],
                      average_precision=average_precision(probs_np[:, j], targets_np[:, j]),
                      positives=base["positives"][name], negatives=base["negatives"][name],
                      threshold=float(thresholds[j]))  # fmt: skip
        per_label.append({"label": name, **label_row(facts)})
    macro = {k: mean_defined([row[k] for row in per_label]) for k in averaged()}
    micro = micro_average(probs, targets, calls)
    samples: dict[str, torch.Tensor | None] = dict.fromkeys(("auroc", *count_intervals()))
    pooled: dict[str, torch.Tensor | None] = dict.fromkeys(count_intervals())
    valid = 0
    if n_bootstrap > 0:  # one set of resamples for AUROC and the rates at the thresholds
        by = None if clusters is None else torch.as_tensor(np.asarray(clusters, dtype=np.int64), device=probs.device)
        auroc, confusion = bootstrap_resamples(probs, targets, n_bootstrap, seed, torch.from_numpy(calls), clusters=by)
        valid = int((~auroc[:, defined_labels(targets)].isnan()).all(dim=1).sum())
        samples = {"auroc": auroc, **count_samples(confusion)}
        pooled = count_samples(confusion.sum(dim=2, keepdim=True))
    for metric, values in samples.items():
        _set_intervals(metric, values, per_label, macro, level)
    for metric, values in pooled.items():
        micro.update(_interval_keys(metric, *_single_interval(values, level)))
    unit = "images" if clusters is None else "patients"
    bootstrap = {"unit": unit, "resamples": n_bootstrap, "usable_resamples": valid, "seed": seed, "level": level,
                 "method": f"percentile; {unit} resampled with replacement "
                           "(the same resamples for every label and metric)"}  # fmt: skip
    return {**base, "accuracy_at_0.5": base["accuracy"], "per_label": [_ordered(r) for r in per_label],
            "macro": _ordered(macro), "micro": _ordered(micro), "bootstrap": bootstrap}  # fmt: skip


def _set_intervals(
    metric: str,
    samples: torch.Tensor | None,
    per_label: list[dict[str, Any]],
    macro: dict[str, Any],
    level: float,
) -> None:
    """Add ``<metric>_ci_low`` / ``_ci_high`` to each label's row and to ``macro`` from (B, L) ``samples``.

    A label's interval is None where its estimate is (or without samples); the macro interval is that of
    the per-resample mean over the labels whose estimate is defined, ignoring a label that is 0/0 in one
    resample (as AUROC's macro does).
    """
    width = len(per_label)
    lows, highs = percentile_interval(samples, level) if samples is not None else ([None] * width, [None] * width)
    for row, low, high in zip(per_label, lows, highs, strict=True):
        defined = row[metric] is not None
        row.update(_interval_keys(metric, low if defined else None, high if defined else None))
    columns = [j for j, row in enumerate(per_label) if row[metric] is not None]
    mean = samples[:, columns].nanmean(dim=1, keepdim=True) if samples is not None and columns else None
    macro.update(_interval_keys(metric, *_single_interval(mean, level)))


def _single_interval(samples: torch.Tensor | None, level: float) -> tuple[float | None, float | None]:
    """The percentile interval of (B, 1) samples; (None, None) without samples."""
    if samples is None:
        return None, None
    (low,), (high,) = percentile_interval(samples, level)
    return low, high


def _interval_keys(metric: str, low: float | None, high: float | None) -> dict[str, float | None]:
    return {f"{metric}_ci_low": low, f"{metric}_ci_high": high}


def _ordered(row: dict[str, Any]) -> dict[str, Any]:
    """The row with each ``<metric>_ci_low`` / ``_ci_high`` right after ``<metric>`` (the CSV's column order)."""
    out: dict[str, Any] = {}
    for key, value in row.items():
        if key.endswith(("_ci_low", "_ci_high")) and key.rsplit("_ci_", 1)[0] in row:
            continue
        out[key] = value
        out.update({key + s: row[key + s] for s in ("_ci_low", "_ci_high") if key + s in row})
    return out


def micro_average(probs: torch.Tensor, targets: torch.Tensor, calls: np.ndarray) -> dict[str, Any]:
    """AUROC, average precision and the operating point (of ``calls``) pooled over every labelled image x label.

    Pooling mixes labels, so unlike the per-label numbers it depends on how comparable the labels'
    probabilities are (calibrated ones pool better than raw outputs).
    """
    probs_np = probs.detach().double().cpu().numpy()
    targets_np = targets.detach().cpu().numpy()
    (tn, fp), (fn, tp) = confusion_from_calls(calls, targets_np).sum(axis=0).tolist()
    auroc = label_aurocs(probs.reshape(-1, 1), targets.reshape(-1, 1))[0]  # over the labelled entries
    ap = average_precision(probs_np.reshape(-1), targets_np.reshape(-1))
    row = label_row(Facts(float(tp), float(fp), float(tn), float(fn), ratio, auroc=auroc, average_precision=ap))
    return {key: row[key] for key in averaged()}
