"""Subgroup analysis: per group of any manifest column (sex, view, binned age, data source) the AUROC
with a bootstrap interval and the true/false-positive rates at fixed thresholds, and per column the
largest gap between its groups. Pure functions; no I/O.

The spec and the groups (:func:`parse_subgroups`, :func:`assign_groups`) live in
:mod:`medclf.metrics.subgroup_spec` and are re-exported here. :func:`subgroup_analysis` computes the table
and the gaps from one bootstrap per group. Every result is plain dicts of floats/ints/None, ready for JSON
and CSV.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import torch

from medclf.metrics.bootstrap import bootstrap_auroc, label_aurocs, percentile_interval
from medclf.metrics.curves import check_probs_targets, confusion_counts
from medclf.metrics.subgroup_spec import (
    MISSING,
    OUTSIDE,
    SubgroupSpec,
    assign_groups,
    group_order,
    group_text,
    parse_subgroups,
)

__all__ = [
    "MACRO",
    "MIN_PER_CLASS",
    "MISSING",
    "OUTSIDE",
    "SubgroupSpec",
    "assign_groups",
    "largest_gaps",
    "parse_subgroups",
    "subgroup_analysis",
    "subgroup_table",
]

MACRO = "macro"
#: A group's AUROC gets a bootstrap interval only with at least this many positives and as many negatives
#: for the label: below it nearly every resample repeats the same few images, so the interval collapses
#: to (or near) the point, e.g. ``0.800 [0.800, 0.800]``, which would read as certainty.
MIN_PER_CLASS = 5


@dataclass
class _Group:
    """One group's table rows, and its bootstrap AUROCs (resamples, labels + macro) for the gaps."""

    attribute: str
    name: str
    rows: list[dict[str, Any]]
    samples: torch.Tensor | None

    def auroc(self, j: int) -> float | None:
        return self.rows[j]["auroc"]


def subgroup_analysis(
    probs: torch.Tensor | np.ndarray,
    targets: torch.Tensor | np.ndarray,
    groups: Mapping[str, pd.Series | np.ndarray | Sequence[Any]],
    labels: Sequence[str],
    thresholds: Sequence[float],
    *,
    n_bootstrap: int = 1000,
    seed: int = 0,
    level: float = 0.95,
) -> dict[str, Any]:
    """The subgroup table and the largest gaps, from one bootstrap per group.

    Args:
        probs: (N, L) probabilities.
        targets: (N, L) 1, 0 or NaN (unknown truth, left out of that label).
        groups: attribute name -> each image's group (length N, in the order of the rows of ``probs``;
            a Series' index is ignored), e.g.
            ``{"sex": assign_groups(frame, spec)}``. A categorical Series keeps its category order and its
            empty categories (reported with n=0); other values are grouped by their text.
        labels: The L label names.
        thresholds: Per-label thresholds (chosen on VALIDATION); an image is called positive at >=.
        n_bootstrap: Resamples per group (0: no intervals).
        seed: Seeds every group's resampling (each group draws from its own stream, derived from the seed
            and its attribute and group names, so adding a column does not change other groups' intervals).
        level: Interval level.

    Returns:
        ``{"rows": subgroup rows, "gaps": largest-gap rows, "bootstrap": settings}``; see
        :func:`subgroup_table` and :func:`largest_gaps` for the row keys.
    """
    p, t = check_probs_targets(_numpy(probs), _numpy(targets), labels)
    cuts = [float(v) for v in thresholds]
    if len(cuts) != len(labels):
        raise ValueError(f"{len(cuts)} thresholds for {len(labels)} labels")
    results: list[_Group] = []
    for attribute, values in groups.items():
        for name, members in _members(values, len(p)):
            stream = _group_seed(seed, attribute, name)
            results.append(_group_metrics(attribute, name, p[members], t[members], labels, cuts, n_bootstrap, stream))
    gaps = _largest_gaps(results, [*labels, MACRO], level)
    method = "percentile; images resampled with replacement within each group, groups independently"
    settings = {"resamples": n_bootstrap, "seed": seed, "level": level, "method": method}
    return {"rows": [row for group in results for row in _finish(group, level)], "gaps": gaps, "bootstrap": settings}


