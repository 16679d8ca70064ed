"""The training step never reads a value back to the host after every step (each read makes the CPU wait
for the GPU); losses are read every SYNC_EVERY steps, and a non-finite one is still caught and named."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from medclf.engine import loops
from medclf.engine.loss import MaskedBCEWithLogitsLoss
from medclf.errors import TrainingError


def _batches(n: int, with_unknown: bool = True) -> list[dict]:
    generator = torch.Generator().manual_seed(0)
    out = []
    for b in range(n):
        labels = (torch.rand(4, 3, generator=generator) > 0.5).float()
        if with_unknown:
            labels[0, 1] = float("nan")
        out.append({
            "image": (torch.rand(4, 1, 8, 8, generator=generator) * 255).to(torch.uint8), "labels": labels,
            "path": [f"b{b}-{i}.png" for i in range(4)], "skipped": [],
        })  # fmt: skip
    return out


class _TinyNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Flatten(), nn.Linear(64, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def _count_host_reads(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Record every tensor -> Python value conversion (each one is a device sync on a GPU)."""
    calls: list[str] = []
    for name in ("item", "tolist", "__float__", "__bool__", "__int__"):
        original = getattr(torch.Tensor, name)

        def counted(self, *args, _original=original, _name=name, **kwargs):
            calls.append(_name)
            return _original(self, *args, **kwargs)

        monkeypatch.setattr(torch.Tensor, name, counted)
    return calls


def test_losses_are_read_every_few_steps_not_every_step(monkeypatch: pytest.MonkeyPatch) -> None:
    torch.manual_seed(0)
    model = _TinyNet()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    batches = _batches(25)
    calls = _count_host_reads(monkeypatch)
    state = loops.train_one_epoch(
        model, batches, MaskedBCEWithLogitsLoss(), optimizer, torch.device("cpu"), show_progress=False
    )
    monkeypatch.undo()
    assert state.step == 25 and state.seen == 100 and math.isfinite(state.loss)
    # 25 steps, SYNC_EVERY = 10: reads after steps 10, 20 and at the end; the old loop read 50 times.
    assert len(calls) <= 25 // loops.SYNC_EVERY + 1, calls


def test_the_epoch_loss_is_the_mean_of_the_step_losses() -> None:
    torch.manual_seed(0)
    model = _TinyNet()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.0)  # frozen: every step sees the same model
    batches = _batches(13)
    state = loops.train_one_epoch(
        model, batches, MaskedBCEWithLogitsLoss(), optimizer, torch.device("cpu"), show_progress=False
    )
    with torch.no_grad():
        expected = [float(MaskedBCEWithLogitsLoss()(model(b["image"].float() / 255), b["labels"])) for b in batches]
    assert state.loss == pytest.approx(sum(expected) / len(expected), rel=1e-6)


def test_a_non_finite_loss_is_caught_at_the_next_read_naming_its_batch() -> None:
    model = _TinyNet()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    batches = _batches(25)
    batches[12]["labels"] = torch.full((4, 3), float("inf"))  # an impossible target: the loss is not finite
    with pytest.raises(TrainingError, match=r"step 13; the batch held b12-0.png, b12-1.png"):
        loops.train_one_epoch(
            model, batches, MaskedBCEWithLogitsLoss(), optimizer, torch.device("cpu"), show_progress=False
        )


def test_masked_loss_needs_no_host_read_and_equals_the_plain_loss_when_all_is_known(monkeypatch) -> None:
    logits, targets = torch.randn(6, 3), (torch.rand(6, 3) > 0.5).float()
    plain = nn.functional.binary_cross_entropy_with_logits(logits, targets)
    calls = _count_host_reads(monkeypatch)
    masked = MaskedBCEWithLogitsLoss()(logits, targets)
    targets[0, 0] = float("nan")
    partial = MaskedBCEWithLogitsLoss()(logits, targets)
    monkeypatch.undo()
    assert calls == []
    assert torch.equal(masked, plain)
    expected = nn.functional.binary_cross_entropy_with_logits(logits.flatten()[1:], targets.flatten()[1:])
    assert partial.item() == pytest.approx(expected.item(), rel=1e-6)
