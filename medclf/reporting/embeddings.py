"""The feature space of evaluated images: TensorBoard projector files and ``embeddings.png``.

:func:`write_projector` hands features, metadata and thumbnails to TensorBoard's own writer
(``SummaryWriter.add_embedding``), which writes ``projector_config.pbtxt`` in the log folder and
``tensors.tsv``, ``metadata.tsv`` and ``sprite.png`` in ``00000/<tag>/``; view them with
``tensorboard --logdir <log folder>``, Projector tab. :func:`embeddings_figure` builds a matplotlib
``Figure`` (no file writing; save it with :func:`medclf.reporting.files.save_figure`).
"""

from __future__ import annotations

import contextlib
import io
import logging
import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from medclf.metrics.projection import top_positive_labels
from medclf.reporting.figures import FONT, PANEL_INCHES, TITLE_FONT, _new_figure, _note

log = logging.getLogger(__name__)

#: TensorBoard's projector reads sprites of at most 8192 x 8192 pixels.
MAX_SPRITE_SIDE = 8192
UNKNOWN = "unknown"
#: Between filter tiles: a tint no gray filter pixel can have.
FILTER_BACKGROUND = (0.80, 0.87, 1.0)
_SPACES = str.maketrans({"\t": " ", "\r": " ", "\n": " "})
# (name, colour, marker size, z-order): unknown under negatives under positives, so rare positives show.
_CLASSES = ((UNKNOWN, "0.72", 9, 1), ("negative", "tab:blue", 9, 2), ("positive", "tab:red", 14, 3))


def metadata_table(
    paths: Sequence[str], targets: np.ndarray | None, labels: Sequence[str], probs: np.ndarray | None = None
) -> tuple[list[str], list[list[str]]]:
    """Projector metadata: header and one row per image.

    Columns: ``image`` (file name), one truth column per label (``1``, ``0`` or ``unknown``) and, when
    ``probs`` is given, ``p_<label>`` (probability, 3 decimals), so the projector can colour by any of them.
    """
    header = ["image", *labels]
    if probs is not None:
        header += [f"p_{name}" for name in labels]
    rows = []
    for i, path in enumerate(paths):
        row = [Path(str(path)).name]
        for j in range(len(labels)):
            value = np.nan if targets is None else float(targets[i, j])
            row.append(UNKNOWN if math.isnan(value) else str(round(value)))
        if probs is not None:
            row += [f"{float(p):.3f}" for p in probs[i]]
        rows.append(row)
    return header, rows


def write_projector(
    log_dir: str | Path,
    features: np.ndarray,
    metadata_rows: Sequence[Sequence[object]],
    header: Sequence[str],
    thumbnails: np.ndarray | None,
    *,
    tag: str = "features",
) -> Path:
    """Write the TensorBoard projector files for (N, F) ``features``.

    Args:
        log_dir: TensorBoard log folder (created); an earlier projector of the same ``tag`` is replaced.
        features: One row per image.
        metadata_rows: One row of values per image, matching ``header`` (tabs and line breaks become spaces).
        header: Column names; a single column is written without a header, as the projector expects.
        thumbnails: (N, C, h, w) images in [0, 1] with C 1 or 3, shown as the sprite; None for no sprite.
            They are shrunk when N of them would not fit in an 8192-pixel square sprite.
        tag: Name of the embedding in TensorBoard.

    Returns:
        The folder holding ``tensors.tsv``, ``metadata.tsv`` and ``sprite.png``.
    """
    from torch.utils.tensorboard import SummaryWriter

    features = np.asarray(features, dtype=np.float32)
    n = features.shape[0]
    if features.ndim != 2:
        raise ValueError(f"features must be (N, F), got shape {features.shape}")
    if len(metadata_rows) != n:
        raise ValueError(f"{n} feature rows but {len(metadata_rows)} metadata rows")
    if thumbnails is not None and (np.ndim(thumbnails) != 4 or len(thumbnails) != n):
        raise ValueError(f"thumbnails must be (N, C, h, w) with N = {n}, got shape {np.shape(thumbnails)}")
    header = [_cell(h) for h in header]
    rows = [[_cell(v) for v in row] for row in metadata_rows]
    if any(len(row) != len(header) for row in rows):
        raise ValueError(f"every metadata row must have the {len(header)} columns of the header")
    metadata: list = [row[0] for row in rows] if len(header) == 1 else rows
    images = None if thumbnails is None else _fit_sprite(torch.as_tensor(np.asarray(thumbnails, dtype=np.float32)))
    folder = Path(log_dir) / "00000" / tag
    if folder.exists():
        log.info("replacing the projector data in %s", folder)
    writer = SummaryWriter(log_dir=str(log_dir))
    try:
        with contextlib.redirect_stdout(io.StringIO()):  # add_embedding prints when the folder exists
            writer.add_embedding(
                features, metadata=metadata, label_img=images, tag=tag,
                metadata_header=header if len(header) > 1 else None,
            )  # fmt: skip
    finally:
        writer.close()
    return folder