def subgroup_table(
    probs: torch.Tensor | np.ndarray,
    targets: torch.Tensor | np.ndarray,
    groups: Mapping[str, pd.Series | np.ndarray | Sequence[Any]],
    labels: Sequence[str],
    thresholds: Sequence[float],
    n_bootstrap: int = 1000,
    seed: int = 0,
    level: float = 0.95,
) -> list[dict[str, Any]]:
    """One row per attribute, group and label (then ``macro``), in group order.

    Keys: ``attribute, group, label, n, positives, auroc, ci_low, ci_high, ci_note, tpr, fpr``. Per label,
    ``n`` and ``positives`` count the group's images whose truth is known; ``auroc`` and its interval are
    None when the group has no positive or no negative; with fewer than :data:`MIN_PER_CLASS` of either the
    AUROC is given but its interval is None and ``ci_note`` says why (``too few: 3 pos / 2 neg ...``;
    otherwise ``ci_note`` is empty); ``tpr``/``fpr`` are the rates at the label's threshold (None without
    positives / negatives). The ``macro`` row: ``n`` images in the group, ``positives`` images with at least
    one known positive, ``auroc`` the mean of the group's defined label AUROCs (its interval from the
    per-resample mean over the same labels, None when any of them is too small), ``tpr``/``fpr`` None.
    """
    kwargs = {"n_bootstrap": n_bootstrap, "seed": seed, "level": level}
    return subgroup_analysis(probs, targets, groups, labels, thresholds, **kwargs)["rows"]


def largest_gaps(
    probs: torch.Tensor | np.ndarray,
    targets: torch.Tensor | np.ndarray,
    groups: Mapping[str, pd.Series | np.ndarray | Sequence[Any]],
    labels: Sequence[str],
    n_bootstrap: int = 1000,
    seed: int = 0,
    level: float = 0.95,
) -> list[dict[str, Any]]:
    """Per attribute and label (then ``macro``): the groups with the highest and lowest defined AUROC.

    Keys: ``attribute, label, groups, groups_defined, high_group, high_auroc, low_group, low_auroc,
    difference, ci_low, ci_high``; all but the counts None when fewer than two groups are defined. The
    interval is the percentile interval of the difference over resamples, each group resampled
    independently (same seeds as :func:`subgroup_table`). It treats the pair as fixed: picking the extremes
    among many groups makes the gap look larger than it is, so read it as exploratory.
    """
    cuts = [0.5] * len(labels)  # rates at a threshold play no part in the gaps
    kwargs = {"n_bootstrap": n_bootstrap, "seed": seed, "level": level}
    return subgroup_analysis(probs, targets, groups, labels, cuts, **kwargs)["gaps"]


def _numpy(values: torch.Tensor | np.ndarray) -> np.ndarray:
    if isinstance(values, torch.Tensor):
        return values.detach().cpu().double().numpy()
    return np.asarray(values, dtype=np.float64)


def _members(values: pd.Series | np.ndarray | Sequence[Any], n: int) -> list[tuple[str, np.ndarray]]:
    """(group name, boolean row mask) per group, in display order."""
    if len(values) != n:
        raise ValueError(f"group values for {len(values)} images, but probabilities for {n}")
    text = [group_text(v) for v in values]
    order = []
    if isinstance(values, pd.Series) and isinstance(values.dtype, pd.CategoricalDtype):
        order = [group_text(c) for c in values.cat.categories]
    order += [name for name in group_order(text) if name not in order]
    names = np.asarray(text, dtype=object)
    return [(name, names == name) for name in order]


def _group_seed(seed: int, attribute: str, group: str) -> int:
    """A seed of its own per (attribute, group): stable across runs (crc32, not Python's salted hash)."""
    name = zlib.crc32(f"{attribute}\x00{group}".encode())
    return int(np.random.SeedSequence([seed % 2**64, name]).generate_state(1)[0])


def _rate(count: int, total: int) -> float | None:
    return count / total if total else None


