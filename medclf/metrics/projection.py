"""2-D projections of feature vectors (PCA, t-SNE), seeded subsamples, and which labels to colour by.

Pure numpy / scikit-learn: arrays in, arrays out. scikit-learn is imported only when t-SNE is asked for.
"""

from __future__ import annotations

import numpy as np

PROJECTIONS = ("pca", "tsne")
#: Dimensions kept by PCA before t-SNE: the usual pre-reduction, which removes noise and speeds it up.
TSNE_PCA_DIMS = 50


def subsample(n: int, max_n: int, seed: int) -> np.ndarray:
    """Indices of at most ``max_n`` of ``n`` items, drawn without replacement and sorted.

    Args:
        n: Number of items.
        max_n: Cap; 0 keeps every item.
        seed: Seed of the draw: the same (n, max_n, seed) always gives the same indices.

    Returns:
        (min(n, max_n),) int64 ascending indices; ``arange(n)`` when nothing needs to be left out.
    """
    if n < 0 or max_n < 0:
        raise ValueError(f"n and max_n must be >= 0, got n={n}, max_n={max_n}")
    if max_n == 0 or n <= max_n:
        return np.arange(n, dtype=np.int64)
    picked = np.random.default_rng(seed).choice(n, size=max_n, replace=False)
    return np.sort(picked).astype(np.int64)


def tsne_perplexity(n: int, default: float = 30.0) -> float:
    """scikit-learn's default perplexity, lowered for small sets: it must stay below the number of points,
    and about n / 3 keeps every point with a few effective neighbours."""
    return float(min(default, max(1.0, (n - 1) / 3.0)))


def project_2d(features: np.ndarray, method: str = "pca", seed: int = 0) -> np.ndarray:
    """Project (N, F) features to (N, 2).

    Args:
        features: One row per image; finite values.
        method: ``pca`` (exact, via SVD of the centred features; each axis signed so that its largest
            loading is positive, for reproducible plots) or ``tsne`` (``sklearn.manifold.TSNE`` with
            ``init="pca"`` on the first 50 principal components, perplexity from :func:`tsne_perplexity`).
        seed: Seed of t-SNE (PCA is deterministic).

    Returns:
        (N, 2) float64 coordinates; zeros when N < 2 or every row is the same, and (PCA) a zero second
        column when the features span one dimension.
    """
    if method not in PROJECTIONS:
        raise ValueError(f"method must be one of {', '.join(PROJECTIONS)}, got {method!r}")
    x = np.asarray(features, dtype=np.float64)
    if x.ndim != 2:
        raise ValueError(f"features must be (N, F), got shape {x.shape}")
    if not np.isfinite(x).all():
        raise ValueError("features hold NaN or infinite values")
    n = x.shape[0]
    if method == "pca":
        return _principal_components(x, 2)
    reduced = _principal_components(x, min(TSNE_PCA_DIMS, x.shape[1]))
    if not np.any(reduced):  # identical rows: t-SNE's PCA initialisation would divide by zero
        return np.zeros((n, 2))
    from sklearn.manifold import TSNE

    tsne = TSNE(n_components=2, perplexity=tsne_perplexity(n), init="pca", random_state=seed)
    return np.asarray(tsne.fit_transform(reduced), dtype=np.float64)


def _principal_components(x: np.ndarray, k: int) -> np.ndarray:
    """Scores on the first ``k`` principal components, zero-padded where the rank is lower."""
    n = x.shape[0]
    out = np.zeros((n, k))
    if n < 2:
        return out
    centred = x - x.mean(axis=0)
    u, s, vt = np.linalg.svd(centred, full_matrices=False)
    rank = int(np.sum(s > s[0] * 1e-10)) if s.size and s[0] > 0 else 0
    used = min(k, rank)
    # SVD signs are arbitrary; fix them by each component's largest loading, so plots do not flip.
    signs = np.sign(vt[np.arange(used), np.argmax(np.abs(vt[:used]), axis=1)])
    out[:, :used] = u[:, :used] * s[:used] * signs
    return out


def top_positive_labels(targets: np.ndarray | None, k: int = 4) -> list[int]:
    """Indices of up to ``k`` labels with the most positives (ties by label order).

    Labels without positives are left out; when no label has one, the first label is returned so that a
    figure still has something to show. NaN (unknown) entries count as neither.
    """
    if targets is None or np.asarray(targets).ndim != 2 or np.asarray(targets).shape[1] == 0 or k <= 0:
        return []
    positives = (np.asarray(targets) == 1).sum(axis=0)
    order = np.argsort(-positives, kind="stable")
    chosen = [int(j) for j in order[:k] if positives[j] > 0]
    return chosen or [0]


__all__ = ["PROJECTIONS", "project_2d", "subsample", "top_positive_labels", "tsne_perplexity"]