def _cell(value: object) -> str:
    return str(value).translate(_SPACES)  # a tab or line break would shift the TSV's columns or rows


def _fit_sprite(images: torch.Tensor) -> torch.Tensor:
    """Shrink thumbnails (area) so that the square sprite of all of them stays within MAX_SPRITE_SIDE."""
    n, side = images.shape[0], max(images.shape[-2:])
    per_row = max(1, math.ceil(math.sqrt(n)))
    largest = MAX_SPRITE_SIDE // per_row
    if side <= largest:
        return images.clamp(0.0, 1.0)
    scale = largest / side
    size = (max(1, int(images.shape[-2] * scale)), max(1, int(images.shape[-1] * scale)))
    return torch.nn.functional.interpolate(images, size=size, mode="area").clamp(0.0, 1.0)


def embeddings_figure(
    pca_xy: np.ndarray,
    tsne_xy: np.ndarray,
    targets: np.ndarray | None,
    labels: Sequence[str],
    filters: np.ndarray | None,
    *,
    max_labels: int = 4,
) -> Figure:
    """PCA (top row) and t-SNE (bottom row) of the features, one column per label, plus the filter grid.

    The labels are the ``max_labels`` with the most positives
    (:func:`medclf.metrics.projection.top_positive_labels`); each panel colours positives red, negatives
    blue and unknown truth grey. Without targets, one column shows every image in grey.

    Args:
        pca_xy: (N, 2) PCA coordinates.
        tsne_xy: (N, 2) t-SNE coordinates, same rows.
        targets: (N, L) 1, 0 or NaN (unknown); or None.
        labels: The L label names.
        filters: (out, in, k, k) first-layer convolution weights (:func:`medclf.engine.features.first_layer_filters`),
            or None for no filter panel.
        max_labels: Labels shown at most.
    """
    pca_xy, tsne_xy = np.asarray(pca_xy, dtype=np.float64), np.asarray(tsne_xy, dtype=np.float64)
    if pca_xy.shape != tsne_xy.shape or pca_xy.ndim != 2 or pca_xy.shape[1] != 2:
        raise ValueError(f"pca_xy and tsne_xy must both be (N, 2), got {pca_xy.shape} and {tsne_xy.shape}")
    if targets is not None and np.asarray(targets).shape != (len(pca_xy), len(labels)):
        raise ValueError(f"targets must be (N, L) = ({len(pca_xy)}, {len(labels)}), got {np.asarray(targets).shape}")
    chosen = top_positive_labels(targets, max_labels)
    columns = [(labels[j], np.asarray(targets, dtype=np.float64)[:, j]) for j in chosen]
    if not columns:
        columns = [("all images", np.full(len(pca_xy), np.nan))]
    extra = int(filters is not None)
    fig = _new_figure((PANEL_INCHES * (len(columns) + 1.3 * extra), PANEL_INCHES * 2 + 0.5))
    grid = fig.add_gridspec(2, len(columns) + extra, width_ratios=[1.0] * len(columns) + [1.3] * extra)
    for c, (name, truth) in enumerate(columns):
        for r, (method, xy) in enumerate((("PCA", pca_xy), ("t-SNE", tsne_xy))):
            _scatter(fig.add_subplot(grid[r, c]), xy, truth, f"{method}: {name}", method)
    if filters is not None:
        _filter_panel(fig.add_subplot(grid[:, -1]), np.asarray(filters, dtype=np.float64))
    fig.suptitle(f"Penultimate-layer features of {len(pca_xy)} images", fontsize=TITLE_FONT + 2)
    return fig


