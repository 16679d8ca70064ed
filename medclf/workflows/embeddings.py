"""``validate --embeddings``: penultimate-layer features of the evaluated images, for TensorBoard's
projector and ``embeddings.png`` (PCA and t-SNE per label, first-layer filters)."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from medclf.config import ValidateConfig
from medclf.engine.features import collect_embeddings, first_layer_filters
from medclf.engine.loops import Inference
from medclf.metrics.projection import project_2d, subsample
from medclf.model.checkpoint import Checkpoint
from medclf.reporting.embeddings import embeddings_figure, metadata_table, write_projector
from medclf.reporting.files import save_figure
from medclf.workflows.inference import inference_parts

log = logging.getLogger(__name__)


def write_embeddings(
    out: Path,
    config: ValidateConfig,
    checkpoint: Checkpoint,
    records: list[dict],
    reported: tuple[Inference, np.ndarray],
) -> list[Path]:
    """Features of a seeded sample (``--embeddings-max``) of the readable evaluated images.

    ``reported`` is the inference and the probabilities validate reports (calibrated when it calibrates),
    which the projector's ``p_<label>`` columns show.

    Returns:
        The files written: ``embeddings.png`` and the projector's config and metadata.
    """
    labels, (result, reported_probs) = list(checkpoint.labels), reported
    chosen = subsample(len(result.paths), config.embeddings_max, config.seed)
    # result.indices[i] is the record of readable image i, so the sample holds no unreadable image.
    picked = [records[int(result.indices[i])] for i in chosen]
    parts = inference_parts(
        checkpoint, picked, True, config.device, config.amp, config.batch_size, config.num_workers
    )  # fmt: skip
    emb = collect_embeddings(
        parts.model,
        parts.loader,
        parts.device,
        amp_dtype=parts.amp_dtype,
        channels_last=parts.channels_last,
        show_progress=config.progress,
    )
    position = {int(ix): k for k, ix in enumerate(result.indices.tolist())}
    probs = reported_probs[[position[int(ix)] for ix in emb.indices]]
    header, rows = metadata_table(emb.paths, emb.targets, labels, probs)
    folder = write_projector(out / "projector", emb.features, rows, header, emb.thumbnails)
    pca = project_2d(emb.features, "pca", config.seed)
    tsne = project_2d(emb.features, "tsne", config.seed)
    save_figure(
        out / "embeddings.png", embeddings_figure(pca, tsne, emb.targets, labels, first_layer_filters(parts.model))
    )
    log.info("embeddings of %d images: tensorboard --logdir %s (Projector tab)", len(emb.paths), out / "projector")
    return [out / "embeddings.png", out / "projector" / "projector_config.pbtxt", folder / "metadata.tsv"]
