"""Infinite or NaN network outputs stop training, validate and predict where they arise, naming the
epoch/step or the images; no metric, figure or best.pt is ever made from them."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from medclf.engine import loops
from medclf.engine.loss import MaskedBCEWithLogitsLoss
from medclf.errors import TrainingError
from medclf.model.checkpoint import load_checkpoint, save_checkpoint

from .conftest import STARTER, shared_path


class _Exploding(nn.Module):
    """Finite for the first steps, then infinite outputs."""

    def __init__(self, after: int) -> None:
        super().__init__()
        self.linear = nn.Linear(64, 2)
        self.calls, self.after = 0, after

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        out = self.linear(x.flatten(1))
        return out * float("inf") if self.calls > self.after else out


def test_infinite_outputs_stop_training_even_when_the_loss_stays_finite() -> None:
    batches = [
        {"image": torch.zeros(3, 1, 8, 8, dtype=torch.uint8) + b, "labels": torch.full((3, 2), float("nan")),
         "path": [f"s{b}-{i}.png" for i in range(3)], "skipped": []}
        for b in range(12)
    ]  # fmt: skip
    model = _Exploding(after=4)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    # Every target is unknown, so the masked loss is 0 whatever the outputs: only the output check sees it.
    with pytest.raises(TrainingError, match=r"outputs became infinite or NaN .* step 5; the batch held s4-0.png"):
        loops.train_one_epoch(model, batches, MaskedBCEWithLogitsLoss(), optimizer, torch.device("cpu"),
                              show_progress=False)  # fmt: skip


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from medclf import train

    out = tmp_path_factory.mktemp("nonfinite") / "run"
    train(csv=str(shared_path("nih", "starter256", "dataset.csv")), out=str(out), image_size=32, epochs=1,
          batch_size=32, model="densenet_tiny", progress=False, figure_every=0, num_workers=0)  # fmt: skip
    return out


def _diverged_copy(run: Path, tmp_path: Path) -> Path:
    checkpoint = load_checkpoint(run / "best.pt")
    name = next(k for k in checkpoint.model if k.endswith("weight") and checkpoint.model[k].ndim == 2)
    checkpoint.model[name] = torch.full_like(checkpoint.model[name], float("nan"))
    save_checkpoint(tmp_path / "diverged.pt", checkpoint)
    return tmp_path / "diverged.pt"


def test_validate_and_predict_refuse_a_diverged_checkpoint(run: Path, tmp_path: Path, capsys) -> None:
    from medclf import predict, validate

    bad = _diverged_copy(run, tmp_path)
    common = ["--checkpoint", str(bad), "--csv", str(STARTER / "dataset.csv"), "--no-progress", "--num-workers", "0"]
    assert validate.main([*common, "--out", str(tmp_path / "v")]) == 2
    assert (
        "diverged.pt on TEST: the network gave infinite or NaN outputs for 93 of 93 images" in capsys.readouterr().out
    )
    assert not (tmp_path / "v" / "metrics.json").exists()
    assert predict.main([*common, "--split", "TEST", "--out", str(tmp_path / "p")]) == 2
    assert not (tmp_path / "p" / "predictions.csv").exists()


def test_a_non_finite_validation_pass_never_becomes_best_pt(tmp_path: Path, monkeypatch) -> None:
    from medclf import train
    from medclf.workflows import train as workflow

    real = workflow.gather_inference

    def poisoned(result, world):
        merged = real(result, world)
        merged.logits[3, 1] = float("nan")
        return merged

    monkeypatch.setattr(workflow, "gather_inference", poisoned)
    with pytest.raises(TrainingError, match=r"epoch 1 validation: the network gave infinite or NaN outputs for 1 "):
        csv = str(shared_path("nih", "starter256", "dataset.csv"))
        train(csv=csv, out=str(tmp_path / "run"), image_size=32, epochs=1, batch_size=32, model="densenet_tiny",
              progress=False, figure_every=1, num_workers=0)  # fmt: skip
    assert not (tmp_path / "run" / "best.pt").exists() and not (tmp_path / "run" / "metrics.csv").exists()
