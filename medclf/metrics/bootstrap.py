"""Rank-based AUROC for many labels and resamples at once (torch, any device) and percentile
bootstrap intervals. Pure functions; no I/O.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import numpy as np
import torch


def _sorted_scores(probs: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Sort each label's images by score with one integer sort, ties negatives-first.

    Each (score, target, image) is packed into one int64 key: the float32 score's order-preserving
    integer, then the target bit, then the image index. Sorting the keys (numpy's vectorised sort on the
    CPU, torch on a GPU) replaces an argsort and two gathers.

    Returns:
        ``values`` (L, N) int64 order-preserving score codes, ``targets`` (L, N) 0/1 int64 and ``order``
        (L, N) image indices, all in ascending score order.
    """
    n = probs.shape[0]
    index_bits = max(1, (n - 1).bit_length())
    if index_bits > 30:
        raise ValueError(f"too many images for one sort key: {n}")
    bits = probs.detach().float().t().contiguous().view(torch.int32).to(torch.int64)
    codes = torch.where(bits >= 0, bits, -(bits & 0x7FFFFFFF)) + (1 << 31)  # IEEE order -> 0 .. 2**32
    keys = (codes << (index_bits + 1)) | (targets.detach().t().to(torch.int64) << index_bits)
    keys = keys | torch.arange(n, device=probs.device)
    on_cpu = keys.device.type == "cpu"  # numpy's AVX-512 sort is several times faster than torch's there
    keys = torch.from_numpy(np.sort(keys.numpy(), axis=1)) if on_cpu else keys.sort(dim=1).values
    return keys >> (index_bits + 1), (keys >> index_bits) & 1, keys & ((1 << index_bits) - 1)


