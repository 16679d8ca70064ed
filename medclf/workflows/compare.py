"""Compare two models' validation predictions on the same images: AUROC differences (B - A) with paired
bootstrap intervals and DeLong's test, written as ``comparison.json``, ``comparison.csv`` and
``comparison.png``.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from pathlib import Path
from typing import Any

import numpy as np

from medclf.config import CompareConfig, settings_dict
from medclf.errors import ComparisonError, ConfigError
from medclf.metrics.comparison import align_predictions, compare_predictions
from medclf.reporting.comparison import (
    comparison_table,
    display_names,
    predictions_path,
    read_predictions,
    safe_name,
    write_comparison,
)
from medclf.reporting.result_folder import new_result_set

log = logging.getLogger(__name__)


def compare(config: CompareConfig | None = None, **overrides: Any) -> dict[str, Any]:
    """Compare model B with model A on the same images; ``difference = auroc_b - auroc_a``.

    Per label: both AUROCs on the images whose truth is known (in both files), the difference with a
    paired bootstrap interval, and DeLong's p-value. Macro: the mean over labels with a defined AUROC,
    with a paired bootstrap interval and p-value (``macro.p_bootstrap``).

    Writes to ``config.out`` (default ``./compare_<name A>_vs_<name B>``): ``comparison.json``,
    ``comparison.csv`` and, unless ``figures`` is off, ``comparison.png``.

    Args:
        config: Settings; keyword arguments override its fields (or build it when it is None).

    Returns:
        The contents of ``comparison.json`` (see :func:`medclf.metrics.comparison.compare_predictions`,
        plus ``a``, ``b``, ``settings``) with ``out_dir`` and ``files`` added.

    Raises:
        ComparisonError: when A and B are the same file, when a file is not a predictions.csv of validate
            (or is cut short), when the files hold other images, no common label, or conflicting truths.
    """
    config = dataclasses.replace(config, **overrides) if config else CompareConfig(**overrides)
    if not config.a or not config.b:
        raise ConfigError("compare needs the predictions of model A and of model B")
    path_a, path_b = predictions_path(config.a), predictions_path(config.b)
    if path_a.samefile(path_b):  # however spelled: relative, via links, hard links
        raise ComparisonError(
            f"A and B are the same file, {path_a.resolve()} (given as {config.a} and {config.b}): a run compared "
            "with itself differs by zero everywhere; give the validate output folders of two different runs"
        )
    table_a, table_b = read_predictions(path_a), read_predictions(path_b)
    names = display_names(config.a, config.b, config.name_a, config.name_b)
    for name, table in zip(names, (table_a, table_b), strict=True):
        if table.skipped:
            log.warning("%s: %d row(s) without probabilities (unreadable images) left out", name, table.skipped)
    aligned = align_predictions(table_a, table_b)
    for name, only in ((names[0], aligned.labels_only_a), (names[1], aligned.labels_only_b)):
        if only:
            log.warning("label(s) only in %s, not compared: %s", name, ", ".join(only))
    if np.array_equal(aligned.probs_a, aligned.probs_b):
        log.warning(
            "A (%s) and B (%s) hold identical predictions for every compared image and label: every difference "
            "is zero and every p-value 1 by construction, which says nothing about the two models "
            "(the same run validated twice, or a copied predictions.csv?)",
            table_a.source,
            table_b.source,
        )

    started = time.perf_counter()
    result = compare_predictions(aligned, n_bootstrap=config.bootstrap, seed=config.seed)
    result["bootstrap"]["seconds"] = round(time.perf_counter() - started, 3)
    summary = {
        "a": {"name": names[0], "predictions": table_a.source, "skipped_rows": table_a.skipped},
        "b": {"name": names[1], "predictions": table_b.source, "skipped_rows": table_b.skipped},
        **result,
        "settings": settings_dict(config),
    }
    out = Path(config.out) if config.out else Path(f"compare_{safe_name(names[0])}_vs_{safe_name(names[1])}")
    with new_result_set(out) as staging:  # the previous comparison stays whole until this one is complete
        files = [
            out / f.relative_to(staging) for f in write_comparison(staging, summary, names, figures=config.figures)
        ]
    log.info("%s", comparison_table(result, names))
    log.info("wrote %s", ", ".join(str(f) for f in files))
    return {**summary, "out_dir": str(out), "files": [str(f) for f in files]}


# ``medclf.compare`` is also the command module; this name can be exported from the package without clashing.
compare_models = compare
