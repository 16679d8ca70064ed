"""Test-time augmentation: the views, and inference that averages probabilities over them."""

from __future__ import annotations

import torch

from medclf.data.augment import apply_view, tta_views
from medclf.engine.loops import infer
from medclf.model.networks import build_model


def _batches(n_batches: int = 2, size: int = 32) -> list[dict]:
    generator = torch.Generator().manual_seed(0)
    out = []
    for b in range(n_batches):
        images = (torch.rand(3, 1, size, size, generator=generator) * 255).to(torch.uint8)
        out.append({
            "image": images, "labels": torch.tensor([[1.0, 0.0]] * 3), "path": [f"{b}-{i}.png" for i in range(3)],
            "row": torch.arange(3) + 2 + 3 * b, "index": torch.arange(3) + 3 * b, "skipped": [],
        })  # fmt: skip
    return out


def test_views_are_the_image_shifts_and_a_mirror_only_when_trained_with_flips() -> None:
    plain, flipped = tta_views(), tta_views(hflip=True)
    assert len(plain) == 5 and len(flipped) == 6
    assert torch.equal(plain[0], torch.eye(2, 3, dtype=torch.float64))
    image = torch.arange(16.0).reshape(1, 1, 4, 4)
    assert apply_view(image, plain[0]) is image
    assert torch.allclose(apply_view(image, flipped[-1]), image.flip(-1))
    shifted = apply_view(torch.arange(100.0).reshape(1, 1, 10, 10).repeat(1, 1, 1, 1), tta_views(shift=0.1)[2])
    # A shift right by one pixel of ten: each column takes the next one's values (border repeated).
    assert torch.allclose(shifted[0, 0, :, :-1], torch.arange(100.0).reshape(10, 10)[:, 1:])


def test_infer_with_views_averages_probabilities_and_keeps_the_plain_logits() -> None:
    torch.manual_seed(0)
    model = build_model("densenet_tiny", 2).eval()
    batches = _batches()
    plain = infer(model, batches, torch.device("cpu"), show_progress=False)
    assert plain.plain_logits is None
    views = tta_views(hflip=True)
    tta = infer(model, batches, torch.device("cpu"), show_progress=False, views=views)
    assert torch.allclose(tta.plain_logits, plain.logits, atol=1e-6)
    images = torch.cat([b["image"] for b in batches]).float() / 255
    with torch.no_grad():
        expected = torch.stack([torch.sigmoid(model(apply_view(images, v))) for v in views]).mean(0)
    assert torch.allclose(tta.probs, expected, atol=1e-5)
    assert not torch.allclose(tta.probs, plain.probs, atol=1e-4)  # the views do change the output
    assert tta.paths == plain.paths and torch.equal(tta.targets, plain.targets)