def _scatter(ax: Axes, xy: np.ndarray, truth: np.ndarray, title: str, method: str) -> None:
    masks = {UNKNOWN: np.isnan(truth), "negative": truth == 0, "positive": truth == 1}
    for name, colour, size, order in _CLASSES:
        picked = masks[name]
        if picked.any():
            label = f"{name} ({int(picked.sum())})"
            ax.scatter(*xy[picked].T, s=size, c=colour, alpha=0.75, linewidths=0, zorder=order, label=label)
    if not len(xy):
        _note(ax, "no images")
    else:
        ax.legend(loc="best", fontsize=FONT - 1, markerscale=1.5, frameon=True)
    ax.set_title(title, fontsize=TITLE_FONT)
    ax.set_xlabel(f"{method} 1", fontsize=FONT)
    ax.set_ylabel(f"{method} 2", fontsize=FONT)
    ax.tick_params(labelsize=FONT - 1)
    ax.grid(alpha=0.3)


def _filter_panel(ax: Axes, filters: np.ndarray) -> None:
    if filters.ndim != 4 or filters.shape[0] == 0:
        raise ValueError(f"filters must be (out, in, k, k), got shape {filters.shape}")
    mosaic = filter_mosaic(filters)
    ax.imshow(mosaic, interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([])
    out, inp, kh, kw = filters.shape
    shown = "RGB" if inp == 3 else ("mean over input channels" if inp > 1 else "gray: 0.5 is zero")
    ax.set_title(f"First-layer filters\n{out} x {inp} x {kh} x {kw} ({shown})", fontsize=TITLE_FONT)


def filter_mosaic(filters: np.ndarray, pad: int = 1) -> np.ndarray:
    """Tile (out, in, k, k) filters into one (H, W, 3) RGB image in [0, 1], near-square.

    Each filter is scaled by its own largest absolute weight, 0.5 standing for zero, so small and large
    filters are equally visible. Three input channels are shown as colour, other counts as the gray of
    their mean. Tiles are separated by ``pad`` pixels of FILTER_BACKGROUND.
    """
    w = np.asarray(filters, dtype=np.float64)
    out, inp, kh, kw = w.shape
    tiles = np.moveaxis(w, 1, -1) if inp == 3 else w.mean(axis=1, keepdims=True).transpose(0, 2, 3, 1)
    peak = np.abs(tiles).reshape(out, -1).max(axis=1)
    tiles = 0.5 + 0.5 * tiles / np.where(peak > 0, peak, 1.0)[:, None, None, None]
    tiles = np.broadcast_to(tiles, (out, kh, kw, 3))
    cols = math.ceil(math.sqrt(out))
    rows = math.ceil(out / cols)
    mosaic = np.empty((rows * (kh + pad) + pad, cols * (kw + pad) + pad, 3))
    mosaic[:] = FILTER_BACKGROUND
    for i in range(out):
        top, left = pad + (i // cols) * (kh + pad), pad + (i % cols) * (kw + pad)
        mosaic[top : top + kh, left : left + kw] = tiles[i]
    return mosaic


__all__ = ["embeddings_figure", "filter_mosaic", "metadata_table", "write_projector"]
