"""DeLong's test for two correlated ROC curves (DeLong, DeLong & Clarke-Pearson 1988), computed with the
fast midrank algorithm of Sun & Xu (2014). Pure numpy; no I/O.

For ``k`` score vectors of the same ``m`` positive and ``n`` negative images, the AUROC of each is the
mean of its structural components: ``V10`` (one per positive: the fraction of negatives it outranks,
ties counted half) and ``V01`` (one per negative: the fraction of positives that outrank it). Their
covariance across images, with the unbiased ``m - 1`` and ``n - 1`` denominators, gives the covariance
matrix of the AUROCs: ``S = S10 / m + S01 / n``. Sun & Xu obtain every component from three midrank
vectors in O((m + n) log(m + n)) instead of DeLong's O(m n) pairwise comparisons.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


def midranks(values: np.ndarray) -> np.ndarray:
    """1-based ranks along the last axis, a run of equal values sharing the mean of its ranks.

    Args:
        values: (..., N) array of scores.

    Returns:
        float64 array of the same shape.
    """
    values = np.atleast_1d(np.asarray(values, dtype=np.float64))
    flat = values.reshape(-1, values.shape[-1])
    ranks = np.empty(flat.shape, dtype=np.float64)
    for i, row in enumerate(flat):
        ordered = np.sort(row)
        # (values below) + (1 + size of the tie run) / 2: the midrank, without an explicit run search.
        below = np.searchsorted(ordered, row, side="left")
        up_to = np.searchsorted(ordered, row, side="right")
        ranks[i] = (below + up_to + 1) / 2.0
    return ranks.reshape(values.shape)


def _split_classes(scores: np.ndarray, truth: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(positives, negatives)``: the (k, m) and (k, n) scores of positive and negative images."""
    scores = np.atleast_2d(np.asarray(scores, dtype=np.float64))
    truth = np.asarray(truth, dtype=np.float64).reshape(-1)
    if scores.shape[1] != truth.size:
        raise ValueError(f"scores and truth differ in length: {scores.shape[1]} vs {truth.size}")
    if not np.all(np.isfinite(scores)):
        raise ValueError("scores must be finite")
    if np.isnan(truth).any() or not np.isin(truth, (0.0, 1.0)).all():
        raise ValueError("truth must be 0/1 (leave unknown images out before calling)")
    positive = truth == 1.0
    return scores[:, positive], scores[:, ~positive]


def structural_components(scores: np.ndarray, truth: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """AUROCs and DeLong's structural components by the midrank algorithm of Sun & Xu (2014).

    Args:
        scores: (k, N) or (N,) scores, higher meaning more likely positive.
        truth: (N,) 0/1 labels.

    Returns:
        ``(auroc, v10, v01)``: (k,) AUROCs, (k, m) positive and (k, n) negative components; the AUROC
        is NaN and the components empty when a class is absent.
    """
    positives, negatives = _split_classes(scores, truth)
    k, m = positives.shape
    n = negatives.shape[1]
    if m == 0 or n == 0:
        return np.full(k, math.nan), np.empty((k, m)), np.empty((k, n))
    rank_positives = midranks(positives)
    rank_negatives = midranks(negatives)
    rank_all = midranks(np.concatenate([positives, negatives], axis=1))
    # A positive's rank among all images minus its rank among positives = negatives it outranks (ties half).
    v10 = (rank_all[:, :m] - rank_positives) / n
    v01 = 1.0 - (rank_all[:, m:] - rank_negatives) / m
    auroc = (rank_all[:, :m].sum(axis=1) / m - (m + 1) / 2.0) / n
    return auroc, v10, v01


def delong_covariance(scores: np.ndarray, truth: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """AUROCs and their (k, k) DeLong covariance matrix ``S10 / m + S01 / n``.

    ``S10`` and ``S01`` are the sample covariances of the structural components with the unbiased
    ``m - 1`` and ``n - 1`` denominators. The covariance is NaN with fewer than two images of a class.
    """
    auroc, v10, v01 = structural_components(scores, truth)
    k, m = v10.shape
    n = v01.shape[1]
    if m < 2 or n < 2:
        return auroc, np.full((k, k), math.nan)
    s10 = np.atleast_2d(np.cov(v10, ddof=1))
    s01 = np.atleast_2d(np.cov(v01, ddof=1))
    return auroc, s10 / m + s01 / n


@dataclass(frozen=True)
class DeLongResult:
    """DeLong's test of ``auroc_b - auroc_a`` (two-sided, normal approximation).

    Attributes:
        auroc_a: AUROC of the first scores (NaN when a class is absent).
        auroc_b: AUROC of the second scores.
        difference: ``auroc_b - auroc_a``.
        variance_a: DeLong variance of ``auroc_a``.
        variance_b: DeLong variance of ``auroc_b``.
        covariance: DeLong covariance of the two AUROCs (they share images).
        se: Standard error of the difference.
        z: ``difference / se`` (0 when both are 0, NaN when undefined).
        p_value: Two-sided p-value; NaN when undefined (a class with fewer than two images).
    """

    auroc_a: float
    auroc_b: float
    difference: float
    variance_a: float
    variance_b: float
    covariance: float
    se: float
    z: float
    p_value: float


def delong_test(scores_a: np.ndarray, scores_b: np.ndarray, truth: np.ndarray) -> DeLongResult:
    """DeLong's test that two correlated AUROCs (same images, same truth) are equal.

    Args:
        scores_a: (N,) scores of model A.
        scores_b: (N,) scores of model B on the same images, in the same order.
        truth: (N,) 0/1 labels.

    Returns:
        A :class:`DeLongResult` for ``auroc_b - auroc_a``. When the difference has zero variance (e.g. the
        two scores rank the images identically) the difference is 0 and ``p_value`` is 1.
    """
    scores = np.stack([np.asarray(scores_a, dtype=np.float64).reshape(-1), np.asarray(scores_b).reshape(-1)])
    auroc, cov = delong_covariance(scores, truth)
    difference = float(auroc[1] - auroc[0])
    variance = float(cov[0, 0] + cov[1, 1] - 2.0 * cov[0, 1])
    se = math.sqrt(max(variance, 0.0)) if math.isfinite(variance) else math.nan
    if not math.isfinite(se):
        z = p = math.nan
    elif variance <= 1e-18:
        # No variance: the two scores rank the images identically, so the difference is 0 as well.
        z, p = (0.0, 1.0) if abs(difference) <= 1e-12 else (math.copysign(math.inf, difference), 0.0)
    else:
        z = difference / se
        p = math.erfc(abs(z) / math.sqrt(2.0))  # two-sided normal tail: 2 * (1 - Phi(|z|))
    return DeLongResult(
        auroc_a=float(auroc[0]),
        auroc_b=float(auroc[1]),
        difference=difference,
        variance_a=float(cov[0, 0]),
        variance_b=float(cov[1, 1]),
        covariance=float(cov[0, 1]),
        se=se,
        z=z,
        p_value=p,
    )