def _tie_runs(sorted_rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Runs of equal values in rows sorted ascending.

    Returns:
        ``run`` (L, N): the run id of each position; ``first`` and ``last`` (n_runs,): the run's first
        and last index within its row.
    """
    n = sorted_rows.shape[1]
    flat = sorted_rows.reshape(-1)
    starts = torch.ones_like(flat, dtype=torch.bool)
    starts[1:] = flat[1:] != flat[:-1]
    starts[::n] = True  # every row starts a run
    run = (starts.to(torch.int32).cumsum(0) - 1).view_as(sorted_rows)
    begin = torch.nonzero(starts).squeeze(1)
    end = torch.cat([begin[1:], begin.new_tensor([flat.numel()])]) - 1
    row_start = begin - begin % n
    return run, begin - row_start, end - row_start


def _weighted_auroc(
    sorted_targets: torch.Tensor, first: torch.Tensor, last: torch.Tensor, weights: torch.Tensor
) -> torch.Tensor:
    """Mann-Whitney AUROC with ties counted half, for images weighted by ``weights`` (..., L, N).

    ``sorted_targets``, ``first`` and ``last`` are (L, N) in ascending score order; leading dimensions of
    ``weights`` are resamples. Returns (..., L), NaN where a label lacks positives or negatives.
    """
    positive = weights * sorted_targets
    negative = weights - positive
    zero = torch.zeros_like(negative.narrow(-1, 0, 1))
    negatives_up_to = torch.cat([zero, negative.cumsum(dim=-1)], dim=-1)  # [i] = negatives before i
    shape = (*weights.shape[:-2], *first.shape)
    below = negatives_up_to.gather(-1, first.expand(shape))
    tied = negatives_up_to.gather(-1, (last + 1).expand(shape)) - below
    pairs = positive.sum(dim=-1) * negative.sum(dim=-1)
    wins = (positive * (below + 0.5 * tied)).sum(dim=-1)
    return torch.where(pairs > 0, wins / pairs, torch.full_like(pairs, math.nan))


def rank_auroc(probs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Per-label AUROC of (N, L) inputs in one vectorised pass; NaN where undefined.

    The Mann-Whitney statistic with ties counted half, equal to ``monai.metrics.compute_roc_auc`` and
    ``sklearn.metrics.roc_auc_score`` (scores are compared as float32, as model outputs are) without
    their per-label loops. Within a run of equal scores negatives sort first, so a positive's count of
    negatives at or below it overcounts by half the run's negatives; that correction is computed only
    over the (usually few) tied positions.
    """
    n = probs.shape[0]
    values, hits, _ = _sorted_scores(probs, targets)
    negatives_so_far = (1 - hits).cumsum(dim=1)
    wins = (negatives_so_far * hits).sum(dim=1).double()
    tied = torch.zeros_like(values, dtype=torch.bool)
    tied[:, 1:] = values[:, 1:] == values[:, :-1]
    tied[:, :-1] |= tied[:, 1:].clone()
    if bool(tied.any()):
        where = torch.nonzero(tied.reshape(-1)).squeeze(1)
        flat = values.reshape(-1)[where]
        new_run = torch.ones_like(where, dtype=torch.bool)
        new_run[1:] = (where[1:] != where[:-1] + 1) | (flat[1:] != flat[:-1]) | (where[1:] % n == 0)
        run = new_run.cumsum(0) - 1
        positives = torch.zeros(int(run[-1]) + 1, dtype=torch.float64, device=values.device)
        positives.index_add_(0, run, hits.reshape(-1)[where].double())
        lengths = torch.bincount(run).double()
        row = (where[new_run] // n).to(torch.int64)
        pairs = positives * (lengths - positives)
        wins.index_add_(0, row, -0.5 * pairs)
    positives = hits.sum(dim=1).double()
    pairs = positives * (n - positives)
    return torch.where(pairs > 0, wins / pairs, torch.full_like(wins, math.nan))


def label_aurocs(probs: torch.Tensor, targets: torch.Tensor) -> list[float | None]:
    """Per-label AUROC of (N, L) inputs, each label over the images where it is known (NaN: unknown).

    This is :func:`rank_auroc`, the one AUROC of every evaluation number (``validate``, subgroups, TTA,
    the ROC figure). It divides exact counts once, as ``monai.metrics.compute_roc_auc`` does for the
    per-epoch ``val_auroc``, so the two give the same float for float32 scores.

    Returns:
        One value per label; None where the label lacks a labelled positive or negative.
    """
    known = ~torch.isnan(targets)
    if bool(known.all()):
        values = rank_auroc(probs, targets).tolist()
    else:
        values = [float(rank_auroc(probs[rows, j : j + 1], targets[rows, j : j + 1])[0]) for j, rows in
                  enumerate(known.unbind(1))]  # fmt: skip
    return [None if math.isnan(v) else v for v in values]


def auroc_1d(probs_1d: np.ndarray, targets_1d: np.ndarray) -> float | None:
    """:func:`label_aurocs` of one label's scores and targets given as arrays (e.g. a figure's legend)."""
    column = [torch.from_numpy(np.asarray(a, dtype=np.float64)).reshape(-1, 1) for a in (probs_1d, targets_1d)]
    return label_aurocs(*column)[0]


def resample_counts(
    n: int, n_resamples: int, seed: int = 0, chunk: int | None = None, device: torch.device | str = "cpu"
) -> Iterator[torch.Tensor]:
    """Bootstrap resamples of ``n`` images as draw counts, ``chunk`` resamples at a time.

    One seeded generator draws ``n`` image indices with replacement per resample; a resample is the
    vector of how often each image was drawn. Concatenated, the chunks form the (n_resamples, n) count
    matrix that every bootstrap statistic of :func:`bootstrap_resamples` is weighted by. The same
    ``(n, n_resamples, seed, chunk)`` give the same draws.

    Yields:
        (size, n) float32 count tensors on ``device``, ``size <= chunk``.
    """
    chunk = n_resamples if chunk is None else max(1, chunk)
    generator = torch.Generator(device=device)
    generator.manual_seed(seed)
    for start in range(0, n_resamples, chunk):
        size = min(chunk, n_resamples - start)
        draws = torch.randint(0, n, (size, n), generator=generator, device=device)
        yield torch.zeros(size, n, device=device).scatter_add_(1, draws, torch.ones(size, n, device=device))


def cluster_resample_counts(
    clusters: torch.Tensor, n_resamples: int, seed: int = 0, chunk: int | None = None
) -> Iterator[torch.Tensor]:
    """Bootstrap resamples of whole clusters (patients) as per-image draw counts.

    ``clusters`` (N,) holds each image's cluster index in 0..C-1; a resample draws C clusters with replacement
    (the draws of :func:`resample_counts` over C), and each image counts as often as its cluster was drawn,
    so the images of one patient stay together.

    Yields:
        (size, N) float32 count tensors on the device of ``clusters``.
    """
    clusters = clusters.to(torch.int64)
    n_clusters = int(clusters.max()) + 1 if len(clusters) else 0
    for counts in resample_counts(max(n_clusters, 1), n_resamples, seed, chunk, clusters.device):
        yield counts[:, clusters]


def confusion_indicators(calls: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """(N, 4, L) float32 0/1 indicators of TP, FP, TN, FN per image and label from (N, L) bool ``calls``.

    The calls are made once (:func:`medclf.metrics.curves.decisions`); an unknown (NaN) target is none of
    the four, so its image weighs 0 for that label.
    """
    predicted = calls.to(torch.bool)
    if predicted.shape != targets.shape:
        raise ValueError(f"calls and targets differ in shape: {tuple(predicted.shape)} vs {tuple(targets.shape)}")
    known = ~torch.isnan(targets)
    truth = known & (targets > 0)
    negative = known & ~truth
    return torch.stack([truth & predicted, negative & predicted, negative & ~predicted, truth & ~predicted], 1).float()


def bootstrap_resamples(
    probs: torch.Tensor,
    targets: torch.Tensor,
    n_resamples: int = 1000,
    seed: int = 0,
    calls: torch.Tensor | None = None,
    max_elements: int = 1 << 24,
    clusters: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """AUROC and, given (N, L) bool ``calls``, the 2x2 counts of every label on the same bootstrap resamples.

    Every label sees the same resamples (a paired bootstrap); a label's NaN (unknown) targets are left out.
    Images are sorted once; a resample is a vector of counts (:func:`resample_counts`), so every
    resample's AUROC is a weighted rank statistic over the same order, and its TP/FP/TN/FN are the
    counts times the indicators of :func:`confusion_indicators` (one matrix product). Resamples are
    processed in chunks of about ``max_elements`` weights on the inputs' device.

    With ``clusters`` (N,) cluster (patient) index per image, whole clusters are resampled
    (:func:`cluster_resample_counts`).

    Returns:
        ``auroc`` (n_resamples, L), NaN where a resample has no positive or no negative of a label; and
        ``confusion`` (n_resamples, 4, L) weighted ``[TP, FP, TN, FN]`` counts, or None without calls.
    """
    n, n_labels = probs.shape
    device = probs.device
    known = ~torch.isnan(targets)
    values, hits, order = _sorted_scores(probs, torch.where(known, targets, torch.zeros_like(targets)))
    # An unknown target takes no part: its image keeps weight 0 for that label in every resample.
    label_mask = None if bool(known.all()) else known.t().gather(1, order).float()
    sorted_targets = hits.float()
    run, first, last = _tie_runs(values)
    first, last = first[run], last[run]
    indicators = None if calls is None else confusion_indicators(calls.to(device), targets).reshape(n, -1)
    chunk = max(1, max_elements // max(1, n * n_labels))
    aurocs, confusions = [], []
    draws = (resample_counts(n, n_resamples, seed, chunk, device) if clusters is None
             else cluster_resample_counts(clusters.to(device), n_resamples, seed, chunk))  # fmt: skip
    for counts in draws:
        weights = counts[:, order] if label_mask is None else counts[:, order] * label_mask
        aurocs.append(_weighted_auroc(sorted_targets, first, last, weights))
        if indicators is not None:  # integer counts: float32 sums are exact below 2**24 images
            confusions.append((counts @ indicators).view(-1, 4, n_labels))
    auroc = torch.cat(aurocs) if aurocs else torch.empty(0, n_labels, device=device)
    if indicators is None:
        return auroc, None
    return auroc, torch.cat(confusions) if confusions else torch.empty(0, 4, n_labels, device=device)


def bootstrap_auroc(
    probs: torch.Tensor,
    targets: torch.Tensor,
    n_resamples: int = 1000,
    seed: int = 0,
    max_elements: int = 1 << 24,
) -> torch.Tensor:
    """AUROC of every label on ``n_resamples`` bootstrap resamples of the images (see :func:`bootstrap_resamples`).

    Returns:
        (n_resamples, L) float tensor, NaN where a resample has no positive or no negative of a label.
    """
    return bootstrap_resamples(probs, targets, n_resamples, seed, max_elements=max_elements)[0]


def percentile_interval(samples: torch.Tensor, level: float = 0.95) -> tuple[list[float | None], list[float | None]]:
    """Per-column percentile interval of bootstrap samples (NaN samples ignored; None if all are NaN)."""
    alpha = (1 - level) / 2
    quantiles = torch.nanquantile(samples.double(), torch.tensor([alpha, 1 - alpha], dtype=torch.float64,
                                  device=samples.device), dim=0)  # fmt: skip
    low, high = quantiles.cpu().tolist()
    clean = [[None if math.isnan(v) else v for v in row] for row in (low, high)]
    return clean[0], clean[1]