def _group_metrics(
    attribute: str,
    name: str,
    p: np.ndarray,
    t: np.ndarray,
    labels: Sequence[str],
    thresholds: list[float],
    n_bootstrap: int,
    seed: int,
) -> _Group:
    """Counts, AUROC, rates and bootstrap samples of one group (intervals are added by ``_finish``)."""
    counts = confusion_counts(p, t, thresholds)  # [label, true, predicted]
    p_t, t_t = torch.from_numpy(p).float(), torch.from_numpy(t).float()
    rows, defined, enough = [], np.zeros(len(labels), dtype=bool), np.zeros(len(labels), dtype=bool)
    aurocs = label_aurocs(p_t, t_t)
    for j, label in enumerate(labels):
        (tn, fp), (fn, tp) = counts[j].tolist()
        positives, negatives = tp + fn, tn + fp
        defined[j] = positives > 0 and negatives > 0
        enough[j] = min(positives, negatives) >= MIN_PER_CLASS
        auroc, note = None, ""
        if defined[j]:
            auroc = aurocs[j]
            if not enough[j] and n_bootstrap > 0:
                note = f"too few: {positives} pos / {negatives} neg (an interval needs {MIN_PER_CLASS} of each)"
        rows.append({"attribute": attribute, "group": name, "label": label, "n": positives + negatives,
                     "positives": positives, "auroc": auroc, "ci_low": None, "ci_high": None, "ci_note": note,
                     "tpr": _rate(tp, positives), "fpr": _rate(fp, negatives)})  # fmt: skip
    macro = [row["auroc"] for row in rows if row["auroc"] is not None]
    short = int((defined & ~enough).sum())
    note = f"too few: {short} of {len(macro)} averaged labels under {MIN_PER_CLASS} pos / {MIN_PER_CLASS} neg"
    rows.append({"attribute": attribute, "group": name, "label": MACRO, "n": len(p),
                 "positives": int((t == 1).any(axis=1).sum()), "auroc": sum(macro) / len(macro) if macro else None,
                 "ci_low": None, "ci_high": None, "ci_note": note if short and n_bootstrap > 0 else "",
                 "tpr": None, "fpr": None})  # fmt: skip
    samples = None
    if n_bootstrap > 0 and (defined & enough).any():
        per_label = bootstrap_auroc(p_t, t_t, n_bootstrap, seed).double()
        per_label[:, torch.from_numpy(~(defined & enough))] = math.nan  # no interval: undefined or too few
        mean = per_label[:, torch.from_numpy(defined)].nanmean(dim=1, keepdim=True)
        if short:
            mean.fill_(math.nan)  # the macro's interval would leave out labels its point includes
        samples = torch.cat([per_label, mean], dim=1)
    return _Group(attribute, name, rows, samples)


def _finish(group: _Group, level: float) -> list[dict[str, Any]]:
    """The group's rows with their percentile intervals filled in."""
    if group.samples is not None:
        low, high = percentile_interval(group.samples, level)
        for row, lo, hi in zip(group.rows, low, high, strict=True):
            if row["auroc"] is not None:
                row.update(ci_low=lo, ci_high=hi)
    return group.rows


def _largest_gaps(results: list[_Group], names: Sequence[str], level: float) -> list[dict[str, Any]]:
    """Highest minus lowest defined AUROC per attribute and label, with a bootstrap interval."""
    out = []
    for attribute in dict.fromkeys(group.attribute for group in results):
        members = [group for group in results if group.attribute == attribute]
        for j, label in enumerate(names):
            defined = [group for group in members if group.auroc(j) is not None]
            row: dict[str, Any] = {"attribute": attribute, "label": label, "groups": len(members),
                                   "groups_defined": len(defined), "high_group": None, "high_auroc": None,
                                   "low_group": None, "low_auroc": None, "difference": None,
                                   "ci_low": None, "ci_high": None}  # fmt: skip
            if len(defined) >= 2:
                values = [group.auroc(j) for group in defined]
                # First maximum and last minimum: two different groups even when every AUROC is equal.
                high = defined[int(np.argmax(values))]
                low = defined[len(values) - 1 - int(np.argmin(values[::-1]))]
                row.update(high_group=high.name, high_auroc=high.auroc(j), low_group=low.name,
                           low_auroc=low.auroc(j), difference=high.auroc(j) - low.auroc(j))  # fmt: skip
                if high.samples is not None and low.samples is not None:
                    difference = (high.samples[:, j] - low.samples[:, j]).unsqueeze(1)
                    (ci_low,), (ci_high,) = percentile_interval(difference, level)
                    row.update(ci_low=ci_low, ci_high=ci_high)
            out.append(row)
    return out
