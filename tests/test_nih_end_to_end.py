"""Train and validate DenseNet121 end to end on 466 real NIH radiographs (../shared/data/nih/starter256).

Real files carry what synthetic ones hide: five RGBA PNGs, and labels with no positive in a split
(hernia in VALIDATION, edema in TEST).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

from medclf import TrainConfig, ValidateConfig, evaluate, train

from .conftest import shared_path


def test_densenet121_trains_and_validates_on_real_radiographs(tmp_path: Path) -> None:
    manifest = shared_path("nih", "starter256", "dataset.csv")
    result = train(
        TrainConfig(
            csv=str(manifest),
            out=str(tmp_path / "nih"),
            image_size=64,
            epochs=2,
            batch_size=32,
            device="cpu",
            progress=False,
            num_workers=0,
            figure_every=0,
        )
    )
    assert result.epochs_completed == 2
    for row in result.history:
        assert math.isfinite(row["train_loss"]) and math.isfinite(row["val_loss"])
        assert row["auroc_hernia"] is None  # no hernia in VALIDATION: undefined, not NaN
        assert row["labels_averaged"] == 13
        assert 0.0 < row["val_auroc"] < 1.0
    report = evaluate(
        ValidateConfig(
            checkpoint=result.best_checkpoint,
            csv=str(manifest),
            split="TEST",
            device="cpu",
            progress=False,
            num_workers=0,
        )
    )
    metrics = json.loads(Path(report.metrics_json).read_text())
    assert metrics["n_images"] == 93 and metrics["skipped_images"] == []
    assert metrics["auroc"]["edema"] is None and metrics["labels_averaged"] == 13
    assert math.isfinite(metrics["macro_auroc"])
    again = evaluate(
        ValidateConfig(
            checkpoint=result.best_checkpoint,
            csv=str(manifest),
            split="VALIDATION",
            device="cpu",
            progress=False,
            num_workers=0,
            out=str(tmp_path / "val"),
        )
    )
    assert again.metrics["macro_auroc"] == result.best_auroc
